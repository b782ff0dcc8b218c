"""The self pass: exact k-NN radii of one set, as tasks.

Every task receives a :class:`~largeemb.io.store.Source` and row ranges, opens
the store and reads its own blocks: the graph carries locations and small
per-row bookkeeping (bounds), never embedding data. The NumPy of one block or
one block pair is :mod:`largeemb.kernels.knn`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels import knn
from largeemb.kernels.distance import Block, metric_rows, prepare_block
from largeemb.kernels.plan import RowBlock, bands, row_blocks
from largeemb.passes.context import PassContext
from largeemb.run.graph import Graph, run
from largeemb.run.threads import one_thread


@dataclass
class Radii:
    """Exact k-NN radii of one set: (rows, len(k)) float64, and how many rows the float64 fallback settled."""

    values: np.ndarray
    float64_rows: int


def load_block(source: Source, block: RowBlock, ctx: PassContext) -> Block:
    return prepare_block(source.read(block.start, block.stop), block.start, ctx.centre, ctx.metric)


def taker(source: Source, metric: str):
    """Gather float64 metric rows by global index (any order, repeats allowed)."""

    def take(rows):
        wanted, where = np.unique(rows, return_inverse=True)
        return metric_rows(source.read_rows(wanted), metric)[where]

    return take


def _diag_task(source, block, ctx: PassContext, K):
    one_thread()
    return knn.within(load_block(source, block, ctx), K, ctx.panel_rows, ctx.partition)


def _offdiag_task(source, a, b, ctx: PassContext, diag_a, diag_b, K):
    one_thread()
    return knn.between(
        load_block(source, a, ctx), load_block(source, b, ctx), diag_a.bound, diag_b.bound, K, ctx.panel_rows, ctx.partition
    )


def _merge_task(state, *offers):
    """Merge into a block's state what tiles offered it: (tile result, side) pairs, flattened."""
    return knn.merge(state, [offers[i][offers[i + 1]] for i in range(0, len(offers), 2)])


def _max_sqnorm_task(*diags) -> float:
    return max(float(d.sqnorm.max()) for d in diags)


def _finish_task(source, block, ctx: PassContext, nb, max_sqnorm):
    own = metric_rows(source.read(block.start, block.stop), ctx.metric)
    radii, unproven = knn.finish(nb, own, taker(source, ctx.metric), ctx.k, max_sqnorm, ctx.kappa)
    return radii, unproven + block.start


def radii_graph(g: Graph, ctx: PassContext, source: Source, role: str = "set"):
    """Keys of (radii, unproven global rows), one per block.

    Tiles run in bands: round r pairs every block a with block a + r, and each
    block's K best are merged between rounds, so every row's float32 bound
    tightens as it meets more rows (like a heap in a sequential scan) while
    each tile is still computed once for both sides. Candidates per row then
    grow with the log of the block count instead of linearly.
    """
    blocks = row_blocks(source.rows, ctx.block_rows)
    K = knn.candidates_per_row(max(ctx.k), source.rows)
    source, ctx = g.share([source, ctx])  # on a cluster: references to data sent once
    diags = [g.unit(f"{role}-within-{b.index}", _diag_task, source, b, ctx, K) for b in blocks]
    state = list(diags)
    for band in bands(len(blocks)):
        offers = {}
        for a, b in band:
            pair = g.unit(f"{role}-between-{a}-{b}", _offdiag_task, source, blocks[a], blocks[b], ctx, state[a], state[b], K)
            offers.setdefault(a, []).extend([pair, 0])
            offers.setdefault(b, []).extend([pair, 1])
        for x, offered in offers.items():
            state[x] = g.task("knn-merge", _merge_task, state[x], *offered)
    max_sqnorm = g.task("knn-max-norm", _max_sqnorm_task, *diags)  # a scalar, so diagonal results free early
    return [g.unit(f"{role}-finish-{blk.index}", _finish_task, source, blk, ctx, nb, max_sqnorm) for blk, nb in zip(blocks, state)]


def collect_radii(per_block, source: Source, ctx: PassContext) -> Radii:
    """Concatenate block radii; recompute unproven rows by float64 brute force."""
    radii = np.concatenate([r for r, _ in per_block])
    unproven = np.concatenate([u for _, u in per_block])
    if len(unproven):
        rows = metric_rows(np.stack([source.read(i, i + 1)[0] for i in unproven]), ctx.metric)
        blocks = (metric_rows(source.read(b.start, b.stop), ctx.metric) for b in row_blocks(source.rows, ctx.block_rows))
        radii[unproven] = knn.exact_radii_rows(rows, blocks, ctx.k)
    return Radii(radii, len(unproven))


def radii_stage(ctx: PassContext, sources, roles=("real", "fake")) -> list[Radii]:
    """Exact k-NN radii of each source."""
    g = Graph("radii")
    per_source = run(g, [radii_graph(g, ctx, src, role) for src, role in zip(sources, roles)], "radii")
    return [collect_radii(blocks, src, ctx) for blocks, src in zip(per_source, sources)]
