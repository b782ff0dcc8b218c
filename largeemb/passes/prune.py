"""Pruning setup: the groups that let tiles skip work (see :mod:`largeemb.kernels.prune`)."""

from __future__ import annotations

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels import prune as kernel
from largeemb.kernels.distance import metric_rows
from largeemb.kernels.moments import Moments
from largeemb.kernels.prune import Partition, partition_of
from largeemb.run.threads import pools_at_one_thread

#: The sample the groups are fitted on: this many evenly spread runs of this many rows.
SAMPLE_RUNS, RUN_ROWS = 16, 128


def sample_runs(rows: int) -> list[tuple[int, int]]:
    """The sample's row ranges: SAMPLE_RUNS evenly spread runs of RUN_ROWS, overlapping runs merged
    (a set of fewer rows than the runs cover is sampled whole, each row once)."""
    runs = []
    for start in np.unique(np.linspace(0, max(rows - RUN_ROWS, 0), SAMPLE_RUNS).astype(np.int64)):
        start, stop = int(start), min(int(start) + RUN_ROWS, rows)
        if runs and start <= runs[-1][1]:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


def partition_stage(source: Source, moments: Moments, centre: np.ndarray, metric: str, seed: int) -> Partition:
    """Groups for pruning, from the real set's moments and a sample of its rows.

    The sample is read in a few evenly spread runs of rows; the partition
    decides only what work is skipped, never an answer.
    """
    sample = np.concatenate([source.read(a, b) for a, b in sample_runs(source.rows)])
    centred = metric_rows(sample, metric) - centre
    # Above SAMPLE_AXES_DIM the axes come from the sample: no dim × dim covariance to form.
    cov = moments.cov if source.dim <= kernel.SAMPLE_AXES_DIM else None
    with pools_at_one_thread():  # small products: waking BLAS threads costs more than it saves
        return partition_of(cov, centred[np.isfinite(centred).all(axis=1)], seed)
