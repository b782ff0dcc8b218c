"""The fake × real pass: ball memberships for precision, recall, density and
coverage, and the per-sample values, one tile at a time.

A tile's float32 distances decide every pair that lies clearly inside or
outside a ball (by more than the proven float32 error); the pairs in between
are decided in float64, so memberships equal a float64 brute force. Nearest
distances and realism scores are likewise taken in float64 over every pair
that float32 cannot rule out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distance import UNIT_ROUNDOFF32, Block, exact_pairs, sqdist32

#: Pairs closer than this many float32 error bounds are always re-checked for
#: realism (near-copies of real rows, whose ratio float32 cannot rank).
NEAR_COPY = 8.0


@dataclass
class CrossPartial:
    """What one tile (or a merge of tiles) says, per k.

    ``fake_counts[j, q]``: real balls (k = ks[q]) containing fake row j.
    ``real_covered[i, q]``: some fake row lies in real row i's ball.
    ``real_recalled[i, q]``: real row i lies in some fake row's ball.
    Per-sample fields are None unless asked for: each fake row's nearest real
    row (distance, index; lowest index on ties) and realism score; each real
    row's distance to its nearest fake row.
    """

    fake_counts: np.ndarray  # (fake rows, nk) int64
    real_covered: np.ndarray  # (real rows, nk) bool
    real_recalled: np.ndarray  # (real rows, nk) bool
    fake_nearest_dist: np.ndarray | None = None
    fake_nearest_real: np.ndarray | None = None
    fake_realism: np.ndarray | None = None
    real_nearest_dist: np.ndarray | None = None

    @property
    def has_samples(self) -> bool:
        return self.fake_nearest_dist is not None

    def merge_real_blocks(self, other: "CrossPartial") -> "CrossPartial":
        """Same fake rows, two disjoint runs of real rows (self's first)."""
        out = CrossPartial(
            self.fake_counts + other.fake_counts,
            np.concatenate([self.real_covered, other.real_covered]),
            np.concatenate([self.real_recalled, other.real_recalled]),
        )
        if self.has_samples:
            out.fake_nearest_dist, out.fake_nearest_real = _nearer(
                self.fake_nearest_dist, self.fake_nearest_real, other.fake_nearest_dist, other.fake_nearest_real
            )
            out.fake_realism = np.maximum(self.fake_realism, other.fake_realism)
            out.real_nearest_dist = np.concatenate([self.real_nearest_dist, other.real_nearest_dist])
        return out

    def merge_fake_blocks(self, other: "CrossPartial") -> "CrossPartial":
        """Two disjoint runs of fake rows (self's first) over the same real rows."""
        out = CrossPartial(
            np.concatenate([self.fake_counts, other.fake_counts]),
            self.real_covered | other.real_covered,
            self.real_recalled | other.real_recalled,
        )
        if self.has_samples:
            out.fake_nearest_dist = np.concatenate([self.fake_nearest_dist, other.fake_nearest_dist])
            out.fake_nearest_real = np.concatenate([self.fake_nearest_real, other.fake_nearest_real])
            out.fake_realism = np.concatenate([self.fake_realism, other.fake_realism])
            out.real_nearest_dist = np.minimum(self.real_nearest_dist, other.real_nearest_dist)
        return out


def _nearer(dist_a, idx_a, dist_b, idx_b):
    """Element-wise nearer of two (distance, index) candidates; lower index on ties."""
    take_b = (dist_b < dist_a) | ((dist_b == dist_a) & (idx_b < idx_a))
    return np.where(take_b, dist_b, dist_a), np.where(take_b, idx_b, idx_a)


def _pairs(mask: np.ndarray):
    """(row, column) of the True entries (flat search: much faster than 2-D nonzero)."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _upper32(values: np.ndarray) -> np.ndarray:
    """float32 values no smaller than the float64 ones (a safe candidate cut)."""
    return np.nextafter(values.astype(np.float32), np.float32(np.inf))


def _inside(d32, radii, eps, exact_of, inclusive):
    """Membership of candidate pairs in balls of the given radii, per k.

    ``d32``: float32 squared distances (as float64); ``radii``: (pairs, nk);
    ``eps``: per-pair float32 error bound; ``exact_of(pairs)``: float64 distances.
    """
    r2 = radii * radii
    d = d32[:, None]
    sure_in = d + eps[:, None] < r2
    unsure = ~sure_in & ~(d - eps[:, None] > r2)
    inside = sure_in
    pairs = np.flatnonzero(unsure.any(axis=1))
    if len(pairs):
        exact = exact_of(pairs)[:, None]
        decided = exact <= radii[pairs] if inclusive else exact < radii[pairs]
        inside[pairs] = np.where(unsure[pairs], decided, sure_in[pairs])
    return inside


def _flags(rows, inside, n):
    out = np.zeros((n, inside.shape[1]), bool)
    for q in range(inside.shape[1]):
        out[rows[inside[:, q]], q] = True
    return out


def block_pair(fake: Block, real: Block, fake_radii, real_radii, realism_radius, kappa, inclusive, panel_rows) -> CrossPartial:
    """One fake block × real block, panel by panel, merged like whole blocks."""
    real_panels = [(lo, p, p.right()) for lo, p in real.panels(panel_rows)]
    per_fake = []
    for lo_f, pf in fake.panels(panel_rows):
        parts = [
            tile(
                pf,
                pr,
                pr_right,
                fake_radii[lo_f : lo_f + pf.rows],
                real_radii[lo_r : lo_r + pr.rows],
                None if realism_radius is None else realism_radius[lo_r : lo_r + pr.rows],
                kappa,
                inclusive,
            )
            for lo_r, pr, pr_right in real_panels
        ]
        acc = parts[0]
        for part in parts[1:]:
            acc = acc.merge_real_blocks(part)
        per_fake.append(acc)
    acc = per_fake[0]
    for part in per_fake[1:]:
        acc = acc.merge_fake_blocks(part)
    return acc


def tile(fake: Block, real: Block, real_right, fake_radii, real_radii, realism_radius, kappa, inclusive) -> CrossPartial:
    """Memberships (and per-sample values) of one fake panel × real panel.

    ``fake_radii``/``real_radii``: (rows, nk) float64 radii of the tile's rows.
    ``realism_radius``: per real row, its radius if it takes part in realism
    scores (radius not above the median), else 0; None to skip per-sample values.
    """
    samples = realism_radius is not None
    dist = sqdist32(fake, real_right)
    # One error bound per row (per column) that covers every pair in the tile.
    eps_fake = kappa * (fake.sqnorm + real.sqnorm.max())
    eps_real = kappa * (real.sqnorm + fake.sqnorm.max())

    # Real balls (columns): precision, density, coverage; nearest fake per real row.
    widest = real_radii.max(axis=1)
    reach = widest * widest + eps_real
    if samples:
        near_cut_real = dist.min(axis=0) + 2 * eps_real
        reach = np.maximum(reach, near_cut_real)
    f_rows, r_rows = _pairs(dist < _upper32(reach)[None, :])
    d32 = dist[f_rows, r_rows].astype(np.float64)

    def exact_real_side(sel):
        return exact_pairs(fake.exact, real.exact, f_rows[sel], r_rows[sel])

    pair_eps = kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_rows])
    inside = _inside(d32, real_radii[r_rows], pair_eps, exact_real_side, inclusive)
    nk = inside.shape[1]
    out = CrossPartial(
        np.stack([np.bincount(f_rows[inside[:, q]], minlength=fake.rows) for q in range(nk)], axis=1).astype(np.int64),
        _flags(r_rows, inside, real.rows),
        None,
    )
    if samples:
        near = np.flatnonzero(d32 <= near_cut_real[r_rows])
        out.real_nearest_dist = np.full(real.rows, np.inf)
        np.minimum.at(out.real_nearest_dist, r_rows[near], exact_real_side(near))

    # Fake balls (rows): recall; nearest real per fake row; realism scores.
    widest = fake_radii.max(axis=1)
    reach = widest * widest + eps_fake
    if samples:
        row_min = dist.min(axis=1).astype(np.float64)
        near_cut_fake = row_min + 2 * eps_fake
        reach = np.maximum(reach, np.maximum(near_cut_fake, NEAR_COPY * eps_fake))
    f_rows, r_rows = _pairs(dist < _upper32(reach)[:, None])
    d32 = dist[f_rows, r_rows].astype(np.float64)

    def exact_fake_side(sel):
        return exact_pairs(fake.exact, real.exact, f_rows[sel], r_rows[sel])

    pair_eps = kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_rows])
    out.real_recalled = _flags(r_rows, _inside(d32, fake_radii[f_rows], pair_eps, exact_fake_side, inclusive), real.rows)
    if samples:
        near = np.flatnonzero(d32 <= near_cut_fake[f_rows])
        out.fake_nearest_dist, out.fake_nearest_real = _row_nearest(
            f_rows[near], r_rows[near] + real.start, exact_fake_side(near), fake.rows
        )
        close = np.flatnonzero(d32 <= NEAR_COPY * eps_fake[f_rows])
        out.fake_realism = _realism(dist, fake, real, realism_radius, eps_fake, row_min, f_rows[close], r_rows[close])
    return out


def _row_nearest(rows, cols, exact, n):
    """Per row, the smallest exact distance and its column (lowest on ties)."""
    best_dist = np.full(n, np.inf)
    best_col = np.full(n, -1, np.int64)
    order = np.lexsort((cols, exact, rows))
    rows, cols, exact = rows[order], cols[order], exact[order]
    first = np.ones(len(rows), bool)
    first[1:] = rows[1:] != rows[:-1]
    best_dist[rows[first]] = exact[first]
    best_col[rows[first]] = cols[first]
    return best_dist, best_col


def _realism(dist, fake: Block, real: Block, realism_radius, eps_fake, row_min, close_rows, close_cols):
    """Per fake row, max over eligible real rows of radius / distance, in float64.

    float32 ratios r²/d² rank the pairs; every pair whose ratio could, within
    the float32 error, reach the row's best is recomputed exactly. Pairs
    closer than NEAR_COPY error bounds (near-copies) are always recomputed.
    A zero radius counts as ratio 0; a positive radius at distance 0 as inf.
    """
    if not realism_radius.any():
        return np.zeros(fake.rows)
    r2 = (realism_radius * realism_radius).astype(np.float32)
    tiny = np.float32(np.finfo(np.float32).tiny)
    with np.errstate(over="ignore"):
        ratio = r2[None, :] / np.maximum(dist, tiny)
    best = ratio.argmax(axis=1)
    rows = np.arange(fake.rows)
    d_best = dist[rows, best].astype(np.float64) + eps_fake
    r2_best = realism_radius[best] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(d_best > 0, r2_best / d_best, 0.0)  # the row's true max r²/d² is at least this
    considered = np.maximum(row_min, NEAR_COPY * eps_fake)  # every other pair is at least this far
    cut = lower * (1 - eps_fake / considered) * (1 - 8 * UNIT_ROUNDOFF32)
    f_rows, r_cols = _pairs(ratio >= cut.astype(np.float32)[:, None])
    f_rows = np.concatenate([f_rows, close_rows])
    r_cols = np.concatenate([r_cols, close_cols])
    keep = realism_radius[r_cols] > 0
    f_rows, r_cols = f_rows[keep], r_cols[keep]
    exact = exact_pairs(fake.exact, real.exact, f_rows, r_cols)
    with np.errstate(divide="ignore"):
        score = realism_radius[r_cols] / exact
    out = np.zeros(fake.rows)
    np.maximum.at(out, f_rows, score)
    return out
