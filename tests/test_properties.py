"""Property tests of the accumulators: merging partial results in any order and
grouping gives the single-pass result (which is what lets dask schedule freely).

Sums and unions commute, so their parts are also shuffled; the merges that
concatenate rows (CrossPartial's row-indexed side) take adjacent pieces in row
order, so for them only the grouping (the shape of the merge tree) is free.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import oracle
from largeemb.kernels import cross
from largeemb.kernels.distance import metric_rows, prepare_block, sqdist_error_scale
from largeemb.kernels.moments import Moments
from largeemb.kernels.neighbours import MAX_CANDIDATES, Candidates, Neighbours, merge

SETTINGS = settings(max_examples=100, deadline=None)


def _cuts(draw, rows: int) -> list[int]:
    """Random piece boundaries 0 = c0 < c1 < … < rows."""
    inner = draw(st.sets(st.integers(1, rows - 1), max_size=6)) if rows > 1 else set()
    return [0, *sorted(inner), rows]


def _merge_in_random_tree(draw, parts: list, combine):
    """Merge adjacent pieces in a random order of pairings until one remains."""
    parts = list(parts)
    while len(parts) > 1:
        i = draw(st.integers(0, len(parts) - 2))
        parts[i : i + 2] = [combine(parts[i], parts[i + 1])]
    return parts[0]


# -- moments ------------------------------------------------------------------------


@st.composite
def row_sets(draw):
    rows, dim = draw(st.integers(2, 60)), draw(st.integers(1, 5))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    offset = draw(st.sampled_from([0.0, 1e3]))  # far from the origin: the shift must matter
    values = draw(arrays(np.float64, (rows, dim), elements=st.floats(-1, 1, allow_nan=False)))
    return values * scale + offset


@given(rows=row_sets(), data=st.data())
@SETTINGS
def test_moments_merge_in_any_order_and_grouping_equals_one_pass(rows, data):
    shift = rows[0]
    cuts = _cuts(data.draw, len(rows))
    pieces = [Moments.of_rows(rows[a:b], shift, metric_rows(rows[a:b], "euclidean")) for a, b in zip(cuts, cuts[1:])]
    order = data.draw(st.permutations(range(len(pieces))))
    merged = _merge_in_random_tree(data.draw, [pieces[i] for i in order], Moments.merge)
    one_pass = Moments.of_rows(rows, shift, metric_rows(rows, "euclidean"))

    assert merged.count == one_pass.count == len(rows)
    for name in ("s1", "s2", "metric_sum"):
        got, want = getattr(merged, name), getattr(one_pass, name)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * max(1.0, np.abs(want).max()))
    # and both are the mean and covariance NumPy computes from the concatenation
    spread = max(1.0, np.abs(rows - rows.mean(0)).max()) ** 2
    # (plus one subnormal step: rows of 5e-324 and 0 have mean 2.5e-324, which rounds either way)
    tiny = np.finfo(np.float64).smallest_subnormal
    np.testing.assert_allclose(merged.mean, rows.mean(axis=0), rtol=1e-12, atol=1e-12 * np.abs(rows).max() + tiny)
    np.testing.assert_allclose(merged.cov, np.atleast_2d(np.cov(rows, rowvar=False)), rtol=1e-9, atol=1e-9 * spread)


# -- cross partials -----------------------------------------------------------------


@st.composite
def set_pairs(draw):
    """Small real/fake sets on a coarse grid, so exact ties and duplicates are common."""
    dim = draw(st.integers(1, 4))
    real_rows, fake_rows = draw(st.integers(4, 40)), draw(st.integers(4, 40))  # > largest k
    grid = st.integers(-3, 3).map(float)
    real = draw(arrays(np.float64, (real_rows, dim), elements=grid))
    fake = draw(arrays(np.float64, (fake_rows, dim), elements=grid))
    ks = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2, unique=True))
    return real.astype(np.float32), fake.astype(np.float32), tuple(ks), draw(st.booleans())


def _radii(x, ks):
    return np.stack([oracle.radii(x, k) for k in ks], axis=1)


def _tile(fake, real, fake_cut, real_cut, fake_radii, real_radii, centre, inclusive):
    (fa, fb), (ra, rb) = fake_cut, real_cut
    real_block = prepare_block(real[ra:rb], ra, centre, "euclidean")
    return cross.tile(
        prepare_block(fake[fa:fb], fa, centre, "euclidean"),
        real_block,
        real_block.right(),
        fake_radii[fa:fb],
        real_radii[ra:rb],
        None,
        sqdist_error_scale(real.shape[1]),
        inclusive,
    )


def _same(a: cross.CrossPartial, b: cross.CrossPartial):
    np.testing.assert_array_equal(a.fake_counts, b.fake_counts)
    np.testing.assert_array_equal(a.real_covered, b.real_covered)
    np.testing.assert_array_equal(a.real_recalled, b.real_recalled)


@given(sets=set_pairs(), data=st.data())
@SETTINGS
def test_cross_partials_merged_in_any_grouping_equal_one_tile(sets, data):
    real, fake, ks, inclusive = sets
    real_radii, fake_radii = _radii(real, ks), _radii(fake, ks)
    centre = real.mean(axis=0).astype(np.float32)
    whole = _tile(fake, real, (0, len(fake)), (0, len(real)), fake_radii, real_radii, centre, inclusive)

    real_cuts, fake_cuts = _cuts(data.draw, len(real)), _cuts(data.draw, len(fake))
    per_fake_block = []
    for fake_cut in zip(fake_cuts, fake_cuts[1:]):
        tiles = [
            _tile(fake, real, fake_cut, real_cut, fake_radii, real_radii, centre, inclusive)
            for real_cut in zip(real_cuts, real_cuts[1:])
        ]
        per_fake_block.append(_merge_in_random_tree(data.draw, tiles, cross.CrossPartial.merge_real_blocks))
    _same(_merge_in_random_tree(data.draw, per_fake_block, cross.CrossPartial.merge_fake_blocks), whole)

    # The summed / OR-ed halves of each merge do not depend on the order either.
    if len(per_fake_block) > 1:
        a, b = per_fake_block[0], per_fake_block[1]
        ab, ba = a.merge_fake_blocks(b), b.merge_fake_blocks(a)
        np.testing.assert_array_equal(ab.real_covered, ba.real_covered)
        np.testing.assert_array_equal(ab.real_recalled, ba.real_recalled)

    # And the one tile is the float64 brute force (ties included).
    dist = oracle.pairwise(fake, real)
    inside = np.less_equal if inclusive else np.less
    for q in range(len(ks)):
        in_real_ball = inside(dist, real_radii[None, :, q])
        np.testing.assert_array_equal(whole.fake_counts[:, q], in_real_ball.sum(axis=1))
        np.testing.assert_array_equal(whole.real_covered[:, q], in_real_ball.any(axis=0))
        np.testing.assert_array_equal(whole.real_recalled[:, q], inside(dist, fake_radii[:, None, q]).any(axis=0))


# -- k-NN candidate merges ------------------------------------------------------------

D32_VALUES = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.0, 2.0, 3.5]).map(np.float32)  # repeats: ties


@st.composite
def neighbour_merges(draw):
    """A block's first candidates, and batches of further candidates for its rows."""
    rows_n, K = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    d32 = np.full((rows_n, K), np.inf, np.float32)
    idx = np.full((rows_n, K), -1, np.int64)
    offered = []  # (row, neighbour index, d32) beyond the first K
    for row in range(rows_n):
        neighbours = draw(st.lists(st.integers(0, 50), unique=True, max_size=12))
        first = draw(st.integers(0, min(K, len(neighbours))))  # fewer than K: padded with (inf, -1)
        initial = sorted((draw(D32_VALUES), n) for n in neighbours[:first])
        for j, (d, n) in enumerate(initial):
            d32[row, j], idx[row, j] = d, n
        offered += [(row, n, draw(D32_VALUES)) for n in neighbours[first:]]
    floor = np.array([draw(st.sampled_from([np.inf, 1.0, 4.0])) for _ in range(rows_n)], np.float32)
    k = draw(st.integers(0, K - 1))
    band = np.array([draw(st.sampled_from([0.0, 0.5, 2.0])) for _ in range(rows_n)])
    cut = np.array([draw(st.sampled_from([np.inf, 3.0, 10.0])) for _ in range(rows_n)])
    nb = Neighbours(0, d32, idx, floor, np.zeros(rows_n), cut, band, K, k)

    n_batches = draw(st.integers(1, 5))
    owner = [draw(st.integers(0, n_batches - 1)) for _ in offered]
    batches = []
    for b in range(n_batches):
        mine = [o for o, w in zip(offered, owner) if w == b]
        floor_rows = np.array(sorted(draw(st.sets(st.integers(0, rows_n - 1), max_size=rows_n))), np.int64)
        batches.append(
            Candidates(
                rows=np.array([r for r, _, _ in mine], np.int64),
                idx=np.array([n for _, n, _ in mine], np.int64),
                d32=np.array([d for _, _, d in mine], np.float32),
                floor_rows=floor_rows,
                floor=np.array([draw(D32_VALUES) for _ in floor_rows], np.float32),
            )
        )
    return nb, batches


