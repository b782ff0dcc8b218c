"""The tiled computation as dask tasks.

Every task receives a :class:`~largeemb.store.Source` and row ranges, opens
the store and reads its own blocks: the graph carries locations and small
per-row bookkeeping (radii, bounds), never embedding data. Partial results
merge in fixed binary trees, so results do not depend on scheduling.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np

from . import cross, groups, knn
from .distance import UNIT_ROUNDOFF64, Block, metric_rows, prepare_block, sqdist_error_scale
from .errors import InputError
from .moments import Moments
from .plan import PANEL_ROWS, RowBlock, bands, row_blocks, segments, tree
from .store import Source
from .execution import same as _same
from .taskgraph import Graph, run


def _one_thread():
    """Keep a task on one core: parallelism comes from the scheduler's workers.

    faiss's OpenMP setting is per calling thread, so it is set in the task.
    """
    import faiss

    faiss.omp_set_num_threads(1)


def thread_probe_task() -> dict:
    """What a task sees of threads once it has set them up as the tile tasks do."""
    import faiss
    from threadpoolctl import threadpool_info

    _one_thread()
    return {
        "faiss": faiss.omp_get_max_threads(),
        "blas": {info["filepath"]: info["num_threads"] for info in threadpool_info()},
        "pid": os.getpid(),
    }


def load_block(source: Source, block: RowBlock, centre: np.ndarray, metric: str) -> Block:
    return prepare_block(source.read(block.start, block.stop), block.start, centre, metric)


# -- moments pass -----------------------------------------------------------


@dataclass
class SegmentCheck:
    """Per segment: moments plus the first row that cannot be used, if any."""

    moments: Moments
    first_nonfinite: int  # -1 when none
    first_zero: int  # -1 when none (matters for the cosine metric)
    digests: list[bytes]  # content hash of each segment, in row order
    first_too_large: int = -1  # -1 when none

    def fingerprint(self, source: Source) -> str:
        return fingerprint_of(source, self.digests)


def fingerprint_of(source: Source, digests: list[bytes]) -> str:
    """Hash of shape, dtype and every stored byte (from per-segment digests, in row order)."""
    whole = hashlib.blake2b(f"{source.rows}x{source.dim}:{source.dtype}".encode(), digest_size=16)
    for digest in digests:
        whole.update(digest)
    return whole.hexdigest()


def _segment_digest(raw: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(raw).tobytes(), digest_size=16).digest()


def _digest_task(source: Source, seg: RowBlock) -> list[bytes]:
    return [_segment_digest(source.read(seg.start, seg.stop))]


def largest_safe_value(dim: int, metric: str) -> float:
    """Largest |value| whose distances stay finite in the arithmetic that computes them.

    Euclidean tiles hold squared distances of centred rows in float32, with
    terms up to about 4 dim (2 |x|)²; a 4x margin on top. Cosine rows are
    normalised in float64, where only the norm can overflow.
    """
    if metric == "cosine":
        return float(np.sqrt(np.finfo(np.float64).max / (dim + 2)) / 4)
    return float(np.sqrt(np.finfo(np.float32).max / (64.0 * (dim + 2))))


def _moment_task(source: Source, seg: RowBlock, shift: np.ndarray, metric_shift, metric: str) -> SegmentCheck:
    raw = source.read(seg.start, seg.stop)
    rows = np.asarray(raw, dtype=np.float64)
    finite = np.isfinite(rows)
    bad = np.flatnonzero(~finite.all(axis=1))
    huge = np.flatnonzero((finite & (np.abs(rows) > largest_safe_value(source.dim, metric))).any(axis=1))
    zero = np.flatnonzero(~rows.any(axis=1))
    if len(bad):
        rows = np.where(np.isfinite(rows), rows, 0.0)
    if metric == "cosine" and len(zero):
        rows = rows.copy()
        rows[zero] = 1.0
    metric_view = metric_rows(rows, metric)
    return SegmentCheck(
        Moments.of_rows(rows, shift, metric_view, metric_shift),
        int(seg.start + bad[0]) if len(bad) else -1,
        int(seg.start + zero[0]) if len(zero) else -1,
        [_segment_digest(raw)],
        int(seg.start + huge[0]) if len(huge) else -1,
    )


def _merge_checks(a: SegmentCheck, b: SegmentCheck) -> SegmentCheck:
    def first(x, y):
        return min(v for v in (x, y) if v >= 0) if max(x, y) >= 0 else -1

    return SegmentCheck(
        a.moments.merge(b.moments),
        first(a.first_nonfinite, b.first_nonfinite),
        first(a.first_zero, b.first_zero),
        a.digests + b.digests,
        first(a.first_too_large, b.first_too_large),
    )


def moments_graph(g: Graph, source: Source, metric: str, role: str = "set"):
    shift = np.asarray(source.read(0, 1), dtype=np.float64)[0]
    if not np.isfinite(shift).all():
        shift = np.zeros_like(shift)
    metric_shift = None  # the metric sees the stored rows: their moments serve
    if metric != "euclidean":
        with np.errstate(invalid="ignore", divide="ignore"):
            metric_shift = metric_rows(shift[None], metric)[0]
        if not np.isfinite(metric_shift).all():
            metric_shift = np.zeros_like(shift)
    shift, metric_shift = g.share([shift, metric_shift])
    parts = [g.task("moments", _moment_task, source, seg, shift, metric_shift, metric) for seg in segments(source.rows)]
    return g.unit(f"{role}-all", _same, g.tree(parts, _merge_checks, "moments-merge"))


def checked_moments(check: SegmentCheck, source: Source, role: str, metric: str) -> Moments:
    if check.first_nonfinite >= 0:
        raise InputError(
            f"{role} embeddings contain NaN or inf (first at row {check.first_nonfinite})",
            f"in {source.name}",
            "fix or drop those rows before evaluating",
        )
    if check.first_too_large >= 0:
        raise InputError(
            f"{role} row {check.first_too_large} holds a value beyond ±{largest_safe_value(source.dim, metric):.3g}, "
            "where distances would overflow",
            f"in {source.name}",
            "rescale the embeddings (e.g. L2-normalise them or use --metric cosine)",
        )
    if metric == "cosine" and check.first_zero >= 0:
        raise InputError(
            f"{role} row {check.first_zero} is all zeros, which has no direction for the cosine metric",
            f"in {source.name}",
            "drop zero rows or use --metric euclidean",
        )
    return check.moments


# -- self k-NN radii ---------------------------------------------------------


def _diag_task(source, block, centre, metric, K, k, partition):
    _one_thread()
    return knn.within(load_block(source, block, centre, metric), K, k, PANEL_ROWS, partition)


def _offdiag_task(source, a, b, centre, metric, diag_a, diag_b, K, partition):
    _one_thread()
    return knn.between(
        load_block(source, a, centre, metric), load_block(source, b, centre, metric),
        knn.Reach.of(diag_a), knn.Reach.of(diag_b), PANEL_ROWS, partition,
    )


def _merge_task(state, *offers):
    """Merge into a block's state what tiles offered it: (tile result, side) pairs, flattened."""
    return knn.merge(state, [offers[i][offers[i + 1]] for i in range(0, len(offers), 2)])


