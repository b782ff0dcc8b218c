"""What a task reads: its blocks, ready for the kernels, and rows of a set by index.

Every distance pass's tasks receive a :class:`~largeemb.io.store.Source` and
row ranges, and read their own rows through these.
"""

from __future__ import annotations

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels.distance import Block, metric_rows, prepare_block
from largeemb.kernels.plan import RowBlock
from largeemb.passes.context import PassContext


def load_block(source: Source, block: RowBlock, ctx: PassContext) -> Block:
    """A block ready for the kernels: its rows read, centred and laid out for the GEMM."""
    return prepare_block(source.read(block.start, block.stop), block.start, ctx.centre, ctx.metric)


def taker(source: Source, metric: str, as_rows=metric_rows):
    """Gather metric rows by global index (any order, repeats allowed): float64 (:func:`metric_rows`),
    or ``as_rows`` of what was read (:func:`~largeemb.kernels.distance.exact_rows`)."""

    def take(rows):
        wanted, where = np.unique(rows, return_inverse=True)
        return as_rows(source.read_rows(wanted), metric)[where]

    return take