def _best_k_oracle(nb: Neighbours, batches):
    """Per row: the (d32, index) pairs up to the new cut (at most MAX_CANDIDATES, K where the band is 0), as lists;
    the floor is the smallest of what the batches lowered it to and of what the cap dropped."""
    rows_n = nb.d32.shape[0]
    lists, floor, cuts = [], nb.floor.copy(), nb.cut.copy()
    for row in range(rows_n):
        pool = [(d, n) for d, n in zip(nb.d32[row].tolist(), nb.idx[row].tolist()) if n >= 0]
        offered = False
        for c in batches:
            mine = [(float(d), int(n)) for r, n, d in zip(c.rows, c.idx, c.d32) if r == row]
            offered |= bool(mine)
            pool += mine
            floor[row] = min([floor[row], *[f for r, f in zip(c.floor_rows, c.floor) if r == row]])
        pool.sort()
        if offered:
            kth = pool[nb.K - 1][0] if len(pool) >= nb.K else np.inf
            s = pool[nb.k][0] if len(pool) > nb.k else np.inf
            cuts[row] = min(nb.cut[row], max(kth, s + nb.band[row]))
            kept = [p for p in pool if p[0] <= cuts[row]]
            cap = nb.K if nb.band[row] == 0 else MAX_CANDIDATES  # band 0: exact tiles keep K
            if len(kept) > cap:
                floor[row] = min(floor[row], kept[cap][0])
                kept = kept[:cap]
            pool = kept
        lists.append(pool)
    return lists, floor, cuts


