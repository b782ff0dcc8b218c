"""The tiled computation as dask tasks.

Every task receives a :class:`~largeemb.store.Source` and row ranges, opens
the store and reads its own blocks: the graph carries locations and small
per-row bookkeeping (radii, bounds), never embedding data. Partial results
merge in fixed binary trees, so results do not depend on scheduling.

Units of work (tiles, per-block results, the roots of merge trees) are named
through :class:`~largeemb.execution.Tasks`, which counts them for progress and
keeps them on disk when the run keeps checkpoints; how graphs run is
:mod:`largeemb.execution`'s business.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dask
import numpy as np

from . import cross, execution, knn
from .distance import Block, metric_rows, prepare_block, sqdist_error_scale
from .errors import InputError
from .moments import Moments
from .plan import RowBlock, row_blocks, segments, self_tiles, tree
from .store import Source


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


def _moment_task(source: Source, seg: RowBlock, shift: np.ndarray, metric: str) -> SegmentCheck:
    raw = source.read(seg.start, seg.stop)
    rows = np.asarray(raw, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    zero = np.flatnonzero(~rows.any(axis=1))
    if len(bad):
        rows = np.where(np.isfinite(rows), rows, 0.0)
    if metric == "cosine" and len(zero):
        rows = rows.copy()
        rows[zero] = 1.0
    metric_view = metric_rows(rows, metric)
    return SegmentCheck(
        Moments.of_rows(rows, shift, metric_view),
        int(seg.start + bad[0]) if len(bad) else -1,
        int(seg.start + zero[0]) if len(zero) else -1,
    )


def _merge_checks(a: SegmentCheck, b: SegmentCheck) -> SegmentCheck:
    def first(x, y):
        return min(v for v in (x, y) if v >= 0) if max(x, y) >= 0 else -1

    return SegmentCheck(a.moments.merge(b.moments), first(a.first_nonfinite, b.first_nonfinite), first(a.first_zero, b.first_zero))


def moments_graph(source: Source, metric: str, tasks: execution.Tasks | None = None):
    tasks = tasks or execution.Tasks("moments")
    shift = np.asarray(source.read(0, 1), dtype=np.float64)[0]
    if not np.isfinite(shift).all():
        shift = np.zeros_like(shift)
    (shift,) = tasks.share([shift])
    parts = [dask.delayed(_moment_task)(source, seg, shift, metric) for seg in segments(source.rows)]
    return tasks.root("all", tree(parts, dask.delayed(_merge_checks)))


def checked_moments(check: SegmentCheck, source: Source, role: str, metric: str) -> Moments:
    if check.first_nonfinite >= 0:
        raise InputError(
            f"{role} embeddings contain NaN or inf (first at row {check.first_nonfinite})",
            f"in {source.name}",
            "fix or drop those rows before evaluating",
        )
    if metric == "cosine" and check.first_zero >= 0:
        raise InputError(
            f"{role} row {check.first_zero} is all zeros, which has no direction for the cosine metric",
            f"in {source.name}",
            "drop zero rows or use --metric euclidean",
        )
    return check.moments


# -- self k-NN radii ---------------------------------------------------------


def _diag_task(source, block, centre, metric, K):
    _one_thread()
    return knn.diagonal(load_block(source, block, centre, metric), K)


def _offdiag_task(source, a, b, centre, metric, diag_a, diag_b, K):
    _one_thread()
    return knn.off_diagonal(
        load_block(source, a, centre, metric), load_block(source, b, centre, metric), diag_a.bound, diag_b.bound, K
    )


def _merge_task(diag, *tile_results_and_sides):
    half = len(tile_results_and_sides) // 2
    results, sides = tile_results_and_sides[:half], tile_results_and_sides[half:]
    return knn.merge(diag, [result[side] for result, side in zip(results, sides)])


def _finish_task(source, block, metric, nb, ks, kappa, *diags):
    max_sqnorm = max(float(d.sqnorm.max()) for d in diags)
    own = metric_rows(source.read(block.start, block.stop), metric)
    wanted = np.unique(nb.idx[nb.idx >= 0])
    neighbours = metric_rows(source.read_rows(wanted), metric)
    radii, unproven = knn.finish(
        nb, own, lambda rows: neighbours[np.searchsorted(wanted, rows)], ks, max_sqnorm, kappa
    )
    return radii, unproven + block.start


def radii_graph(source: Source, centre, metric: str, ks: tuple[int, ...], block_rows: int, tasks: execution.Tasks | None = None):
    """Delayed list of (radii, unproven global rows) per block."""
    tasks = tasks or execution.Tasks("radii")
    (centre,) = tasks.share([centre])
    blocks = row_blocks(source.rows, block_rows)
    K = knn.candidates_per_row(max(ks), source.rows)
    diags = [tasks(f"diag-{b.index}", _diag_task, source, b, centre, metric, K) for b in blocks]
    tiles = {
        (a.index, b.index): tasks(f"offdiag-{a.index}-{b.index}", _offdiag_task, source, a, b, centre, metric, diags[a.index], diags[b.index], K)
        for a, b in self_tiles(blocks)
    }
    merged = []
    for blk in blocks:
        mine = [(tiles[key], 0 if key[0] == blk.index else 1) for key in sorted(tiles) if blk.index in key]
        merged.append(dask.delayed(_merge_task)(diags[blk.index], *[t for t, _ in mine], *[s for _, s in mine]))
    kappa = sqdist_error_scale(source.dim)
    return [tasks(f"finish-{blk.index}", _finish_task, source, blk, metric, nb, ks, kappa, *diags) for blk, nb in zip(blocks, merged)]


def collect_radii(per_block, source: Source, centre, metric: str, ks, block_rows: int) -> tuple[np.ndarray, int]:
    """Concatenate block radii; recompute unproven rows by float64 brute force."""
    radii = np.concatenate([r for r, _ in per_block])
    unproven = np.concatenate([u for _, u in per_block])
    if len(unproven):
        rows = metric_rows(np.stack([source.read(i, i + 1)[0] for i in unproven]), metric)
        blocks = (metric_rows(source.read(b.start, b.stop), metric) for b in row_blocks(source.rows, block_rows))
        radii[unproven] = knn.exact_radii_rows(rows, blocks, ks)
    return radii, len(unproven)


# -- cross pass --------------------------------------------------------------


def _cross_task(fake_src, real_src, fb, rb, centre, metric, fake_radii, real_radii, kappa, inclusive):
    _one_thread()
    fake = load_block(fake_src, fb, centre, metric)
    real = load_block(real_src, rb, centre, metric)
    return cross.tile(fake, real, fake_radii, real_radii, kappa, inclusive)


def cross_graph(real_src, fake_src, centre, metric, real_radii, fake_radii, inclusive, block_rows, tasks: execution.Tasks | None = None):
    tasks = tasks or execution.Tasks("cross")
    real_blocks = row_blocks(real_src.rows, block_rows)
    fake_blocks = row_blocks(fake_src.rows, block_rows)
    kappa = sqdist_error_scale(real_src.dim)
    # Radii go to the cluster once per block, not once per tile.
    centre, *slices = tasks.share(
        [centre] + [real_radii[b.start : b.stop] for b in real_blocks] + [fake_radii[b.start : b.stop] for b in fake_blocks]
    )
    real_slices, fake_slices = slices[: len(real_blocks)], slices[len(real_blocks) :]
    per_fake = []
    for fb in fake_blocks:
        fake_slice = fake_slices[fb.index]
        parts = [
            tasks(f"tile-{fb.index}-{rb.index}", _cross_task, fake_src, real_src, fb, rb, centre, metric, fake_slice, real_slices[rb.index], kappa, inclusive)
            for rb in real_blocks
        ]
        per_fake.append(tasks.root(f"fake-{fb.index}", tree(parts, dask.delayed(cross.CrossPartial.merge_real_blocks))))
    return tree(per_fake, dask.delayed(cross.CrossPartial.merge_fake_blocks))


# -- running -----------------------------------------------------------------


cores = execution.cores


def compute(*graphs, workers: int | None = None, label: str = "tasks"):
    """Compute delayed graphs on the current run's executor (see
    :func:`largeemb.execution.open_run`), with progress under ``label``.

    Outside a run they go to in-process threads (``workers`` of them, default
    all cores; kept for callers that predate runs).
    """
    return execution.compute(*graphs, label=label, threads=workers)
