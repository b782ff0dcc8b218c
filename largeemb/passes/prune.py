"""Pruning setup: the groups that let tiles skip work (see :mod:`largeemb.kernels.prune`)."""

from __future__ import annotations

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels.distance import metric_rows
from largeemb.kernels.moments import Moments
from largeemb.kernels.prune import Partition, partition_of

#: The sample the groups are fitted on: this many evenly spread runs of this many rows.
SAMPLE_RUNS, RUN_ROWS = 16, 128


def partition_stage(source: Source, moments: Moments, centre: np.ndarray, metric: str, seed: int) -> Partition:
    """Groups for pruning, from the real set's moments and a sample of its rows.

    The sample is read in a few evenly spread runs of rows; the partition
    decides only what work is skipped, never an answer.
    """
    starts = np.unique(np.linspace(0, max(source.rows - RUN_ROWS, 0), SAMPLE_RUNS).astype(np.int64))
    sample = np.concatenate([source.read(int(a), min(int(a) + RUN_ROWS, source.rows)) for a in starts])
    centred = metric_rows(sample, metric) - centre
    return partition_of(moments.cov, centred[np.isfinite(centred).all(axis=1)], seed)