def _max_sqnorm_task(*diags) -> float:
    return max(float(d.sqnorm.max()) for d in diags)


def _finish_task(source, block, metric, nb, ks, kappa, max_sqnorm):
    own = metric_rows(source.read(block.start, block.stop), metric)
    radii, unproven = knn.finish(nb, own, _taker(source, metric), ks, max_sqnorm, kappa)
    return radii, unproven + block.start


def radii_graph(g: Graph, source: Source, centre, metric: str, ks: tuple[int, ...], block_rows: int, role: str = "set", partition=None):
    """Keys of (radii, unproven global rows), one per block.

    Tiles run in bands: round r pairs every block a with block a + r, and each
    block's K best are merged between rounds, so every row's float32 bound
    tightens as it meets more rows (like a heap in a sequential scan) while
    each tile is still computed once for both sides. Candidates per row then
    grow with the log of the block count instead of linearly.
    """
    blocks = row_blocks(source.rows, block_rows)
    K = knn.candidates_per_row(max(ks), source.rows)
    kappa = sqdist_error_scale(source.dim)
    source, centre, partition = g.share([source, centre, partition])  # on a cluster: references to data sent once
    diags = [g.unit(f"{role}-within-{b.index}", _diag_task, source, b, centre, metric, K, max(ks), partition) for b in blocks]
    state = list(diags)
    for band in bands(len(blocks)):
        offers = {}
        for a, b in band:
            pair = g.unit(
                f"{role}-between-{a}-{b}", _offdiag_task, source, blocks[a], blocks[b], centre, metric, state[a], state[b], K, partition
            )
            offers.setdefault(a, []).extend([pair, 0])
            offers.setdefault(b, []).extend([pair, 1])
        for x, offered in offers.items():
            state[x] = g.task("knn-merge", _merge_task, state[x], *offered)
    max_sqnorm = g.task("knn-max-norm", _max_sqnorm_task, *diags)  # a scalar, so diagonal results free early
    return [
        g.unit(f"{role}-finish-{blk.index}", _finish_task, source, blk, metric, nb, ks, kappa, max_sqnorm)
        for blk, nb in zip(blocks, state)
    ]


