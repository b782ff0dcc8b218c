"""The fake × real pass: ball memberships for precision, recall, density and
coverage, one tile at a time.

A tile's float32 distances decide every pair that lies clearly inside or
outside a ball (by more than the proven float32 error); the pairs in between
are decided in float64, so memberships equal a float64 brute force.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distance import Block, exact_pairs, sqdist32


@dataclass
class CrossPartial:
    """What one tile (or a merge of tiles) says, per k.

    ``fake_counts[j, q]``: real balls (k = ks[q]) containing fake row j.
    ``real_covered[i, q]``: some fake row lies in real row i's ball.
    ``real_recalled[i, q]``: real row i lies in some fake row's ball.
    """

    fake_counts: np.ndarray  # (fake rows, nk) int64
    real_covered: np.ndarray  # (real rows, nk) bool
    real_recalled: np.ndarray  # (real rows, nk) bool

    def merge_real_blocks(self, other: "CrossPartial") -> "CrossPartial":
        """Same fake block, two different real blocks: stack the real side."""
        return CrossPartial(
            self.fake_counts + other.fake_counts,
            np.concatenate([self.real_covered, other.real_covered]),
            np.concatenate([self.real_recalled, other.real_recalled]),
        )

    def merge_fake_blocks(self, other: "CrossPartial") -> "CrossPartial":
        """Two different fake blocks over the whole real set."""
        return CrossPartial(
            np.concatenate([self.fake_counts, other.fake_counts]),
            self.real_covered | other.real_covered,
            self.real_recalled | other.real_recalled,
        )


def _pairs(mask: np.ndarray):
    """(row, column) of the True entries (flat search: much faster than 2-D nonzero)."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _upper32(values: np.ndarray) -> np.ndarray:
    """float32 values no smaller than the float64 ones (a safe candidate cut)."""
    return np.nextafter(values.astype(np.float32), np.float32(np.inf))


def _inside(dist, radii, ball_rows, point_rows, ball: Block, point: Block, kappa, inclusive):
    """Membership of points in balls for candidate pairs, per k (rows × nk bool).

    ``dist`` holds float32 squared distances of the candidate pairs.
    """
    eps = kappa * (ball.sqnorm[ball_rows] + point.sqnorm[point_rows])
    r = radii[ball_rows]  # (pairs, nk) float64
    r2 = r * r
    d = dist.astype(np.float64)[:, None]
    sure_in = d + eps[:, None] < r2
    sure_out = d - eps[:, None] > r2
    unsure = ~(sure_in | sure_out)
    inside = sure_in
    pairs = np.flatnonzero(unsure.any(axis=1))
    if len(pairs):
        exact = exact_pairs(ball.exact, point.exact, ball_rows[pairs], point_rows[pairs])[:, None]
        decided = exact <= r[pairs] if inclusive else exact < r[pairs]
        inside[pairs] = np.where(unsure[pairs], decided, sure_in[pairs])
    return inside


def block_pair(fake: Block, real: Block, fake_radii, real_radii, kappa: float, inclusive: bool, panel_rows: int) -> CrossPartial:
    """Memberships contributed by one fake block × real block, panel by panel."""
    nk = real_radii.shape[1]
    fake_counts = np.zeros((fake.rows, nk), np.int64)
    real_covered = np.zeros((real.rows, nk), bool)
    real_recalled = np.zeros((real.rows, nk), bool)
    real_panels = [(lo, p, p.right()) for lo, p in real.panels(panel_rows)]
    for lo_f, pf in fake.panels(panel_rows):
        for lo_r, pr, pr_right in real_panels:
            part = tile(pf, pr, pr_right, fake_radii[lo_f : lo_f + pf.rows], real_radii[lo_r : lo_r + pr.rows], kappa, inclusive)
            fake_counts[lo_f : lo_f + pf.rows] += part.fake_counts
            real_covered[lo_r : lo_r + pr.rows] |= part.real_covered
            real_recalled[lo_r : lo_r + pr.rows] |= part.real_recalled
    return CrossPartial(fake_counts, real_covered, real_recalled)


def tile(fake: Block, real: Block, real_right, fake_radii, real_radii, kappa: float, inclusive: bool) -> CrossPartial:
    """Memberships contributed by one fake panel × real panel tile.

    ``fake_radii``/``real_radii``: (rows, nk) float64 radii of the tile's rows.
    """
    nk = real_radii.shape[1]
    dist = sqdist32(fake, real_right)

    # Real balls: which fake rows does each real row's ball contain?
    widest_real = real_radii.max(axis=1)
    reach = widest_real * widest_real + kappa * (real.sqnorm + fake.sqnorm.max())
    f_rows, r_rows = _pairs(dist < _upper32(reach)[None, :])
    inside = _inside(dist[f_rows, r_rows], real_radii, r_rows, f_rows, real, fake, kappa, inclusive)
    fake_counts = np.stack([np.bincount(f_rows[inside[:, q]], minlength=fake.rows) for q in range(nk)], axis=1)
    real_covered = np.zeros((real.rows, nk), bool)
    for q in range(nk):
        real_covered[r_rows[inside[:, q]], q] = True

    # Fake balls: which real rows does each fake row's ball contain?
    widest_fake = fake_radii.max(axis=1)
    reach = widest_fake * widest_fake + kappa * (fake.sqnorm + real.sqnorm.max())
    f_rows, r_rows = _pairs(dist < _upper32(reach)[:, None])
    inside = _inside(dist[f_rows, r_rows], fake_radii, f_rows, r_rows, fake, real, kappa, inclusive)
    real_recalled = np.zeros((real.rows, nk), bool)
    for q in range(nk):
        real_recalled[r_rows[inside[:, q]], q] = True
    return CrossPartial(fake_counts.astype(np.int64), real_covered, real_recalled)
