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

from largeemb.kernels.distance import UNIT_ROUNDOFF32, UNIT_ROUNDOFF64, Block, copy_labels, exact_pairs, sqdist32
from largeemb.kernels.screen import ScreenCounts, below, screened_tile
from largeemb.kernels.tiles import cut_pair, parted, taken, taken_rows, tile_rows

#: Pairs closer than this many float32 error bounds are always re-checked for
#: realism (near-copies of real rows, whose ratio float32 cannot rank).
NEAR_COPY = 8.0


@dataclass
class Shortlist:
    """Candidate pairs for a per-row extreme (nearest row, best ratio).

    ``rows`` index the side the value belongs to, ``cols`` the other side
    (both global). ``lo``/``hi`` bound each pair's true value (a squared
    distance or a squared ratio) from the float32 tile and its error bound.
    """

    rows: np.ndarray
    cols: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def __add__(self, other: "Shortlist") -> "Shortlist":
        return Shortlist(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in ("rows", "cols", "lo", "hi")))

    @classmethod
    def joined(cls, parts: list["Shortlist"]) -> "Shortlist":
        empty = [np.empty(0, t) for t in (np.int64, np.int64, np.float64, np.float64)]
        fields = ("rows", "cols", "lo", "hi")
        return cls(*(np.concatenate([e] + [getattr(p, f) for p in parts]) for e, f in zip(empty, fields)))

    def mapped(self, rows: np.ndarray, cols: np.ndarray) -> "Shortlist":
        """The same pairs with rows and columns renamed (e.g. gathered rows to global ids)."""
        return Shortlist(rows[self.rows], cols[self.cols], self.lo, self.hi)

    def _take(self, keep) -> "Shortlist":
        return Shortlist(self.rows[keep], self.cols[keep], self.lo[keep], self.hi[keep])

    def for_min(self) -> "Shortlist":
        """Drop pairs that cannot be a row's minimum."""
        rows, where = np.unique(self.rows, return_inverse=True)
        best = np.full(len(rows), np.inf)
        np.minimum.at(best, where, self.hi)
        return self._take(self.lo <= best[where])

    def for_max(self) -> "Shortlist":
        """Drop pairs that cannot be a row's maximum."""
        rows, where = np.unique(self.rows, return_inverse=True)
        best = np.full(len(rows), -np.inf)
        np.maximum.at(best, where, self.lo)
        return self._take(self.hi >= best[where])

    def select(self, lo_row: int, hi_row: int) -> "Shortlist":
        return self._take((self.rows >= lo_row) & (self.rows < hi_row))


@dataclass
class ProbPartial:
    """P-precision / P-recall sums (Park & Kim 2023): per row, Σ log(d/R) over the
    other set's rows within the common radius R, and whether one lies at d = 0.

    ``fake_log[j]`` runs over real rows (R = the real radius), ``real_log[i]``
    over fake rows (R = the fake radius); Π(d/R) = exp(log sum), 0 with a zero.
    """

    fake_log: np.ndarray
    fake_zero: np.ndarray
    real_log: np.ndarray
    real_zero: np.ndarray

    @classmethod
    def empty(cls, fake_rows: int, real_rows: int) -> "ProbPartial":
        return cls(np.zeros(fake_rows), np.zeros(fake_rows, bool), np.zeros(real_rows), np.zeros(real_rows, bool))

    def add(self, tile: "ProbPartial", fake_rows, real_rows) -> None:
        self.fake_log[fake_rows] += tile.fake_log
        self.fake_zero[fake_rows] |= tile.fake_zero
        self.real_log[real_rows] += tile.real_log
        self.real_zero[real_rows] |= tile.real_zero

    def merge_real_blocks(self, other: "ProbPartial") -> "ProbPartial":
        return ProbPartial(
            self.fake_log + other.fake_log, self.fake_zero | other.fake_zero,
            np.concatenate([self.real_log, other.real_log]), np.concatenate([self.real_zero, other.real_zero]),
        )

    def merge_fake_blocks(self, other: "ProbPartial") -> "ProbPartial":
        return ProbPartial(
            np.concatenate([self.fake_log, other.fake_log]), np.concatenate([self.fake_zero, other.fake_zero]),
            self.real_log + other.real_log, self.real_zero | other.real_zero,
        )


