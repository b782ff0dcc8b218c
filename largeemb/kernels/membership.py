"""Exact ball memberships of candidate pairs: a pair's float32 squared distance decides where its proven
error bound allows, its float64 distance where it does not (the brute force's own comparison, ties included).
Used by the cross pass for the radii (:mod:`largeemb.kernels.cross`) and the part radii
(:mod:`largeemb.kernels.cross_splits`).
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels.distance import Block, exact_pairs
from largeemb.kernels.roundoff import UNIT_ROUNDOFF64


def inside(d32, radii, eps, exact_of, inclusive, rows=None):
    """Membership of candidate pairs in balls of the given radii, per k.

    ``d32``: float32 squared distances (as float64); ``radii``: (pairs, nk),
    or (rows, nk) with ``rows`` giving each pair's row (its margins are then
    applied once a row, not once a pair: the part radii's 64 columns);
    ``eps``: per-pair float32 error bound; ``exact_of(pairs)``: float64 distances.
    r² is itself rounded (r is the rounded √ of a square): pairs within 4
    float64 roundoffs of it are decided by ``exact_of`` too, which matters
    when eps is 0 (exact tiles: a pair tied with the radius must compare as
    the brute force compares r with r, never as D with fl(r)²).
    """
    r2 = radii * radii
    low, high = r2 * (1 - 4 * UNIT_ROUNDOFF64), r2 * (1 + 4 * UNIT_ROUNDOFF64)
    if rows is not None:
        low, high = low[rows], high[rows]
    sure_in = (d32 + eps)[:, None] < low
    unsure = ~sure_in & ~((d32 - eps)[:, None] > high)
    out = sure_in
    pairs = np.flatnonzero(unsure.any(axis=1))
    if len(pairs):
        exact = exact_of(pairs)[:, None]
        mine = radii[pairs] if rows is None else radii[rows[pairs]]
        # ``inclusive``: one bool, or one per column (the k-NN family's balls each keep their authors' convention).
        decided = np.where(inclusive, exact <= mine, exact < mine)
        out[pairs] = np.where(unsure[pairs], decided, sure_in[pairs])
    return out


def exact_of(fake: Block, real: Block, f_rows, r_rows, d32, exact_tiles: bool, recomputed: list):
    """float64 distances of chosen candidate pairs (indices into f_rows/r_rows/d32).

    With exact tiles (kappa 0, :meth:`largeemb.kernels.moments.Lattice.exact`)
    √ of the tile value *is* the brute force's distance, so no row is read;
    else the pairs' float64 rows are subtracted (each pair once, whoever asks:
    memberships, part radii), and their count recorded.
    """
    known = np.full(len(d32), np.nan)

    def of(sel):
        if exact_tiles:
            return np.sqrt(d32[sel])
        new = np.unique(sel[np.isnan(known[sel])])
        if len(new):
            recomputed.append(len(new))
            known[new] = exact_pairs(fake.exact, real.exact, f_rows[new], r_rows[new])
        return known[sel]

    return of
