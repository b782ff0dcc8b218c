"""The cross pass (fake x real: ball memberships and per-sample shortlists) and
the settle pass (exact per-sample values from those shortlists), as tasks.

The NumPy of one block pair is :mod:`largeemb.kernels.cross`, of one settled
block :mod:`largeemb.kernels.settle`. The k-NN family's extra balls (:class:`Ball`
columns) ride on the cross pass; clipped density's real rows are counted in
real balls by a real × real pass over each pair of blocks once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels import cross, settle
from largeemb.kernels.balls import Balls
from largeemb.passes.blocks import load_block, taker
from largeemb.passes.context import PassContext, note_screening
from largeemb.run.graph import Graph, run, same
from largeemb.run.threads import one_thread


@dataclass
class PerSample:
    """Exact per-sample values of both sets (see ``samples.zarr`` in the README)."""

    fake_nearest_dist: np.ndarray
    fake_nearest_real: np.ndarray
    fake_realism: np.ndarray
    real_nearest_dist: np.ndarray
    float64_pairs: int = 0  # pairs whose distance the settle pass computed from float64 rows


@dataclass
class FakeSettled:
    """One fake block's exact per-sample values, and the float64 pairs they took."""

    nearest_dist: np.ndarray
    nearest_real: np.ndarray
    realism: np.ndarray
    pairs: int


@dataclass
class RealSettled:
    """One real block's distances to its nearest fake rows, and the float64 pairs they took."""

    nearest_dist: np.ndarray
    pairs: int


@dataclass(frozen=True)
class Ball:
    """A column of extra balls the cross pass counts in (the k-NN family's): the ``role`` set's
    radii at ``k``, or ``radii`` of them (e.g. clipped at their median), with ``<=`` (``inclusive``) or ``<``."""

    role: str
    k: int
    inclusive: bool
    radii: Callable | None = None

    def of(self, ks, radii: np.ndarray) -> np.ndarray:
        column = radii[:, ks.index(self.k)]
        return column if self.radii is None else self.radii(column)


def ball_columns(balls, ks, real_radii: np.ndarray, fake_radii: np.ndarray):
    """(the balls kept, in column order: real then fake; the kernels' Balls), or ((), None) with none.

    A ball at a k the radii lack (a reference without it) is left out: its metric says so.
    """
    kept = {role: [b for b in balls if b.role == role and b.k in ks] for role in ("real", "fake")}
    if not kept["real"] and not kept["fake"]:
        return (), None

    def stack(role, radii):
        return np.stack([b.of(ks, radii) for b in kept[role]], axis=1) if kept[role] else np.zeros((len(radii), 0))

    columns = Balls(
        stack("real", real_radii), tuple(b.inclusive for b in kept["real"]),
        stack("fake", fake_radii), tuple(b.inclusive for b in kept["fake"]),
    )
    return tuple(kept["real"] + kept["fake"]), columns


def _cross_task(
    fake_src, real_src, fb, rb, ctx: PassContext, fake_radii, real_radii, realism_radius, prob_radii, balls=None,
    fake_split=None, real_split=None,
):
    one_thread()
    # Nearest rows and realism need every entry of a tile, and P-precision/recall's common
    # radius holds most of them (measured: every screened tile fell back): float32 tiles then.
    strategy = ctx.strategy(screened=realism_radius is None and prob_radii is None)
    fake, real = load_block(fake_src, fb, ctx), load_block(real_src, rb, ctx)
    out = cross.block_pair(
        fake, real, fake_radii, real_radii, realism_radius, ctx.kappa, ctx.inclusive, ctx.panel_rows, ctx.partition,
        prob_radii, strategy, Balls(*balls) if balls else None,
        None if fake_split is None else (fake_split, real_split),
    )
    note_screening(strategy)
    return out


