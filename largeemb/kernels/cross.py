"""The fake × real pass: ball memberships for precision, recall, density and
coverage (and P-precision/recall's sums), and the per-sample candidates, one tile at a time.

A tile's float32 distances decide every pair that lies clearly inside or
outside a ball (by more than the proven float32 error); the pairs in between
are decided in float64, so memberships equal a float64 brute force. Nearest
distances and realism scores are likewise taken in float64 over every pair
that float32 cannot rule out (shortlists: :mod:`largeemb.kernels.nearest`,
settled by :mod:`largeemb.kernels.settle`). Tiles are computed by the task's
tile strategy (:mod:`largeemb.kernels.screen`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels import balls as more
from largeemb.kernels import cross_splits
from largeemb.kernels.distance import Block
from largeemb.kernels.membership import exact_of as _exact_of
from largeemb.kernels.membership import inside as _inside
from largeemb.kernels.nearest import NEAR_COPY, nearest_exact, nearest_tile, pilot, realism_shortlist
from largeemb.kernels.prob import ProbPartial, log_ratios
from largeemb.kernels.roundoff import up32
from largeemb.kernels.screen import FLOAT32, TileStrategy, below
from largeemb.kernels.shortlist import Shortlist
from largeemb.kernels.tiles import cut_pair, parted, taken, taken_rows, tile_rows


@dataclass
class CrossPartial:
    """What one tile (or a merge of tiles) says, per k.

    ``fake_counts[j, q]``: real balls (k = ks[q]) containing fake row j.
    ``real_covered[i, q]``: some fake row lies in real row i's ball.
    ``real_recalled[i, q]``: real row i lies in some fake row's ball.
    Shortlists (None unless per-sample values are asked for) hold the pairs
    that can still be each fake row's nearest real row or best realism
    ratio, and each real row's nearest fake row; they are settled in
    float64 after the pass (:mod:`largeemb.kernels.settle`).
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
    balls: more.BallPartial | None = None  # counts in the k-NN family's extra balls (kernels/balls.py)
    #: Per split k, the :class:`~largeemb.kernels.splits.SplitCounts` of the standard errors (None: not asked for).
    splits: list | None = None

    def _merged_lists(self, other, out, how: str):
        out.float64_pairs = self.float64_pairs + other.float64_pairs
        if self.prob is not None:
            out.prob = getattr(self.prob, how)(other.prob)
        if self.balls is not None:
            out.balls = getattr(self.balls, how)(other.balls)
        if self.splits is not None:
            out.splits = getattr(cross_splits, how)(self.splits, other.splits)
        if self.fake_nearest is not None:
            out.fake_nearest = (self.fake_nearest + other.fake_nearest).best(1)
            out.fake_realism = (self.fake_realism + other.fake_realism).for_max()
            out.real_nearest = (self.real_nearest + other.real_nearest).best(1)
        return out

    def add(self, tile: CrossPartial, fake_rows: np.ndarray, real_rows: np.ndarray):
        """Fold in the memberships of a tile over these rows of the block pair."""
        self.fake_counts[fake_rows] += tile.fake_counts
        self.real_covered[real_rows] |= tile.real_covered
        self.real_recalled[real_rows] |= tile.real_recalled
        self.float64_pairs += tile.float64_pairs
        if self.prob is not None:
            self.prob.add(tile.prob, fake_rows, real_rows)
        if self.balls is not None:
            self.balls.add(tile.balls, fake_rows, real_rows)
        if self.splits is not None:
            cross_splits.add(self.splits, tile.splits, fake_rows, real_rows)

    def merge_real_blocks(self, other: CrossPartial) -> CrossPartial:
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

    def merge_fake_blocks(self, other: CrossPartial) -> CrossPartial:
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


def _flags(rows, inside, n):
    return more.counts(rows, inside, n) > 0


def unmet(rows_f, rows_r, done_f, done_r):
    """The pairs of rows_f × rows_r outside done_f × done_r, as two (fake rows, real rows) rectangles."""
    return (
        (rows_f, np.setdiff1d(rows_r, done_r, assume_unique=True)),
        (np.setdiff1d(rows_f, done_f, assume_unique=True), np.intersect1d(rows_r, done_r, assume_unique=True)),
    )


