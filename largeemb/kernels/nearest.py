"""Per-sample candidates of one cross tile: each row's nearest rows of the other set
and each fake row's best realism ratios, as shortlists for the settle pass.

The float32 tile ranks the pairs; every pair that could, within the proven
float32 error, be a row's nearest or give its best ratio is kept
(:class:`~largeemb.kernels.shortlist.Shortlist`), and the settle pass
(:mod:`largeemb.kernels.settle`) takes exact float64 values of those alone.
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels.distance import Block, sqdist32
from largeemb.kernels.roundoff import UNIT_ROUNDOFF32, UNIT_ROUNDOFF64, up32
from largeemb.kernels.shortlist import Shortlist

#: Pairs closer than this many float32 error bounds are always re-checked for
#: realism (near-copies of real rows, whose ratio float32 cannot rank).
NEAR_COPY = 8.0
#: Evenly spaced rows of the other set that :func:`pilot` meets each row with.
PILOT_ROWS = 64


def pairs(mask: np.ndarray):
    """(row, column) of the True entries (flat search: much faster than 2-D nonzero)."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def pilot(fake: Block, real: Block, real_right, realism_radius):
    """What the per-sample values will need, guessed before any tile: (fake rows' squared nearest distances,
    their squared best realism ratios, real rows' squared nearest distances), each over PILOT_ROWS
    evenly spaced rows of the other set, in float32: values the full search can only improve on.

    :func:`largeemb.kernels.cross.block_pair` weighs grouped tiles against plain panels with them;
    nothing the results rest on.
    """
    some_real = np.linspace(0, real.rows - 1, min(PILOT_ROWS, real.rows)).astype(np.int64)
    some_fake = np.linspace(0, fake.rows - 1, min(PILOT_ROWS, fake.rows)).astype(np.int64)
    to_real = sqdist32(fake, real_right[some_real])
    to_fake = fake.left[some_fake] @ real_right.T
    top = (realism_radius[some_real] ** 2).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(top > 0, top / to_real, 0).max(axis=1)
    return to_real.min(axis=1), ratio, to_fake.min(axis=0)


def nearest_tile(fake: Block, real: Block, real_right, kappa) -> Shortlist:
    """Each real row's candidates for its nearest fake row in one tile, and nothing else.

    For fake rows that can matter to no membership and to no value of their
    own; the cut is that of :func:`largeemb.kernels.cross.tile`'s real side.
    """
    dist = sqdist32(fake, real_right)
    near_cut = dist.min(axis=0) + 2 * kappa * (real.sqnorm + fake.sqnorm.max())
    f_rows, r_rows = pairs(dist < up32(near_cut)[None, :])
    d32 = dist[f_rows, r_rows].astype(np.float64)
    near = np.flatnonzero(d32 <= near_cut[r_rows])
    f_rows, r_rows = f_rows[near], r_rows[near]
    eps = kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_rows])
    return Shortlist.bounded(r_rows + real.start, f_rows + fake.start, d32[near], eps).best(1)


def nearest_exact(dist, axis: int, own_start: int, other_start: int) -> Shortlist:
    """Each row's (axis 1) or column's (axis 0) nearest with exact tiles: its least tile value.

    However many tie there, one pair is enough: argmin takes the first, the
    lowest index (a tile's rows and columns ascend, :func:`largeemb.kernels.tiles.taken`),
    which is the tie :func:`largeemb.kernels.settle.settle_fake` picks; a real row's nearest distance
    does not depend on which. The shortlist's bounds are the exact value.
    """
    other = dist.argmin(axis=axis)
    own = np.arange(len(other))
    d = (dist[other, own] if axis == 0 else dist[own, other]).astype(np.float64)
    return Shortlist(own + own_start, other + other_start, d, d)


def realism_shortlist(
    dist, fake: Block, real: Block, realism_radius, eps_fake, row_min, close_rows, close_cols, kappa
) -> Shortlist:
    """Shortlist of pairs that can give a fake row its realism score.

    The score is the max over eligible real rows of radius / distance.
    float32 ratios r²/d² rank the pairs; every pair whose ratio could, within
    the float32 error, reach the row's best is kept. Pairs closer than
    NEAR_COPY error bounds (near-copies) are always kept.
    """
    if not realism_radius.any():
        return Shortlist.joined([])
    r2 = (realism_radius * realism_radius).astype(np.float32)
    tiny = np.float32(np.finfo(np.float32).tiny)
    with np.errstate(over="ignore"):
        ratio = r2[None, :] / np.maximum(dist, tiny)
    best = ratio.argmax(axis=1)
    rows = np.arange(fake.rows)
    d_best = dist[rows, best].astype(np.float64) + eps_fake
    r2_best = realism_radius[best] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        # The row's true max r²/d² is at least this; a copy (d = 0 with eps 0: exact
        # tiles) of an eligible row scores inf, which only other copies reach (kept below).
        lower = np.where(d_best > 0, r2_best / d_best, np.where(r2_best > 0, np.inf, 0.0))
    considered = np.maximum(row_min, NEAR_COPY * eps_fake)  # every other pair is at least this far
    slack = np.divide(eps_fake, considered, out=np.zeros_like(considered), where=considered > 0)
    cut = lower * (1 - slack) * (1 - 8 * UNIT_ROUNDOFF32)
    f_rows, r_cols = pairs(ratio >= cut.astype(np.float32)[:, None])
    f_rows = np.concatenate([f_rows, close_rows])
    r_cols = np.concatenate([r_cols, close_cols])
    keep = realism_radius[r_cols] > 0
    f_rows, r_cols = f_rows[keep], r_cols[keep]
    d32 = dist[f_rows, r_cols].astype(np.float64)
    eps = kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_cols])
    r2 = realism_radius[r_cols] ** 2
    with np.errstate(divide="ignore"):
        # Widened by float64 roundoffs: with eps 0 (exact tiles) tied ratios must all stay.
        lo = r2 / (d32 + eps) * (1 - 8 * UNIT_ROUNDOFF64)
        hi = np.where(d32 > eps, r2 / (d32 - eps) * (1 + 8 * UNIT_ROUNDOFF64), np.inf)
    return Shortlist(f_rows + fake.start, r_cols + real.start, lo, hi).for_max()
