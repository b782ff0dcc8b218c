"""The KID pass (opt-in): kernel row sums over every pair, as tasks; and the
seeded subset estimator, one task per subset.

Two exact routes to the same sums (:mod:`largeemb.kernels.kid`): at low dim,
each set's power sums (its third-moment tensor, second moment and sum),
then each row against them, O((n + m)·dim³); otherwise every pair: each set
meets itself once per unordered block pair and the other set once per block
pair, O((n + m)²·dim). Per-row sums merge per block in fixed trees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels import kid
from largeemb.passes.context import PassContext
from largeemb.run.graph import Graph, run
from largeemb.run.threads import one_thread


@dataclass
class KidSums:
    """Per row: Σ k over the other rows of its own set, and over every row of the other set."""

    real_self: np.ndarray
    real_cross: np.ndarray
    fake_self: np.ndarray
    fake_cross: np.ndarray


def _rows(source: Source, block) -> np.ndarray:
    return np.asarray(source.read(block.start, block.stop), np.float64)


def _tile_task(src_a, a, src_b, b, same: bool, panel_rows: int):
    one_thread()
    rows_a = _rows(src_a, a)
    return kid.tile_sums(rows_a, rows_a if same else _rows(src_b, b), panel_rows, same)


def _added(*parts) -> np.ndarray:
    """Sum the offers a block received: (tile result, side) pairs, flattened."""
    return np.sum([parts[i][parts[i + 1]] for i in range(0, len(parts), 2)], axis=0)


#: The tensor route when dim is at most this (the tensor holds dim³ float64:
#: 134 MB at 256) and dim² is at most the rows of both sets (then it costs
#: less than every pair).
TENSOR_MAX_DIM = 256


def _power_task(source: Source, block):
    one_thread()
    return kid.power_sums(_rows(source, block))


def _sums_task(source: Source, block, own, other):
    one_thread()
    return kid.kernel_sums(_rows(source, block), own, other)


def _tensor_stage(ctx: PassContext, real: Source, fake: Source) -> KidSums:
    g = Graph("kid")
    blocks = {"real": ctx.blocks(real), "fake": ctx.blocks(fake)}
    sources = dict(zip(("real", "fake"), g.share([real, fake])))
    sums = {
        role: g.tree(
            [g.unit(f"{role}-power-{b.index}", _power_task, sources[role], b) for b in blocks[role]],
            kid.added_power_sums, "kid-power",
        )
        for role in blocks
    }
    other = {"real": "fake", "fake": "real"}
    keys = {
        role: [
            g.unit(f"{role}-sums-{b.index}", _sums_task, sources[role], b, sums[role], sums[other[role]])
            for b in blocks[role]
        ]
        for role in blocks
    }
    real_parts, fake_parts = run(g, [keys["real"], keys["fake"]], "kid")
    return KidSums(
        np.concatenate([s for s, _ in real_parts]), np.concatenate([c for _, c in real_parts]),
        np.concatenate([s for s, _ in fake_parts]), np.concatenate([c for _, c in fake_parts]),
    )


def kid_stage(ctx: PassContext, real: Source, fake: Source) -> KidSums:
    """Every row's kernel sums over its own set (others) and the other set, by the cheaper exact route."""
    if real.dim <= TENSOR_MAX_DIM and real.dim**2 <= real.rows + fake.rows:
        return _tensor_stage(ctx, real, fake)
    g = Graph("kid")
    real_blocks, fake_blocks = ctx.blocks(real), ctx.blocks(fake)
    real, fake = g.share([real, fake])
    offers: dict = {}

    def offer(key, side, tile):
        offers.setdefault(key, []).extend([tile, side])

    for role, src, blocks in (("real", real, real_blocks), ("fake", fake, fake_blocks)):
        for a in blocks:
            for b in blocks[a.index :]:
                tile = g.unit(
                    f"{role}-{a.index}-{b.index}", _tile_task, src, a, src, b, a.index == b.index, ctx.panel_rows
                )
                offer((role, "self", a.index), 0, tile)
                offer((role, "self", b.index), 1, tile)
    for f in fake_blocks:
        for r in real_blocks:
            tile = g.unit(f"cross-{f.index}-{r.index}", _tile_task, fake, f, real, r, False, ctx.panel_rows)
            offer(("fake", "cross", f.index), 0, tile)
            offer(("real", "cross", r.index), 1, tile)
    keys = {key: g.task("kid-add", _added, *parts) for key, parts in offers.items()}

    def joined(role, kind, blocks):
        return [keys[(role, kind, b.index)] for b in blocks]

    out = run(
        g,
        [joined("real", "self", real_blocks), joined("real", "cross", real_blocks),
         joined("fake", "self", fake_blocks), joined("fake", "cross", fake_blocks)],
        "kid",
    )
    return KidSums(*(np.concatenate(parts) for parts in out))


def _subset_task(fake: Source, real: Source, fake_rows: np.ndarray, real_rows: np.ndarray) -> float:
    one_thread()
    return kid.subset_mmd2(
        np.asarray(fake.read_rows(fake_rows), np.float64), np.asarray(real.read_rows(real_rows), np.float64)
    )


def kid_subsets_stage(real: Source, fake: Source, subsets: int, size: int, seed: int) -> np.ndarray:
    """MMD² of each seeded subset pair (torch-fidelity's estimator), one task each."""
    g = Graph("kid-subsets")
    draws = kid.kid_subset_draws(fake.rows, real.rows, subsets, size, seed)
    real, fake = g.share([real, fake])
    keys = [g.unit(f"subset-{i}", _subset_task, fake, real, np.sort(f), np.sort(r)) for i, (f, r) in enumerate(draws)]
    return np.asarray(run(g, keys, "kid subsets"), np.float64)
