"""The settle pass: exact per-sample values of one block from the cross pass's shortlists.

Each fake row's nearest real row and distance and its realism score, and each
real row's nearest fake distance, in float64 over the pairs its shortlists
kept (:mod:`largeemb.kernels.nearest`): the values a brute force computes.
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels.distance import Block, copy_labels, exact_pairs
from largeemb.kernels.shortlist import Shortlist


def _exact_once(own: Block, take_other, rows, cols, counted: list | None = None) -> np.ndarray:
    """float64 distances |own[rows] - other[cols]|, one difference per (row, group of identical other rows).

    Shortlists name every copy of a tied row (duplicates tie for nearest and
    for realism); identical rows have identical differences, so the other
    rows are read once each, grouped (:func:`~largeemb.kernels.distance.copy_labels`), and
    each (row, group) is computed once. ``counted`` gets the number computed.
    """
    wanted, where = np.unique(cols, return_inverse=True)
    gathered = take_other(wanted)
    where = where.ravel()
    group = copy_labels(gathered)[where] if len(wanted) else where
    _, first, back = np.unique(np.stack([rows, group]), axis=1, return_index=True, return_inverse=True)
    if counted is not None:
        counted.append(len(first))
    return exact_pairs(own.exact, lambda c: gathered[c], rows[first], where[first])[back.ravel()]


def settle_fake(fake: Block, take_real, nearest: Shortlist, realism: Shortlist, realism_radius):
    """Exact per-sample values of a fake block from its shortlists.

    ``take_real(global rows)`` gives float64 metric rows of the real set.
    Returns (nearest distance, nearest real index (lowest on ties), realism score,
    pairs computed in float64).
    """
    rows = nearest.rows - fake.start
    computed = []
    exact = _exact_once(fake, take_real, rows, nearest.cols, computed)
    order = np.lexsort((nearest.cols, exact, rows))
    first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
    nearest_dist = np.full(fake.rows, np.inf)
    nearest_real = np.full(fake.rows, -1, np.int64)
    nearest_dist[rows[first]] = exact[first]
    nearest_real[rows[first]] = nearest.cols[first]

    rows = realism.rows - fake.start
    exact = _exact_once(fake, take_real, rows, realism.cols, computed)
    with np.errstate(divide="ignore"):
        score = realism_radius[realism.cols] / exact
    realism_score = np.zeros(fake.rows)
    np.maximum.at(realism_score, rows, score)
    return nearest_dist, nearest_real, realism_score, sum(computed)


def settle_real(real: Block, take_fake, nearest: Shortlist) -> tuple[np.ndarray, int]:
    """Exact distance from each real row of a block to its nearest fake row, and the pairs computed in float64."""
    rows = nearest.rows - real.start
    out = np.full(real.rows, np.inf)
    np.minimum.at(out, rows, _exact_once(real, take_fake, rows, nearest.cols, counted := []))
    return out, counted[0]
