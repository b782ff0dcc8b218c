"""The self pass: exact k-NN radii of one set, as tasks.

Every task receives a :class:`~largeemb.io.store.Source` and row ranges, opens
the store and reads its own blocks: the graph carries locations and small
per-row bookkeeping (bounds), never embedding data. The NumPy of one block or
one block pair is :mod:`largeemb.kernels.knn` (tiles), :mod:`largeemb.kernels.neighbours`
(merges, exact radii) and :mod:`largeemb.kernels.resolve` (the float64 pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels import knn, neighbours, parts, resolve
from largeemb.kernels.distance import exact_rows, metric_rows, sqdist_error_scale
from largeemb.kernels.plan import bands, tree
from largeemb.kernels.roundoff import UNIT_ROUNDOFF64
from largeemb.passes.blocks import load_block, taker
from largeemb.passes.context import PassContext, note_screening
from largeemb.run.graph import Graph, run
from largeemb.run.threads import one_thread

#: Unproven rows per float64 resolution task (with one block of the set).
RESOLVE_ROWS = 2048


@dataclass
class Radii:
    """Exact k-NN radii of one set (or of a chunk of its rows): (rows, len(k)) float64, and how many rows the
    float64 pass settled.

    ``tile_pairs``: pairs the tile pass's finish re-checked in float64;
    ``float64_pairs``: pairs the float64 pass computed exact differences for.
    """

    values: np.ndarray
    float64_rows: int
    tile_pairs: int = 0
    float64_pairs: int = 0
    #: (rows, len(split_k), 64) float64 part radii (:mod:`largeemb.kernels.parts`), or None; the float64
    #: pairs their lists took, and the rows the float64 pass served (their lists were short).
    parts: np.ndarray | None = None
    parts_pairs: int = 0
    parts_rows: int = 0


@dataclass
class TilePass:
    """What the float32 tile pass found for one set (or one block of it): radii, the (global)
    rows whose radii it could not prove, and how many pairs its finish re-checked in float64."""

    values: np.ndarray
    unproven: np.ndarray
    pairs: int = 0
    #: Part radii (rows, len(split_k), 64), the global rows whose part radii the lists could not prove,
    #: and the float64 pairs the lists took.
    parts: np.ndarray | None = None
    parts_unproven: np.ndarray | None = None
    parts_pairs: int = 0

    @classmethod
    def joined(cls, blocks: list[TilePass]) -> TilePass:
        """The whole set's, from its blocks' (in order)."""
        with_parts = blocks[0].parts is not None
        return cls(
            np.concatenate([b.values for b in blocks]),
            np.concatenate([b.unproven for b in blocks]),
            sum(int(b.pairs) for b in blocks),
            np.concatenate([b.parts for b in blocks]) if with_parts else None,
            np.concatenate([b.parts_unproven for b in blocks]) if with_parts else None,
            sum(int(b.parts_pairs) for b in blocks),
        )


def _diag_task(source, block, ctx: PassContext, K):
    one_thread()
    strategy = ctx.strategy()
    nb = knn.within(
        load_block(source, block, ctx), K, max(ctx.k), ctx.panel_rows, ctx.partition, kappa=ctx.kappa, strategy=strategy
    )
    note_screening(strategy)
    return nb


def _offdiag_task(source, a, b, ctx: PassContext, diag_a, diag_b):
    one_thread()
    strategy = ctx.strategy()
    offers = knn.between(
        load_block(source, a, ctx), load_block(source, b, ctx), knn.Reach.of(diag_a), knn.Reach.of(diag_b),
        ctx.panel_rows, ctx.partition,
        strategy,
    )
    note_screening(strategy)
    return offers


def _merge_task(state, *offers):
    """Merge into a block's state what tiles offered it: (tile result, side) pairs, flattened."""
    pairs = [(offers[i], offers[i + 1]) for i in range(0, len(offers), 2)]
    return neighbours.merge(state, [pair[side] for pair, side in pairs])


def _max_sqnorm_task(*states) -> float:
    return max(float(s.sqnorm.max()) for s in states)


def split_key(role: str) -> int:
    """Which random splits a set's rows are dealt by (:func:`largeemb.kernels.splits.split_words`): the real
    set's 0, the fake set's 1."""
    return 1 if role == "fake" else 0