def _sample_needs(far_f, far_r, found, part_near, part_ratio, ratio2, top_r):
    """Which fake rows per-sample values need to meet which real part, and which real rows which fake part.

    ``far_f`` (fake rows, real parts), ``far_r`` (real rows, fake parts): squared distance bounds;
    ``found``: (fake rows' squared nearest distances, their squared best realism ratios, real rows'
    squared nearest distances) so far, or as the pilot guesses them (:func:`~largeemb.kernels.nearest.pilot`);
    ``part_near``/``part_ratio``: per fake part, the largest of the first and the smallest of the second;
    ``ratio2``: the real rows' squared realism radii, ``top_r`` their largest per real part.
    A ratio bound is inf for a copy of an eligible real row (exact tiles): 0 * inf is nan,
    compares False, and rightly so, as nothing beats an infinite score.
    """
    near_f, ratio_f, near_r = found
    with np.errstate(invalid="ignore"):
        need_f = (far_f <= near_f[:, None]) | (top_r > 0) & (top_r >= far_f * ratio_f[:, None])
        need_r = (far_r <= np.maximum(near_r[:, None], part_near)) | (
            (ratio2 > 0)[:, None] & (ratio2[:, None] >= far_r * part_ratio)
        )
    return need_f, need_r


def block_pair(
    fake: Block, real: Block, fake_radii, real_radii, realism_radius, kappa, inclusive, panel_rows, partition=None,
    prob_radii=None,
    strategy: TileStrategy = FLOAT32, balls: more.Balls | None = None, split_rows=None,
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
    lighter :func:`~largeemb.kernels.nearest.nearest_tile`. Whether the block pair is
    grouped at all is decided with those per-sample pairs counted in, as a pilot
    (:func:`~largeemb.kernels.nearest.pilot`) guesses them, and each tile then costing
    SAMPLES_TILE_COST (:func:`~largeemb.kernels.tiles.cut_pair`); the first tiles include them.
    ``prob_radii`` (the common real and fake radii of P-precision and P-recall, or None)
    widens every row's reach to them, as ``balls`` do.
    ``strategy`` computes the tiles (float32 wherever per-sample values or
    P-precision/recall are asked for: those read every entry). ``split_rows``: the
    blocks' (fake, real) :class:`~largeemb.kernels.cross_splits.SplitRows` (None: no standard errors).
    """
    reach_r, reach_f = more.widened(balls, real_radii.max(axis=1), fake_radii.max(axis=1))
    reach_f, reach_r = cross_splits.reach(split_rows, reach_f, reach_r)
    if prob_radii is not None:
        reach_r, reach_f = np.maximum(reach_r, prob_radii[0]), np.maximum(reach_f, prob_radii[1])

    real_right = real.right()
    samples = realism_radius is not None
    guess = pilot(fake, real, real_right, realism_radius) if samples and partition is not None else None
    ratio2 = realism_radius**2 if samples else None

    def in_reach(cf, cr, far_f, far_r):
        need_f = far_f <= np.maximum(reach_f[:, None], cr.maxima(reach_r)[None, :])
        need_r = far_r <= np.maximum(reach_r[:, None], cf.maxima(reach_f)[None, :])
        if guess is None:
            return need_f, need_r
        near_f, ratio_f, _ = guess
        more_f, more_r = _sample_needs(
            far_f**2, far_r**2, guess, cf.maxima(near_f), -cf.maxima(-ratio_f), ratio2, cr.maxima(ratio2)
        )
        return need_f | more_f, need_r | more_r

    pairing, tiles = cut_pair(fake, real, panel_rows, partition, in_reach, samples)
    nk = fake_radii.shape[1]
    out = CrossPartial(
        np.zeros((fake.rows, nk), np.int64), np.zeros((real.rows, nk), bool), np.zeros((real.rows, nk), bool)
    )
    if prob_radii is not None:
        out.prob = ProbPartial.empty(fake.rows, real.rows)
    out.balls = more.empty(balls, fake.rows, real.rows)
    out.splits = cross_splits.empty(split_rows, real.rows, fake.rows)
    lists = {"fake_nearest": [], "fake_realism": [], "real_nearest": []}
    fake_ids, real_ids = np.arange(fake.rows) + fake.start, np.arange(real.rows) + real.start
    if samples:
        fake_near = np.full(fake.rows, np.inf)  # upper bounds of squared nearest distances so far
        real_near = np.full(real.rows, np.inf)
        fake_ratio = np.zeros(fake.rows)  # lower bounds of squared best realism ratios so far

    def run(part, rows_f, rows_r):
        res = tile(
            part, taken(real, rows_r), taken_rows(real_right, rows_r), fake_radii[rows_f], real_radii[rows_r],
            realism_radius[rows_r] if samples else None, kappa, inclusive, prob_radii, strategy,
            ((fake, rows_f), (real, rows_r)), balls and balls.taken(rows_f, rows_r),
            cross_splits.taken(split_rows, rows_f, rows_r),
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
    ratio_top = cr.maxima(ratio2)
    done = [(done_f, np.concatenate(pieces) if pieces else np.empty(0, np.int64)) for done_f, pieces in done]
    for i, (done_f, done_r) in enumerate(done):
        rows_f = cf.rows[i]
        ff, fr = far_f[rows_f], far_r[:, i]
        near_f, ratio_f = fake_near[rows_f], fake_ratio[rows_f]
        need_f, need_r = _sample_needs(
            ff, fr[:, None], (near_f, ratio_f, real_near), near_f.max(), ratio_f.min(), ratio2, ratio_top
        )
        need_r, near_r = need_r[:, 0], fr <= real_near
        for pairs in unmet(*tile_rows(rows_f, need_f, need_r, label_r), done_f, done_r):
            full(*pairs)
        # Fake rows the first tiles did not pair with these real rows may still be their nearest.
        # (Rows just met may meet them again here: that only repeats a nearest candidate.)
        only_near = ~need_f & (ff <= cr.maxima(real_near)[None, :])
        for for_real, real_rows in unmet(*tile_rows(rows_f, only_near, near_r, label_r), done_f, done_r):
            if not (len(for_real) and len(real_rows)):
                continue
            part = taken(fake, for_real)
            for rows_r in pairing.pieces(real_rows):
                near = nearest_tile(part, taken(real, rows_r), taken_rows(real_right, rows_r), kappa)
                lists["real_nearest"].append(near.mapped(real_ids[rows_r], fake_ids[for_real]))
                np.minimum.at(real_near, rows_r[near.rows], near.hi)
    out.fake_nearest = Shortlist.joined(lists["fake_nearest"]).best(1)
    out.fake_realism = Shortlist.joined(lists["fake_realism"]).for_max()
    out.real_nearest = Shortlist.joined(lists["real_nearest"]).best(1)
    return out


def tile(
    fake: Block, real: Block, real_right, fake_radii, real_radii, realism_radius, kappa, inclusive, prob_radii=None,
    strategy: TileStrategy = FLOAT32, origins=(None, None), balls: more.Balls | None = None, split_rows=None,
) -> CrossPartial:
    """Memberships (and per-sample candidates) of one fake panel × real panel.

    ``fake_radii``/``real_radii``: (rows, nk) float64 radii of the tile's rows.
    ``realism_radius``: per real row, its radius if it takes part in realism
    scores (radius not above the median), else 0; None to skip per-sample values.
    ``prob_radii``: (real R, fake R) of P-precision and P-recall, or None.
    ``strategy`` computes the tile; ``origins``: the (block, block-local rows)
    each panel was taken from (:meth:`largeemb.kernels.screen.ScreenedTiles.tile`); ``balls``: extra columns;
    ``split_rows``: the tile's (fake, real) :class:`~largeemb.kernels.cross_splits.SplitRows`, or None.
    """
    samples = realism_radius is not None
    exact_tiles = kappa == 0.0  # tile values are the brute force's squares (Lattice.exact)
    # One error bound per row (per column) that covers every pair in the tile.
    eps_fake = kappa * (fake.sqnorm + real.sqnorm.max())
    eps_real = kappa * (real.sqnorm + fake.sqnorm.max())
    widest_real, widest_fake = more.widened(balls, real_radii.max(axis=1), fake_radii.max(axis=1))
    if prob_radii is not None:
        widest_real, widest_fake = np.maximum(widest_real, prob_radii[0]), np.maximum(widest_fake, prob_radii[1])
    widest_fake, widest_real = cross_splits.reach(split_rows, widest_fake, widest_real)
    # Only entries within some ball's reach are read (open_entries: the finite entries of a screened tile, None: all).
    row_cut, col_cut = up32(widest_fake * widest_fake + eps_fake), up32(widest_real * widest_real + eps_real)
    dist, open_entries = strategy.tile(fake, real_right, row_cut, col_cut, *origins)

    # Real balls (columns): precision, density, coverage; nearest fake per real row.
    reach = widest_real * widest_real + eps_real
    if samples and not exact_tiles:
        near_cut_real = dist.min(axis=0) + 2 * eps_real
        reach = np.maximum(reach, near_cut_real)
    f_rows, r_rows = np.divmod(below(dist, open_entries, up32(reach), True), dist.shape[1])
    d32 = dist[f_rows, r_rows].astype(np.float64)
    recomputed = []
    exact_real_side = _exact_of(fake, real, f_rows, r_rows, d32, kappa == 0.0, recomputed)
    pair_eps = kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_rows])
    inside = _inside(d32, real_radii[r_rows], pair_eps, exact_real_side, inclusive)
    out = CrossPartial(more.counts(f_rows, inside, fake.rows), _flags(r_rows, inside, real.rows), None)
    out.balls = more.real_side(balls, out, f_rows, r_rows, _inside, d32, pair_eps, exact_real_side)
    out.splits = cross_splits.real_side(split_rows, real.rows, fake.rows, f_rows, r_rows, d32, pair_eps,
                                        exact_real_side, inclusive)
    if prob_radii is not None:
        prob_fake = log_ratios(d32, prob_radii[0], pair_eps, exact_real_side, f_rows, fake.rows)
    if samples and exact_tiles:
        out.real_nearest = nearest_exact(dist, 0, real.start, fake.start)
    elif samples:
        near = np.flatnonzero(d32 <= near_cut_real[r_rows])
        out.real_nearest = Shortlist.bounded(
            r_rows[near] + real.start, f_rows[near] + fake.start, d32[near], pair_eps[near]
        ).best(1)

    # Fake balls (rows): recall; nearest real per fake row; realism scores.
    reach = widest_fake * widest_fake + eps_fake
    if samples:
        row_min = dist.min(axis=1).astype(np.float64)
        near_cut_fake = row_min + 2 * eps_fake
        if not exact_tiles:
            reach = np.maximum(reach, np.maximum(near_cut_fake, NEAR_COPY * eps_fake))
    f_rows, r_rows = np.divmod(below(dist, open_entries, up32(reach), False), dist.shape[1])
    d32 = dist[f_rows, r_rows].astype(np.float64)
    exact_fake_side = _exact_of(fake, real, f_rows, r_rows, d32, kappa == 0.0, recomputed)
    pair_eps = kappa * (fake.sqnorm[f_rows] + real.sqnorm[r_rows])
    out.real_recalled = _flags(
        r_rows, _inside(d32, fake_radii[f_rows], pair_eps, exact_fake_side, inclusive), real.rows
    )
    more.fake_side(out.balls, balls, f_rows, r_rows, _inside, d32, pair_eps, exact_fake_side)
    cross_splits.fake_side(out.splits, split_rows, f_rows, r_rows, d32, pair_eps, exact_fake_side, inclusive)
    if prob_radii is not None:
        out.prob = ProbPartial(
            *prob_fake, *log_ratios(d32, prob_radii[1], pair_eps, exact_fake_side, r_rows, real.rows)
        )
    if samples:
        if exact_tiles:
            out.fake_nearest = nearest_exact(dist, 1, fake.start, real.start)
        else:
            near = np.flatnonzero(d32 <= near_cut_fake[f_rows])
            out.fake_nearest = Shortlist.bounded(
                f_rows[near] + fake.start, r_rows[near] + real.start, d32[near], pair_eps[near]
            ).best(1)
        close = np.flatnonzero(d32 <= NEAR_COPY * eps_fake[f_rows])
        out.fake_realism = realism_shortlist(
            dist, fake, real, realism_radius, eps_fake, row_min, f_rows[close], r_rows[close], kappa
        )
    out.float64_pairs = sum(recomputed)
    return out