#: Unproven rows per float64 resolution task (with one block of the set).
RESOLVE_ROWS = 2048


def _resolve_task(source, block, centre, metric, rows, width):
    """float64 GEMM of unproven rows (global ids) against one block: their shortlist there."""
    _one_thread()
    centre64 = np.asarray(centre, np.float64)
    own = metric_rows(source.read_rows(rows), metric) - centre64
    panel = metric_rows(source.read(block.start, block.stop), metric) - centre64
    kappa64 = sqdist_error_scale(source.dim, UNIT_ROUNDOFF64)
    return knn.resolve_block(own, panel, block.start, width, kappa64, PANEL_ROWS)


def _resolve_merge(a, b, width):
    return a.merged(b, width)


def _resolved_task(source, metric, rows, ks, pairs):
    """Exact radii of unproven rows from their merged float64 shortlist."""
    _one_thread()
    own = metric_rows(source.read_rows(rows), metric)
    return knn.resolve_finish(pairs, own, _taker(source, metric), len(rows), ks)


def resolve_graph(g: Graph, source: Source, centre, metric: str, ks, block_rows: int, unproven: np.ndarray, role: str = "set"):
    """Keys of the exact radii of the unproven rows, one per chunk of ``RESOLVE_ROWS`` of them (in order).

    One task per (chunk, streamed block): a float64 GEMM of the chunk's rows
    against the block, keeping only the pairs near each row's threshold;
    per chunk the blocks' shortlists merge in a fixed tree, and a last task
    computes exact differences for what is left. Runs on the executor like
    every other pass (parallel, on a cluster, checkpointed).
    """
    blocks = row_blocks(source.rows, block_rows)
    width = max(ks) + 1
    source, centre = g.share([source, centre])
    out = []
    for c, lo in enumerate(range(0, len(unproven), RESOLVE_ROWS)):
        rows = unproven[lo : lo + RESOLVE_ROWS]
        [rows_key] = g.share([rows])
        parts = [g.unit(f"{role}-resolve-{c}-{b.index}", _resolve_task, source, b, centre, metric, rows_key, width) for b in blocks]
        merged = tree(parts, lambda a, b: g.task("resolve-merge", _resolve_merge, a, b, width))
        out.append(g.unit(f"{role}-resolved-{c}", _resolved_task, source, metric, rows_key, ks, merged))
    return out


# -- cross pass --------------------------------------------------------------