def cross_graph(
    g: Graph, ctx: PassContext, real_src: Source, fake_src: Source, real_radii, fake_radii, realism_radius=None,
    prob_radii=None, balls: Balls | None = None, split_rows=None,
):
    """Key of the CrossPartial of the whole fake × real pass.

    ``realism_radius`` (per real row, 0 where it takes no part) turns on the
    per-sample values; None leaves them out. ``prob_radii`` (the common real
    and fake radii) turns on P-precision and P-recall; ``balls``, the counts in extra balls. ``split_rows``:
    both sets' (fake, real) :class:`~largeemb.kernels.cross_splits.SplitRows` for the standard errors, or None.
    """
    real_blocks = ctx.blocks(real_src)
    fake_blocks = ctx.blocks(fake_src)

    def per_block(values, blocks):
        if values is None:
            return [None] * len(blocks)
        return g.share([values[b.start : b.stop] for b in blocks])  # once per block, not once per tile

    real_src, fake_src, ctx = g.share([real_src, fake_src, ctx])
    real_slices, fake_slices = per_block(real_radii, real_blocks), per_block(fake_radii, fake_blocks)
    realism_slices = per_block(realism_radius, real_blocks)
    if balls is not None:
        real_balls, fake_balls = per_block(balls.real, real_blocks), per_block(balls.fake, fake_blocks)
    fake_split, real_split = (None, None) if split_rows is None else split_rows
    fake_split_slices, real_split_slices = per_block(fake_split, fake_blocks), per_block(real_split, real_blocks)
    per_fake = []
    for fb in fake_blocks:
        parts = [
            g.unit(
                f"tile-{fb.index}-{rb.index}", _cross_task, fake_src, real_src, fb, rb, ctx,
                fake_slices[fb.index], real_slices[rb.index], realism_slices[rb.index], prob_radii,
                None if balls is None else (
                    real_balls[rb.index], balls.real_inclusive, fake_balls[fb.index], balls.fake_inclusive,
                ),
                fake_split_slices[fb.index], real_split_slices[rb.index],
            )
            for rb in real_blocks
        ]
        merged = g.tree(parts, cross.CrossPartial.merge_real_blocks, "cross-merge-real", units=f"merge-{fb.index}")
        per_fake.append(g.unit(f"fake-{fb.index}", same, merged))
    # Merges as units: a tile's (and a fake block's) file leaves the disk once merged.
    return g.tree(per_fake, cross.CrossPartial.merge_fake_blocks, "cross-merge-fake", units="merge-all")


def cross_stage(
    ctx: PassContext, real_src: Source, fake_src: Source, real_radii, fake_radii, realism_radius=None, prob_radii=None,
    balls: Balls | None = None, split_rows=None,
) -> cross.CrossPartial:
    """The fake × real pass: a CrossPartial over all rows."""
    g = Graph("cross")
    key = cross_graph(g, ctx, real_src, fake_src, real_radii, fake_radii, realism_radius, prob_radii, balls,
                      split_rows)
    return run(g, key, "cross")


def _real_pair_task(real_src, a, b, ctx: PassContext, radii_a, radii_b):
    """Real blocks a and b (a = b, or a before b): per row of a, b's balls (``<=``) holding it, and,
    a before b, per row of b, a's: the cross kernel with a as the fake side, both as ball columns."""
    one_thread()
    strategy = ctx.strategy()
    part_a = load_block(real_src, a, ctx)
    part_b = part_a if a.index == b.index else load_block(real_src, b, ctx)
    columns = radii_a.shape[1]
    own = radii_a if a.index != b.index else np.zeros((a.rows, 0))  # a's balls over a's rows: once, as b's
    balls = Balls(radii_b, (True,) * columns, own, (True,) * own.shape[1])
    out = cross.block_pair(
        part_a, part_b, np.zeros((a.rows, 1)), np.zeros((b.rows, 1)), None, ctx.kappa, False, ctx.panel_rows,
        ctx.partition, None, strategy, balls,
    )
    note_screening(strategy)
    return out.balls.fake_in_real, (out.balls.real_in_fake if a.index != b.index else None)


def _pick(pair, side: int):
    return pair[side]