def _finish_task(source, block, ctx: PassContext, nb, max_sqnorm, role):
    own = exact_rows(source.read(block.start, block.stop), ctx.metric)
    take = taker(source, ctx.metric, exact_rows)
    radii, unproven, pairs, known = neighbours.finish(nb, own, take, ctx.k, max_sqnorm, ctx.kappa)
    if not ctx.split_k:
        return TilePass(radii, unproven + block.start, pairs)
    # Only the part radii are kept: the lists leave with this task.
    found, short, more = parts.from_listed(
        nb, own, take, ctx.split_k, max_sqnorm, ctx.kappa, source.rows, split_key(role), known
    )
    return TilePass(radii, unproven + block.start, pairs, found, short + block.start, more)


def radii_graph(g: Graph, ctx: PassContext, source: Source, role: str = "set"):
    """Keys of each block's :class:`TilePass` (its radii and unproven global rows), in order.

    Tiles run in bands: round r pairs every block a with block a + r, and each
    block's K best are merged between rounds, so every row's float32 bound
    tightens as it meets more rows (like a heap in a sequential scan) while
    each tile is still computed once for both sides. Candidates per row then
    grow with the log of the block count instead of linearly.
    """
    blocks = ctx.blocks(source)
    K = neighbours.candidates_per_row(max(ctx.k), source.rows)
    if ctx.split_k:  # the row itself and the others its part radii take (kernels/parts.py)
        K = max(K, min(parts.listed_size(max(ctx.split_k)) + 1, source.rows))
    source, ctx = g.share([source, ctx])  # on a cluster: references to data sent once
    diags = [g.unit(f"{role}-within-{b.index}", _diag_task, source, b, ctx, K) for b in blocks]
    state = list(diags)
    for r, band in enumerate(bands(len(blocks)), start=1):
        offers = {}
        for a, b in band:
            pair = g.unit(
                f"{role}-between-{a}-{b}", _offdiag_task, source, blocks[a], blocks[b], ctx, state[a], state[b]
            )
            offers.setdefault(a, []).extend([pair, 0])
            offers.setdefault(b, []).extend([pair, 1])
        for x, offered in offers.items():  # a unit: once saved, the tiles it took in leave the disk
            state[x] = g.unit(f"{role}-state-{x}-{r}", _merge_task, state[x], *offered)
    # From the final states (each carries its rows' norms), not the diagonal results,
    # so that those leave the disk once the first round is merged.
    max_sqnorm = g.unit(f"{role}-norm", _max_sqnorm_task, *state)
    return [
        g.unit(f"{role}-finish-{blk.index}", _finish_task, source, blk, ctx, nb, max_sqnorm, role)
        for blk, nb in zip(blocks, state)
    ]


def _resolve_task(source, block, ctx: PassContext, rows, width):
    """float64 GEMM of unproven rows (global ids) against one block: their shortlist there."""
    one_thread()
    centre64 = np.asarray(ctx.centre, np.float64)
    own = metric_rows(source.read_rows(rows), ctx.metric) - centre64
    panel = metric_rows(source.read(block.start, block.stop), ctx.metric) - centre64
    kappa64 = sqdist_error_scale(source.dim, UNIT_ROUNDOFF64)
    return resolve.resolve_block(own, panel, block.start, width, kappa64, ctx.panel_rows)


def _resolve_merge(a, b, width):
    return a.merged(b, width)


def _resolved_task(source, ctx: PassContext, rows, pairs):
    """Exact radii of unproven rows from their merged float64 shortlist, and how many pairs that took."""
    one_thread()
    own = metric_rows(source.read_rows(rows), ctx.metric)
    values = resolve.resolve_finish(pairs, own, taker(source, ctx.metric), len(rows), ctx.k)
    return Radii(values, float64_rows=len(rows), float64_pairs=len(pairs.rows))


def resolve_graph(g: Graph, ctx: PassContext, source: Source, unproven: np.ndarray, role: str = "set"):
    """Keys of the exact :class:`Radii` of the unproven rows, one per chunk of ``RESOLVE_ROWS`` of them (in order).

    One task per (chunk, streamed block): a float64 GEMM of the chunk's rows
    against the block, keeping only the pairs near each row's threshold;
    per chunk the blocks' shortlists merge in a fixed tree, and a last task
    computes exact differences for what is left. Runs on the executor like
    every other pass (parallel, on a cluster, checkpointed).
    """
    blocks = ctx.blocks(source)
    width = max(ctx.k) + 1
    source, ctx = g.share([source, ctx])
    out = []
    for c, lo in enumerate(range(0, len(unproven), RESOLVE_ROWS)):
        [rows] = g.share([unproven[lo : lo + RESOLVE_ROWS]])
        parts = [g.unit(f"{role}-resolve-{c}-{b.index}", _resolve_task, source, b, ctx, rows, width) for b in blocks]
        merged = tree(parts, lambda a, b: g.task("resolve-merge", _resolve_merge, a, b, width))
        out.append(g.unit(f"{role}-resolved-{c}", _resolved_task, source, ctx, rows, merged))
    return out


