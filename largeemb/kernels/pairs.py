"""Every-pair work of the kernel companions, one tile at a time, in float64:
Gaussian kernel sums (KAD, RKE, CMMD), counts and windows of squared distances (the
exact median pairwise distance, by selection), and the largest |cosine| of
each row against a set (MiFID's memorisation penalty).

Squared distances come from a float64 GEMM of centred rows,
‖a‖² + ‖b‖² − 2a·b, clipped at 0. The selection only uses them to narrow a
window: the order statistic itself is picked among distances recomputed from
the differences of the stored rows (:func:`window`), so it does not depend on
how the pairs were tiled.
"""

from __future__ import annotations

import numpy as np

#: The float64 unit roundoff.
_U64 = 2.0**-53
#: Pairs whose rows :func:`window` gathers at once.
_GATHER = 4096


def _sq_norms(rows: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", rows, rows)


def sq_distances(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """‖a_i − b_j‖² from one float64 GEMM (clipped at 0: cancellation can leave tiny negatives)."""
    sq = a @ b.T
    sq *= -2.0
    sq += a_sq[:, None]
    sq += b_sq[None, :]
    return np.maximum(sq, 0.0, out=sq)


def _norms(a: np.ndarray, b: np.ndarray, same: bool) -> tuple[np.ndarray, np.ndarray]:
    a_sq = _sq_norms(a)
    return a_sq, (a_sq if same else _sq_norms(b))


def _panels(a: np.ndarray, b: np.ndarray, panel_rows: int, same: bool, norms=None):
    """(a offset, b offset, squared distances, weight) of each panel pair; ``same`` (a is b): the upper
    panels only, weight 2 off the diagonal panels, whose own diagonal is exactly 0. ``norms``: the rows'
    squared norms (:func:`_norms`) when the caller has them."""
    a_sq, b_sq = _norms(a, b, same) if norms is None else norms
    for lo in range(0, len(a), panel_rows):
        for bo in range(lo if same else 0, len(b), panel_rows):
            sq = sq_distances(a[lo : lo + panel_rows], b[bo : bo + panel_rows], a_sq[lo : lo + panel_rows],
                              b_sq[bo : bo + panel_rows])
            if same and bo == lo:
                np.fill_diagonal(sq, 0.0)
            yield lo, bo, sq, (1.0 if not same or bo == lo else 2.0)


def gaussian_sum(a: np.ndarray, b: np.ndarray, gamma: float, panel_rows: int, same: bool) -> float:
    """Σ over every ordered pair (a_i, b_j) of exp(−γ‖a_i − b_j‖²); ``same`` (a is b): its diagonal included,
    each term exactly 1."""
    total = 0.0
    for _, _, sq, weight in _panels(a, b, panel_rows, same):
        sq *= -gamma
        total += weight * float(np.exp(sq, out=sq).sum())
    return total


# -- selection: the exact order statistic of the pairwise distances ------------


def _upper(sq: np.ndarray, lo: int, bo: int, same: bool) -> np.ndarray:
    """The pairs i < j of a diagonal panel (``same`` and lo == bo), else all of them."""
    if same and lo == bo:
        return sq[np.triu_indices(len(sq), 1, sq.shape[1])]
    return sq.ravel()


def histogram(a: np.ndarray, b: np.ndarray, same: bool, lo: float, width: float, bins: int, panel_rows: int):
    """(pairs below lo, counts of pairs in [lo + t·width, lo + (t+1)·width) for t < bins), of squared distances.

    Unordered pairs: ``same`` (a is b) counts each i < j once.
    """
    below, counts = 0, np.zeros(bins, np.int64)
    for lo_a, lo_b, sq, _ in _panels(a, b, panel_rows, same):
        values = _upper(sq, lo_a, lo_b, same)
        below += int(np.count_nonzero(values < lo))
        index = np.floor((values - lo) / width)
        index = index[(index >= 0) & (index < bins)].astype(np.int64)
        counts += np.bincount(index, minlength=bins)
    return below, counts


def direct_sq(a_raw: np.ndarray, b_raw: np.ndarray) -> np.ndarray:
    """Σ (a_i − b_i)² of paired rows, from their differences in float64 (exact differences of float32 rows)."""
    diff = a_raw - b_raw
    return np.einsum("ij,ij->i", diff, diff)


def window(a, b, a_raw, b_raw, same: bool, lo: float, hi: float, panel_rows: int):
    """(pairs certainly below lo, the distinct squared distances of the pairs that may lie in [lo, hi], their
    counts); those distances recomputed from the differences of the stored rows (``a_raw``, ``b_raw``).

    A GEMM value is within ``slack`` of the recomputed one: (dim + 4)·u·(‖a‖² + ‖b‖²) bounds both
    roundings (the GEMM's and the differences' sum), and 16 times that is kept as margin.
    """
    dim = a.shape[1]
    below, found = 0, []
    a_sq, b_sq = _norms(a, b, same)
    for lo_a, lo_b, sq, _ in _panels(a, b, panel_rows, same, (a_sq, b_sq)):
        pa, pb = a_sq[lo_a : lo_a + panel_rows], b_sq[lo_b : lo_b + panel_rows]
        slack = 16.0 * (dim + 4) * _U64 * (float(pa.max()) + float(pb.max()))
        keep = np.triu(np.ones(sq.shape, bool), 1) if same and lo_a == lo_b else True  # pairs i < j once
        below += int(np.count_nonzero((sq < lo - slack) & keep))
        i, j = np.nonzero((sq >= lo - slack) & (sq <= hi + slack) & keep)
        for c in range(0, len(i), _GATHER):  # gathered rows in chunks: a window may hold many pairs
            found.append(direct_sq(a_raw[lo_a + i[c : c + _GATHER]], b_raw[lo_b + j[c : c + _GATHER]]))
    values, counts = np.unique(np.concatenate(found) if found else np.zeros(0), return_counts=True)
    return below, values, counts


def merged_window(a, b):
    """The windows of two tiles as one: (certainly below, distinct values, counts)."""
    below = a[0] + b[0]
    values = np.concatenate([a[1], b[1]])
    counts = np.concatenate([a[2], b[2]])
    distinct, where = np.unique(values, return_inverse=True)
    return below, distinct, np.bincount(where, weights=counts, minlength=len(distinct)).astype(np.int64)


def pick(below: int, values: np.ndarray, counts: np.ndarray, rank: int, lo: float, hi: float):
    """The squared distance of 0-based ``rank`` among all pairs, or None when the window cannot prove it.

    Every pair outside the window lies below lo (``below`` of them) or above hi,
    so the value at ``rank − below`` among the window's is the answer when it
    lies in [lo, hi].
    """
    at = rank - below
    if at < 0 or at >= counts.sum():
        return None
    value = float(values[np.searchsorted(np.cumsum(counts), at, side="right")])
    return value if lo <= value <= hi else None


# -- MiFID: each row's largest |cosine| against a set --------------------------


def unit_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 rows scaled to unit length, which rows are nonzero); zero rows stay zero."""
    norms = np.sqrt(_sq_norms(rows))
    nonzero = norms > 0
    out = np.zeros_like(rows)
    out[nonzero] = rows[nonzero] / norms[nonzero, None]
    return out, nonzero


def max_abs_cosine(a_unit: np.ndarray, b_unit: np.ndarray, panel_rows: int) -> np.ndarray:
    """Per row of a: max over rows of b of |a·b| (unit rows, float64)."""
    best = np.full(len(a_unit), -np.inf)
    for bo in range(0, len(b_unit), panel_rows):
        dots = np.abs(a_unit @ b_unit[bo : bo + panel_rows].T)
        np.maximum(best, dots.max(axis=1), out=best)
    return best