def _cross_task(fake_src, real_src, fb, rb, centre, metric, fake_radii, real_radii, realism_radius, kappa, inclusive, partition):
    _one_thread()
    fake = load_block(fake_src, fb, centre, metric)
    real = load_block(real_src, rb, centre, metric)
    return cross.block_pair(fake, real, fake_radii, real_radii, realism_radius, kappa, inclusive, PANEL_ROWS, partition)


def cross_graph(
    g: Graph, real_src, fake_src, centre, metric, real_radii, fake_radii, inclusive, block_rows, realism_radius=None, partition=None
):
    """Key of the CrossPartial of the whole fake × real pass.

    ``realism_radius`` (per real row, 0 where it takes no part) turns on the
    per-sample values; None leaves them out.
    """
    real_blocks = row_blocks(real_src.rows, block_rows)
    fake_blocks = row_blocks(fake_src.rows, block_rows)
    kappa = sqdist_error_scale(real_src.dim)

    def per_block(values, blocks):
        if values is None:
            return [None] * len(blocks)
        return g.share([values[b.start : b.stop] for b in blocks])  # once per block, not once per tile

    real_src, fake_src, centre, partition = g.share([real_src, fake_src, centre, partition])
    real_slices, fake_slices = per_block(real_radii, real_blocks), per_block(fake_radii, fake_blocks)
    realism_slices = per_block(realism_radius, real_blocks)
    per_fake = []
    for fb in fake_blocks:
        parts = [
            g.unit(
                f"tile-{fb.index}-{rb.index}", _cross_task, fake_src, real_src, fb, rb, centre, metric,
                fake_slices[fb.index], real_slices[rb.index], realism_slices[rb.index], kappa, inclusive, partition,
            )
            for rb in real_blocks
        ]
        per_fake.append(g.unit(f"fake-{fb.index}", _same, g.tree(parts, cross.CrossPartial.merge_real_blocks, "cross-merge-real")))
    return g.tree(per_fake, cross.CrossPartial.merge_fake_blocks, "cross-merge-fake")


def _taker(source: Source, metric: str):
    """Gather float64 metric rows by global index (any order, repeats allowed)."""

    def take(rows):
        wanted, where = np.unique(rows, return_inverse=True)
        return metric_rows(source.read_rows(wanted), metric)[where]

    return take


def _settle_fake_task(fake_src, real_src, fb, centre, metric, nearest, realism, realism_radius):
    fake = load_block(fake_src, fb, centre, metric)
    return cross.settle_fake(fake, _taker(real_src, metric), nearest, realism, realism_radius)


def _settle_real_task(real_src, fake_src, rb, centre, metric, nearest):
    real = load_block(real_src, rb, centre, metric)
    return cross.settle_real(real, _taker(fake_src, metric), nearest)


def settle_graph(g: Graph, real_src, fake_src, centre, metric, partial: cross.CrossPartial, realism_radius, block_rows):
    """Keys of the exact per-sample values, block by block, from the cross pass's shortlists."""
    fake_blocks = row_blocks(fake_src.rows, block_rows)
    real_blocks = row_blocks(real_src.rows, block_rows)
    centre, realism_radius = g.share([centre, realism_radius])
    fake_lists = g.share([partial.fake_nearest.select(b.start, b.stop) for b in fake_blocks])
    realism_lists = g.share([partial.fake_realism.select(b.start, b.stop) for b in fake_blocks])
    real_lists = g.share([partial.real_nearest.select(b.start, b.stop) for b in real_blocks])
    fake_parts = [
        g.task(
            "settle-fake", _settle_fake_task, fake_src, real_src, fb, centre, metric,
            fake_lists[fb.index], realism_lists[fb.index], realism_radius,
        )
        for fb in fake_blocks
    ]
    real_parts = [
        g.task("settle-real", _settle_real_task, real_src, fake_src, rb, centre, metric, real_lists[rb.index])
        for rb in real_blocks
    ]
    return fake_parts, real_parts


# -- stages shared by evaluate and reference build ---------------------------