def _parts_task(source, ctx: PassContext, rows, pairs, width, role):
    """Part radii of some rows from their merged float64 shortlist, and which of them it left short."""
    one_thread()
    own = metric_rows(source.read_rows(rows), ctx.metric)
    return parts.from_shortlist(
        pairs, own, taker(source, ctx.metric), rows, width, ctx.split_k, source.rows, split_key(role)
    )


def parts_graph(g: Graph, ctx: PassContext, source: Source, rows: np.ndarray, width: int, role: str):
    """Keys of (part radii, short positions) of ``rows`` from float64 shortlists of ``width`` (self included),
    one per chunk of ``RESOLVE_ROWS``: the float64 pass of :func:`resolve_graph`, with a wider shortlist."""
    blocks = ctx.blocks(source)
    source, ctx = g.share([source, ctx])
    out = []
    for c, lo in enumerate(range(0, len(rows), RESOLVE_ROWS)):
        [chunk] = g.share([rows[lo : lo + RESOLVE_ROWS]])
        found = [
            g.unit(f"{role}-parts-{width}-{c}-{b.index}", _resolve_task, source, b, ctx, chunk, width) for b in blocks
        ]
        merged = tree(found, lambda a, b: g.task("parts-merge", _resolve_merge, a, b, width))
        out.append(g.unit(f"{role}-parts-{width}-{c}", _parts_task, source, ctx, chunk, merged, width, role))
    return out


def parts_stage(ctx: PassContext, sources, tiles: list[TilePass], roles=("real", "fake")) -> None:
    """Part radii of the rows the lists left short, in float64, into ``tiles`` (their lists widened until
    every part holds k rows of them). Rounds: each doubles the width for the rows still short."""
    if not ctx.split_k:
        return
    todo = [t.parts_unproven for t in tiles]
    width = parts.listed_size(max(ctx.split_k)) + 1
    while any(len(rows) for rows in todo):
        g = Graph("float64-parts")
        live = [i for i, rows in enumerate(todo) if len(rows)]
        widths = {i: min(width, sources[i].rows) for i in live}
        keys = [parts_graph(g, ctx, sources[i], todo[i], widths[i], roles[i]) for i in live]
        for i, chunks in zip(live, run(g, keys, "float64")):
            found = np.concatenate([c[0] for c in chunks])
            tiles[i].parts[todo[i]] = found
            short = np.concatenate([c[1] + lo for c, lo in zip(chunks, range(0, len(todo[i]), RESOLVE_ROWS))])
            if len(short) and widths[i] >= sources[i].rows:
                raise AssertionError("a row that met every row of its set cannot be short")
            todo[i] = todo[i][short]
        width *= 2


def radii_stage(ctx: PassContext, sources, roles=("real", "fake")) -> list[TilePass]:
    """The float32 tile pass of each source: radii, exact for every row it could prove."""
    g = Graph("radii")
    per_source = run(g, [radii_graph(g, ctx, src, role) for src, role in zip(sources, roles)], "radii")
    return [TilePass.joined(blocks) for blocks in per_source]


def resolve_stage(ctx: PassContext, sources, tiles: list[TilePass], roles=("real", "fake")) -> list[Radii]:
    """The float64 pass over the rows the tile pass left unproven (none: nothing runs)."""
    pairs = [0] * len(tiles)
    if any(len(t.unproven) for t in tiles):
        g = Graph("float64")
        keys = [resolve_graph(g, ctx, src, t.unproven, role) for src, t, role in zip(sources, tiles, roles)]
        for i, (t, parts) in enumerate(zip(tiles, run(g, keys, "float64"))):
            if len(t.unproven):
                t.values[t.unproven] = np.concatenate([chunk.values for chunk in parts])
                pairs[i] = sum(int(chunk.float64_pairs) for chunk in parts)
    parts_stage(ctx, sources, tiles, roles)
    return [
        Radii(t.values, len(t.unproven), t.pairs, n, t.parts, t.parts_pairs, _count(t.parts_unproven))
        for t, n in zip(tiles, pairs)
    ]


def _count(rows) -> int:
    return 0 if rows is None else len(rows)