@dataclass
class CrossPartial:
    """What one tile (or a merge of tiles) says, per k.

    ``fake_counts[j, q]``: real balls (k = ks[q]) containing fake row j.
    ``real_covered[i, q]``: some fake row lies in real row i's ball.
    ``real_recalled[i, q]``: real row i lies in some fake row's ball.
    Shortlists (None unless per-sample values are asked for) hold the pairs
    that can still be each fake row's nearest real row or best realism
    ratio, and each real row's nearest fake row; they are settled in
    float64 after the pass (:func:`settle_fake`, :func:`settle_real`).
    ``float64_pairs``: pairs whose distance was recomputed from float64 rows.
    """

    fake_counts: np.ndarray  # (fake rows, nk) int64
    real_covered: np.ndarray  # (real rows, nk) bool
    real_recalled: np.ndarray  # (real rows, nk) bool
    fake_nearest: Shortlist | None = None
    fake_realism: Shortlist | None = None
    real_nearest: Shortlist | None = None
    prob: ProbPartial | None = None
    float64_pairs: int = 0
    screen: ScreenCounts | None = None  # screened tile entries (set by the pass's tasks)

    def _merged_lists(self, other, out, how: str):
        out.float64_pairs = self.float64_pairs + other.float64_pairs
        if self.screen is not None and other.screen is not None:
            out.screen = self.screen + other.screen
        if self.prob is not None:
            out.prob = getattr(self.prob, how)(other.prob)
        if self.fake_nearest is not None:
            out.fake_nearest = (self.fake_nearest + other.fake_nearest).for_min()
            out.fake_realism = (self.fake_realism + other.fake_realism).for_max()
            out.real_nearest = (self.real_nearest + other.real_nearest).for_min()
        return out

    def add(self, tile: "CrossPartial", fake_rows: np.ndarray, real_rows: np.ndarray):
        """Fold in the memberships of a tile over these rows of the block pair."""
        self.fake_counts[fake_rows] += tile.fake_counts
        self.real_covered[real_rows] |= tile.real_covered
        self.real_recalled[real_rows] |= tile.real_recalled
        self.float64_pairs += tile.float64_pairs
        if self.prob is not None:
            self.prob.add(tile.prob, fake_rows, real_rows)

    def merge_real_blocks(self, other: "CrossPartial") -> "CrossPartial":
        """Same fake rows, two disjoint runs of real rows (self's first)."""
        return self._merged_lists(
            other,
            CrossPartial(
                self.fake_counts + other.fake_counts,
                np.concatenate([self.real_covered, other.real_covered]),
                np.concatenate([self.real_recalled, other.real_recalled]),
            ),
            "merge_real_blocks",
        )

    def merge_fake_blocks(self, other: "CrossPartial") -> "CrossPartial":
        """Two disjoint runs of fake rows (self's first) over the same real rows."""
        return self._merged_lists(
            other,
            CrossPartial(
                np.concatenate([self.fake_counts, other.fake_counts]),
                self.real_covered | other.real_covered,
                self.real_recalled | other.real_recalled,
            ),
            "merge_fake_blocks",
        )


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
    r² is itself rounded (r is the rounded √ of a square): pairs within 4
    float64 roundoffs of it are decided by ``exact_of`` too, which matters
    when eps is 0 (exact tiles: a pair tied with the radius must compare as
    the brute force compares r with r, never as D with fl(r)²).
    """
    r2 = radii * radii
    d = d32[:, None]
    sure_in = d + eps[:, None] < r2 * (1 - 4 * UNIT_ROUNDOFF64)
    unsure = ~sure_in & ~(d - eps[:, None] > r2 * (1 + 4 * UNIT_ROUNDOFF64))
    inside = sure_in
    pairs = np.flatnonzero(unsure.any(axis=1))
    if len(pairs):
        exact = exact_of(pairs)[:, None]
        decided = exact <= radii[pairs] if inclusive else exact < radii[pairs]
        inside[pairs] = np.where(unsure[pairs], decided, sure_in[pairs])
    return inside


def _log_ratios(d32, radius, eps, exact_of, owners, n):
    """Σ log(d/R) per owner row over candidate pairs with d < R, and which owners meet a pair at d = 0.

    Pairs whose float32 value cannot be told from 0 or from R² within their
    error bound get float64 distances; elsewhere log(d/R) is taken from the
    float32 value (relative error of d under eps/d², a few 1e-7 here).
    """
    r2 = radius * radius
    unsure = (d32 <= NEAR_COPY * eps) | (np.abs(d32 - r2) <= eps)
    dist = np.sqrt(np.maximum(d32, 0.0))
    picked = np.flatnonzero(unsure)
    if len(picked):
        dist[picked] = exact_of(picked)
    inside = dist < radius
    zero = inside & (dist == 0)
    logs = np.log(dist[inside & ~zero] / radius)
    total = np.bincount(owners[inside & ~zero], weights=logs, minlength=n)
    met_zero = np.zeros(n, bool)
    met_zero[owners[zero]] = True
    return total, met_zero


def _flags(rows, inside, n):
    out = np.zeros((n, inside.shape[1]), bool)
    for q in range(inside.shape[1]):
        out[rows[inside[:, q]], q] = True
    return out


def block_pair(
    fake: Block, real: Block, fake_radii, real_radii, realism_radius, kappa, inclusive, panel_rows, partition=None, prob_radii=None
) -> CrossPartial:
    """One fake block × real block, tile by tile (see :func:`largeemb.kernels.tiles.cut_pair`).

    A row is left out of a fake group's tile when its distance bound to the
    other side exceeds every radius of the pairs' rows (no membership can
    change) and, for per-sample values, every nearest distance already found
    for them, and no realism ratio it could give reaches one already found.
    The pairs that memberships need run first, so these near pairs set those
    values before the rest are considered. Left-out pairs are strictly
    farther than what they are compared with, so ties and results are as in
    the full tile. Fake rows that can matter only as a real row's nearest
    fake row (e.g. to real rows in a mode the fake set lacks) go through the
    lighter :func:`nearest_tile`. ``prob_radii`` (the common real and fake
    radii of P-precision and P-recall, or None) widens every row's reach to them.
    """
    reach_f, reach_r = fake_radii.max(axis=1), real_radii.max(axis=1)
    if prob_radii is not None:
        reach_r, reach_f = np.maximum(reach_r, prob_radii[0]), np.maximum(reach_f, prob_radii[1])

    def in_reach(cf, cr, far_f, far_r):
        return (
            far_f <= np.maximum(reach_f[:, None], cr.maxima(reach_r)[None, :]),
            far_r <= np.maximum(reach_r[:, None], cf.maxima(reach_f)[None, :]),
        )

    pairing, tiles = cut_pair(fake, real, panel_rows, partition, in_reach)
    nk = fake_radii.shape[1]
    out = CrossPartial(np.zeros((fake.rows, nk), np.int64), np.zeros((real.rows, nk), bool), np.zeros((real.rows, nk), bool))
    if prob_radii is not None:
        out.prob = ProbPartial.empty(fake.rows, real.rows)
    real_right = real.right()
    samples = realism_radius is not None
    lists = {"fake_nearest": [], "fake_realism": [], "real_nearest": []}
    fake_ids, real_ids = np.arange(fake.rows) + fake.start, np.arange(real.rows) + real.start
    if samples:
        fake_near = np.full(fake.rows, np.inf)  # upper bounds of squared nearest distances so far
        real_near = np.full(real.rows, np.inf)
        fake_ratio = np.zeros(fake.rows)  # lower bounds of squared best realism ratios so far

    def run(part, rows_f, rows_r):
        res = tile(
            part, taken(real, rows_r), taken_rows(real_right, rows_r), fake_radii[rows_f], real_radii[rows_r],
            realism_radius[rows_r] if samples else None, kappa, inclusive, prob_radii,
        )
        out.add(res, rows_f, rows_r)
        if samples:
            lists["fake_nearest"].append(res.fake_nearest.mapped(fake_ids[rows_f], real_ids[rows_r]))
            lists["fake_realism"].append(res.fake_realism.mapped(fake_ids[rows_f], real_ids[rows_r]))
            lists["real_nearest"].append(res.real_nearest.mapped(real_ids[rows_r], fake_ids[rows_f]))
            np.minimum.at(fake_near, rows_f[res.fake_nearest.rows], res.fake_nearest.hi)
            np.minimum.at(real_near, rows_r[res.real_nearest.rows], res.real_nearest.hi)
            np.maximum.at(fake_ratio, rows_f[res.fake_realism.rows], res.fake_realism.lo)

    def full(rows_f, real_rows):
        if len(rows_f) and len(real_rows):
            part = taken(fake, rows_f)
            for rows_r in pairing.pieces(real_rows):
                run(part, rows_f, rows_r)

    # First the pairs that memberships need (cut_pair's tiles): they are the
    # near ones, and set nearest distances and ratios for most rows. Then,
    # group by group, the pairs those values still leave open, each pair once.
    done = [(np.empty(0, np.int64), []) for _ in pairing.a.rows]
    for i, part, rows_f, rows_r in parted(fake, tiles):
        run(part, rows_f, rows_r)
        done[i] = (rows_f, done[i][1] + [rows_r])
    if not samples:
        return out
    cf, cr, label_r = pairing.a, pairing.b, pairing.b.labels()
    far_f, far_r = pairing.far_a**2, pairing.far_b**2  # squared distance bounds, row to part
    ratio2 = realism_radius**2
    ratio_top = cr.maxima(ratio2)
    done = [(done_f, np.concatenate(pieces) if pieces else np.empty(0, np.int64)) for done_f, pieces in done]
    for i, (done_f, done_r) in enumerate(done):
        rows_f = cf.rows[i]
        ff, fr = far_f[rows_f], far_r[:, i]
        # A ratio bound is inf for a copy of an eligible real row (exact tiles): 0 * inf
        # is nan, compares False, and rightly so, as nothing beats an infinite score.
        with np.errstate(invalid="ignore"):
            need_f = (ff <= fake_near[rows_f][:, None]) | ((ratio_top > 0)[None, :] & (ratio_top[None, :] >= ff * fake_ratio[rows_f][:, None]))
            near_r = fr <= real_near
            need_r = near_r | (fr <= fake_near[rows_f].max()) | ((ratio2 > 0) & (ratio2 >= fr * fake_ratio[rows_f].min()))
        more_f, more_r = tile_rows(rows_f, need_f, need_r, label_r)
        full(more_f, np.setdiff1d(more_r, done_r, assume_unique=True))
        full(np.setdiff1d(more_f, done_f, assume_unique=True), np.intersect1d(more_r, done_r, assume_unique=True))
        # Rows the first tiles met may meet these real rows again here: that
        # only repeats a nearest candidate, which changes nothing.
        only_near = ~need_f & (ff <= cr.maxima(real_near)[None, :])
        for_real, real_rows = tile_rows(rows_f, only_near, near_r, label_r)
        if len(for_real):
            part = taken(fake, for_real)
            for rows_r in pairing.pieces(real_rows):
                near = nearest_tile(part, taken(real, rows_r), taken_rows(real_right, rows_r), kappa)
                lists["real_nearest"].append(near.mapped(real_ids[rows_r], fake_ids[for_real]))
                np.minimum.at(real_near, rows_r[near.rows], near.hi)
    out.fake_nearest = Shortlist.joined(lists["fake_nearest"]).for_min()
    out.fake_realism = Shortlist.joined(lists["fake_realism"]).for_max()
    out.real_nearest = Shortlist.joined(lists["real_nearest"]).for_min()
    return out


def nearest_tile(fake: Block, real: Block, real_right, kappa) -> Shortlist:
    """Each real row's candidates for its nearest fake row in one tile, and nothing else.

    For fake rows that can matter to no membership and to no value of their
    own; the cut is that of :func:`tile`'s real side.
    """
    dist = sqdist32(fake, real_right)
    near_cut = dist.min(axis=0) + 2 * kappa * (real.sqnorm + fake.sqnorm.max())
    f_rows, r_rows = _pairs(dist < _upper32(near_cut)[None, :])
    d32 = dist[f_rows, r_rows].astype(np.float64)
    near = np.flatnonzero(d32 <= near_cut[r_rows])
    f_rows, r_rows = f_rows[near], r_rows[near]
    return _bounded(r_rows + real.start, f_rows + fake.start, d32[near], kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_rows])).for_min()


def tile(fake: Block, real: Block, real_right, fake_radii, real_radii, realism_radius, kappa, inclusive, prob_radii=None) -> CrossPartial:
    """Memberships (and per-sample values) of one fake panel × real panel.

    ``fake_radii``/``real_radii``: (rows, nk) float64 radii of the tile's rows.
    ``realism_radius``: per real row, its radius if it takes part in realism
    scores (radius not above the median), else 0; None to skip per-sample values.
    ``prob_radii``: (real R, fake R) of P-precision and P-recall, or None.
    """
    samples = realism_radius is not None
    exact_tiles = kappa == 0.0  # tile values are the brute force's squares (Lattice.exact)
    # One error bound per row (per column) that covers every pair in the tile.
    eps_fake = kappa * (fake.sqnorm + real.sqnorm.max())
    eps_real = kappa * (real.sqnorm + fake.sqnorm.max())
    widest_real, widest_fake = real_radii.max(axis=1), fake_radii.max(axis=1)
    if prob_radii is not None:
        widest_real, widest_fake = np.maximum(widest_real, prob_radii[0]), np.maximum(widest_fake, prob_radii[1])
    open_entries = None  # the finite entries of a screened tile (None: all)
    if samples or prob_radii is not None:
        # Nearest rows and realism need every entry, and P-precision/recall's common
        # radius holds most of them (measured: every screened tile fell back): float32.
        dist = sqdist32(fake, real_right)
    else:  # only entries within some ball's reach are read
        dist, open_entries = screened_tile(
            fake, real_right, _upper32(widest_fake * widest_fake + eps_fake), _upper32(widest_real * widest_real + eps_real), real.rounded
        )

    # Real balls (columns): precision, density, coverage; nearest fake per real row.
    reach = widest_real * widest_real + eps_real
    if samples and not exact_tiles:
        near_cut_real = dist.min(axis=0) + 2 * eps_real
        reach = np.maximum(reach, near_cut_real)
    f_rows, r_rows = np.divmod(below(dist, open_entries, _upper32(reach), True), dist.shape[1])
    d32 = dist[f_rows, r_rows].astype(np.float64)
    recomputed = []
    exact_real_side = _exact_of(fake, real, f_rows, r_rows, d32, kappa == 0.0, recomputed)
    pair_eps = kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_rows])
    inside = _inside(d32, real_radii[r_rows], pair_eps, exact_real_side, inclusive)
    nk = inside.shape[1]
    out = CrossPartial(
        np.stack([np.bincount(f_rows[inside[:, q]], minlength=fake.rows) for q in range(nk)], axis=1).astype(np.int64),
        _flags(r_rows, inside, real.rows),
        None,
    )
    if prob_radii is not None:
        prob_fake = _log_ratios(d32, prob_radii[0], pair_eps, exact_real_side, f_rows, fake.rows)
    if samples and exact_tiles:
        out.real_nearest = _nearest_exact(dist, 0, real.start, fake.start)
    elif samples:
        near = np.flatnonzero(d32 <= near_cut_real[r_rows])
        out.real_nearest = _bounded(r_rows[near] + real.start, f_rows[near] + fake.start, d32[near], pair_eps[near]).for_min()

    # Fake balls (rows): recall; nearest real per fake row; realism scores.
    reach = widest_fake * widest_fake + eps_fake
    if samples:
        row_min = dist.min(axis=1).astype(np.float64)
        near_cut_fake = row_min + 2 * eps_fake
        if not exact_tiles:
            reach = np.maximum(reach, np.maximum(near_cut_fake, NEAR_COPY * eps_fake))
    f_rows, r_rows = np.divmod(below(dist, open_entries, _upper32(reach), False), dist.shape[1])
    d32 = dist[f_rows, r_rows].astype(np.float64)
    exact_fake_side = _exact_of(fake, real, f_rows, r_rows, d32, kappa == 0.0, recomputed)
    pair_eps = kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_rows])
    out.real_recalled = _flags(r_rows, _inside(d32, fake_radii[f_rows], pair_eps, exact_fake_side, inclusive), real.rows)
    if prob_radii is not None:
        out.prob = ProbPartial(*prob_fake, *_log_ratios(d32, prob_radii[1], pair_eps, exact_fake_side, r_rows, real.rows))
    if samples:
        if exact_tiles:
            out.fake_nearest = _nearest_exact(dist, 1, fake.start, real.start)
        else:
            near = np.flatnonzero(d32 <= near_cut_fake[f_rows])
            out.fake_nearest = _bounded(f_rows[near] + fake.start, r_rows[near] + real.start, d32[near], pair_eps[near]).for_min()
        close = np.flatnonzero(d32 <= NEAR_COPY * eps_fake[f_rows])
        out.fake_realism = _realism(dist, fake, real, realism_radius, eps_fake, row_min, f_rows[close], r_rows[close], kappa)
    out.float64_pairs = sum(recomputed)
    return out


def _exact_of(fake: Block, real: Block, f_rows, r_rows, d32, exact_tiles: bool, recomputed: list):
    """float64 distances of chosen candidate pairs (indices into f_rows/r_rows/d32).

    With exact tiles (kappa 0, :meth:`largeemb.kernels.moments.Lattice.exact`)
    √ of the tile value *is* the brute force's distance, so no row is read;
    else the pairs' float64 rows are subtracted, and their count recorded.
    """

    def exact_of(sel):
        if exact_tiles:
            return np.sqrt(d32[sel])
        recomputed.append(len(sel))
        return exact_pairs(fake.exact, real.exact, f_rows[sel], r_rows[sel])

    return exact_of


def _nearest_exact(dist, axis: int, own_start: int, other_start: int) -> Shortlist:
    """Each row's (axis 1) or column's (axis 0) nearest with exact tiles: its least tile value.

    However many tie there, one pair is enough: argmin takes the first, the
    lowest index (a tile's rows and columns ascend, :func:`largeemb.kernels.tiles.taken`),
    which is the tie :func:`settle_fake` picks; a real row's nearest distance
    does not depend on which. The shortlist's bounds are the exact value.
    """
    other = dist.argmin(axis=axis)
    own = np.arange(len(other))
    d = (dist[other, own] if axis == 0 else dist[own, other]).astype(np.float64)
    return Shortlist(own + own_start, other + other_start, d, d)


def _bounded(rows, cols, d32, eps) -> Shortlist:
    return Shortlist(rows, cols, d32 - eps, d32 + eps)


def _realism(dist, fake: Block, real: Block, realism_radius, eps_fake, row_min, close_rows, close_cols, kappa):
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
    f_rows, r_cols = _pairs(ratio >= cut.astype(np.float32)[:, None])
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


def settle_real(real: Block, take_fake, nearest: Shortlist) -> np.ndarray:
    """Exact distance from each real row of a block to its nearest fake row, and the pairs computed in float64."""
    rows = nearest.rows - real.start
    out = np.full(real.rows, np.inf)
    np.minimum.at(out, rows, _exact_once(real, take_fake, rows, nearest.cols, counted := []))
    return out, counted[0]