def moments_stage(sources_and_roles, metric: str, hashed: Source | None = None):
    """One streamed pass per source: checked moments and content fingerprints.

    ``hashed``, a store checked before (a reference's), is only fingerprinted,
    in the same pass; its fingerprint is returned last.
    """
    g = Graph("moments")
    keys = [moments_graph(g, src, metric, role) for src, role in sources_and_roles]
    if hashed is not None:
        digests = [g.task("digest", _digest_task, hashed, seg) for seg in segments(hashed.rows)]
        keys.append(g.tree(digests, list.__add__, "digest-merge"))
    results = run(g, keys, "moments")
    out = [
        (checked_moments(check, src, role, metric), check.fingerprint(src))
        for check, (src, role) in zip(results, sources_and_roles)
    ]
    return out + ([fingerprint_of(hashed, results[-1])] if hashed is not None else [])


def partition_stage(source: Source, moments: Moments, centre, metric: str, seed: int):
    """Groups for pruning (see :mod:`largeemb.groups`), from the real set's moments and a sample.

    The sample is read in a few evenly spread runs of rows; the partition
    decides only what work is skipped, never an answer.
    """
    runs, run_rows = 16, 128
    starts = np.unique(np.linspace(0, max(source.rows - run_rows, 0), runs).astype(np.int64))
    sample = np.concatenate([source.read(int(a), min(int(a) + run_rows, source.rows)) for a in starts])
    centred = metric_rows(sample, metric) - centre
    return groups.partition_of(moments.cov, centred[np.isfinite(centred).all(axis=1)], seed)


def radii_stage(sources, centre, metric: str, ks, block_rows: int, roles=("real", "fake"), partition=None, timings=None):
    """Exact k-NN radii of each source: a list of ((rows, len(ks)) radii, rows resolved in float64).

    Two passes of tasks: the float32 tile pass (:func:`radii_graph`), then,
    for the rows it could not prove, the float64 pass (:func:`resolve_graph`).
    ``timings``, if given, gets the seconds of the second as ``radii_float64``.
    """
    g = Graph("radii")
    per_source = run(
        g, [radii_graph(g, src, centre, metric, ks, block_rows, role, partition) for src, role in zip(sources, roles)], "radii"
    )
    radii = [np.concatenate([r for r, _ in blocks]) for blocks in per_source]
    unproven = [np.concatenate([u for _, u in blocks]) for blocks in per_source]
    if any(len(u) for u in unproven):
        start = time.perf_counter()
        g = Graph("float64")
        keys = [resolve_graph(g, src, centre, metric, ks, block_rows, u, role) for src, u, role in zip(sources, unproven, roles)]
        for r, u, parts in zip(radii, unproven, run(g, keys, "float64")):
            if len(u):
                r[u] = np.concatenate(parts)
        if timings is not None:
            timings["radii_float64"] = timings.get("radii_float64", 0.0) + time.perf_counter() - start
    return [(r, len(u)) for r, u in zip(radii, unproven)]


def cross_stage(real_src, fake_src, centre, metric, real_radii, fake_radii, inclusive, block_rows, realism_radius=None, partition=None):
    """The fake × real pass: a CrossPartial over all rows."""
    g = Graph("cross")
    key = cross_graph(g, real_src, fake_src, centre, metric, real_radii, fake_radii, inclusive, block_rows, realism_radius, partition)
    return run(g, key, "cross")


def settle_stage(real_src, fake_src, centre, metric, partial, realism_radius, block_rows) -> dict:
    """Exact per-sample values (arrays named as EvaluationResult fields)."""
    g = Graph("samples")
    fake_parts, real_parts = run(
        g, list(settle_graph(g, real_src, fake_src, centre, metric, partial, realism_radius, block_rows)), "samples"
    )
    return {
        "fake_nearest_dist": np.concatenate([p[0] for p in fake_parts]),
        "fake_nearest_real": np.concatenate([p[1] for p in fake_parts]),
        "fake_realism": np.concatenate([p[2] for p in fake_parts]),
        "real_nearest_dist": np.concatenate(real_parts),
    }