def real_in_real_stage(ctx: PassContext, real_src: Source, radii: np.ndarray) -> np.ndarray:
    """Per real row and column of ``radii`` (real rows × columns): the other real rows whose ball
    (``<=``) holds it. Each pair of real blocks once (a row's counts: the sum over the pairs it is
    in); each row's own ball (at distance 0, exactly, from float64 rows) is taken off.

    A pass of its own, not counts kept by the self pass, which also meets every near real pair:
    a clipped radius, min(r, median of all r), is known only once the self pass has ended, and a
    ``<=`` ball holds every row within it, all copies included, where the self pass keeps per row a
    few more than k + 1 nearest and the near-ties of its (k+1)-th, at most
    :data:`~largeemb.kernels.neighbours.MAX_CANDIDATES`, and its float64 pass keeps no lists.
    """
    g = Graph("real-in-real")
    blocks = ctx.blocks(real_src)
    slices = g.share([radii[b.start : b.stop] for b in blocks])
    real_src, ctx = g.share([real_src, ctx])
    parts = [[] for _ in blocks]
    for a in blocks:
        for b in blocks[a.index :]:
            pair = g.unit(f"pair-{a.index}-{b.index}", _real_pair_task, real_src, a, b, ctx, slices[a.index],
                          slices[b.index])
            parts[a.index].append(g.task("pick", _pick, pair, 0))
            if b.index != a.index:
                parts[b.index].append(g.task("pick", _pick, pair, 1))
    per_block = [g.tree(keys, np.add, "real-in-real-add", units=f"sum-{i}") for i, keys in enumerate(parts)]
    return np.concatenate(run(g, per_block, "real-in-real")) - 1


def _settle_fake_task(fake_src, real_src, fb, ctx: PassContext, nearest, realism, realism_radius):
    fake = load_block(fake_src, fb, ctx)  # float64 pairs only, no tiles
    return FakeSettled(*settle.settle_fake(fake, taker(real_src, ctx.metric), nearest, realism, realism_radius))


def _settle_real_task(real_src, fake_src, rb, ctx: PassContext, nearest):
    real = load_block(real_src, rb, ctx)
    return RealSettled(*settle.settle_real(real, taker(fake_src, ctx.metric), nearest))


def settle_graph(g: Graph, ctx: PassContext, real_src, fake_src, partial: cross.CrossPartial, realism_radius):
    """Keys of the exact per-sample values, block by block, from the cross pass's shortlists."""
    fake_blocks = ctx.blocks(fake_src)
    real_blocks = ctx.blocks(real_src)
    ctx, realism_radius = g.share([ctx, realism_radius])
    fake_lists = g.share([partial.fake_nearest.select(b.start, b.stop) for b in fake_blocks])
    realism_lists = g.share([partial.fake_realism.select(b.start, b.stop) for b in fake_blocks])
    real_lists = g.share([partial.real_nearest.select(b.start, b.stop) for b in real_blocks])
    fake_parts = [
        g.task(
            "settle-fake", _settle_fake_task, fake_src, real_src, fb, ctx, fake_lists[fb.index],
            realism_lists[fb.index], realism_radius,
        )
        for fb in fake_blocks
    ]
    real_parts = [
        g.task("settle-real", _settle_real_task, real_src, fake_src, rb, ctx, real_lists[rb.index])
        for rb in real_blocks
    ]
    return fake_parts, real_parts


def settle_stage(ctx: PassContext, real_src, fake_src, partial: cross.CrossPartial, realism_radius) -> PerSample:
    """Exact per-sample values of every row of both sets."""
    g = Graph("samples")
    fake_parts, real_parts = run(g, list(settle_graph(g, ctx, real_src, fake_src, partial, realism_radius)), "samples")
    return PerSample(
        fake_nearest_dist=np.concatenate([p.nearest_dist for p in fake_parts]),
        fake_nearest_real=np.concatenate([p.nearest_real for p in fake_parts]),
        fake_realism=np.concatenate([p.realism for p in fake_parts]),
        real_nearest_dist=np.concatenate([p.nearest_dist for p in real_parts]),
        float64_pairs=sum(int(p.pairs) for p in fake_parts) + sum(int(p.pairs) for p in real_parts),
    )