def _lists(nb):
    return [[(d, n) for d, n in zip(nb.d32[r].tolist(), nb.idx[r].tolist()) if n >= 0] for r in range(nb.d32.shape[0])]


@given(case=neighbour_merges(), data=st.data())
@SETTINGS
def test_knn_merge_keeps_the_same_candidates_whatever_the_batch_order_and_grouping(case, data):
    nb, batches = case
    want = _best_k_oracle(nb, batches)
    order = data.draw(st.permutations(range(len(batches))))
    shuffled = [batches[i] for i in order]
    cut = sorted(data.draw(st.sets(st.integers(1, max(1, len(batches) - 1)), max_size=3)))
    groups = [shuffled[a:b] for a, b in zip([0, *cut], [*cut, len(batches)]) if a < b]
    merged = merge(nb, batches)
    assert _lists(merged) == want[0]
    np.testing.assert_array_equal(merged.floor, want[1])
    np.testing.assert_array_equal(merged.cut, want[2])
    # Cuts only fall as candidates arrive, so what an early merge drops a later one
    # would drop too: any grouping and order gives the same lists and cuts, and the
    # same bound on what is not listed, min(floor, cut), which is all finish uses
    # (an early cap may lower the floor below a cut that a later merge lowers further).
    folded = _fold(nb, groups)
    assert _lists(folded) == want[0]
    np.testing.assert_array_equal(folded.cut, want[2])
    np.testing.assert_array_equal(np.minimum(folded.floor, folded.cut), np.minimum(want[1], want[2]))


def _fold(nb, groups):
    for group in groups:
        nb = merge(nb, group)
    return nb
