"""The float64 resolution of the rows whose k-NN radius the float32 tiles could not prove.

Each unproven row meets every block of its set in blocked float64 GEMMs
(:func:`resolve_block`, one task per block), which keep only the pairs near
the row's threshold; exact differences are then taken for those alone
(:func:`resolve_finish`).
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels.distance import exact_pairs
from largeemb.kernels.shortlist import Shortlist

#: Error bounds of the float64 GEMM formula are widened this much (they cost
#: only a few more exact differences near each threshold).
RESOLVE_SLACK = 4.0


def resolve_block(
    own: np.ndarray, block: np.ndarray, start: int, width: int, kappa64: float, panel_rows: int
) -> Shortlist:
    """Candidates of unproven rows among one block of the set, by float64 GEMM.

    ``own`` (u, dim) and ``block`` (b, dim) are float64 metric rows minus the
    same centre; ``start`` is the block's first global row. Each panel of the
    block is one float64 GEMM ``|x'|^2 + |y'|^2 - 2 x'.y'``, whose error is
    below ``RESOLVE_SLACK κ64 (|x'|^2 + |y'|^2)`` (:func:`largeemb.kernels.distance.sqdist_error_scale`
    with the float64 unit roundoff, which also covers the brute force's own
    rounding, at most 2γ(|x'|^2 + |y'|^2)); only pairs the bound cannot rule
    out are kept (:meth:`Shortlist.best`), for exact differences later.
    """
    own_sq = np.einsum("ij,ij->i", own, own)
    parts = [Shortlist.empty()]
    for lo in range(0, len(block), panel_rows):
        panel = block[lo : lo + panel_rows]
        sq = np.einsum("ij,ij->i", panel, panel)
        d2 = own @ panel.T
        d2 *= -2.0
        d2 += own_sq[:, None]
        d2 += sq[None, :]
        # One bound per row covering the whole panel (as the float32 tiles do).
        eps = RESOLVE_SLACK * kappa64 * (own_sq + sq.max())
        if panel.shape[0] > width:
            cut = np.partition(d2, width - 1, axis=1)[:, width - 1] + eps
        else:
            cut = np.full(len(own), np.inf)
        rows, cols = np.nonzero(d2 <= (cut + eps)[:, None])
        d = d2[rows, cols]
        parts.append(Shortlist.bounded(rows, cols + start + lo, d, eps[rows]).best(width))
    out = parts[0]
    for part in parts[1:]:
        out = out.merged(part, width)
    return out


def resolve_finish(pairs: Shortlist, own: np.ndarray, take_set, rows: int, ks: tuple[int, ...]) -> np.ndarray:
    """Exact radii (rows, len(ks)) of the unproven rows from their float64 shortlist.

    ``own`` holds their float64 metric rows, ``take_set(global rows)`` gives
    the set's. Every kept pair gets the brute force's own float64 distance;
    the self pair (distance 0) is among them, so index k of a row's sorted
    distances is its k-th nearest *other* row, copies counting at 0.
    """
    # The set rows are read once (a tie-heavy shortlist names each many times).
    wanted, where = np.unique(pairs.cols, return_inverse=True)
    gathered = take_set(wanted)
    exact = exact_pairs(lambda r: own[r], lambda c: gathered[c], pairs.rows, where.ravel())
    order = np.lexsort((exact, pairs.rows))
    r, d = pairs.rows[order], exact[order]
    first = np.searchsorted(r, np.arange(rows))
    out = np.empty((rows, len(ks)))
    for q, k in enumerate(ks):
        out[:, q] = d[first + k]
    return out
