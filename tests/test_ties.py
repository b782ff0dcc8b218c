"""Tie-heavy data: exact duplicates, lattices, one-hot rows, against the float64 brute force.

prdc (sklearn's ``|x|^2 + |y|^2 - 2xy`` in float32 for float32 input) can
break a tie differently from the brute force: two identical rows come out at
~1e-4 instead of 0, or a tied neighbour ranks by rounding. The brute force is
the definition, so these tests compare with :mod:`oracle` only.
"""

import threading

import numpy as np
import pytest

import largeemb
import oracle
from conftest import mixture, same_metrics
from largeemb import pipeline
from largeemb.kernels import neighbours, resolve
from largeemb.kernels.plan import row_blocks
from largeemb.passes import knn as radii_pass

KEYS = ("precision", "recall", "density", "coverage")


def test_unproven_rows_are_resolved_in_tasks(monkeypatch):
    """Every float64 resolution runs as a task of the executor (a worker thread),
    one per (chunk of unproven rows, block), never in the main thread."""
    calls = []
    for name in ("resolve_block", "resolve_finish"):
        def spy(*args, _f=getattr(resolve, name), _n=name):  # noqa: B008 (binds this name's function now)
            calls.append((_n, threading.current_thread() is threading.main_thread()))
            return _f(*args)
        monkeypatch.setattr(resolve, name, spy)
    monkeypatch.setattr(neighbours, "MARGIN", 0)
    monkeypatch.setattr(neighbours, "BAND", 0.0)
    monkeypatch.setattr(radii_pass, "RESOLVE_ROWS", 64)
    real, fake = mixture(900, 8, 1), mixture(800, 8, 2)
    # the part radii's longer lists (and float64 pass) are not counted here
    result = largeemb.evaluate(real, fake, k=3, block_rows=200, samples=False, plots=False, standard_errors=False)
    unproven = result.real["float64_fallback_rows"] + result.fake["float64_fallback_rows"]
    assert unproven > 64
    assert calls and not any(main for _, main in calls)
    chunks = [-(-getattr(result, side)["float64_fallback_rows"] // 64) for side in ("real", "fake")]
    blocks = [len(row_blocks(len(x), 200)) for x in (real, fake)]
    assert sum(n == "resolve_finish" for n, _ in calls) == sum(chunks)
    assert sum(n == "resolve_block" for n, _ in calls) == sum(c * b for c, b in zip(chunks, blocks))
    assert "radii_float64" in result.timings_s
    np.testing.assert_array_equal(result.real_radii[:, 0], oracle.radii(real, 3))
    np.testing.assert_array_equal(result.fake_radii[:, 0], oracle.radii(fake, 3))


# -- tie-heavy sets against the float64 brute force ------------------------------


def lattice(rows, dim, seed):
    """Small integer lattice points: exact duplicates and masses of tied distances."""
    return np.random.default_rng(seed).integers(-2, 3, (rows, dim)).astype(np.float32)


def one_hot(rows, dim, scales):
    """Rows s * e_i: every distance is one of a handful of values."""
    out = np.zeros((rows, dim), np.float32)
    i = np.arange(rows)
    out[i, i % dim] = np.asarray(scales, np.float32)[(i // dim) % len(scales)]
    return out


def repeated(seed):
    """Gaussian rows repeated 1-12 times, one row 40 times (> k+1) and one 300 times
    (> a 128-row block), shuffled."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((120, 6)).astype(np.float32)
    counts = rng.integers(1, 13, len(base))
    counts[0], counts[1] = 40, 300
    out = np.repeat(base, counts, axis=0)
    return out[rng.permutation(len(out))]


def tie_sets(name):
    if name == "lattice":
        return lattice(700, 4, 1), lattice(500, 4, 2)
    if name == "one_hot":
        return one_hot(360, 24, (1, -1, 2)), one_hot(300, 24, (1, 2, -2, 3))
    if name == "repeated":
        return repeated(3), repeated(4)[:900]
    if name == "shared":  # duplicates across the two sets
        real = repeated(5)
        fake = np.concatenate([real[::3], repeated(6)[:400]])
        return real, fake
    raise KeyError(name)


def check_all(real, fake, k, inclusive=False, **options):
    result = largeemb.evaluate(real, fake, k=k, inclusive=inclusive, plots=False, **options)
    np.testing.assert_array_equal(result.real_radii[:, 0], oracle.radii(real, k))
    np.testing.assert_array_equal(result.fake_radii[:, 0], oracle.radii(fake, k))
    d = oracle.pairwise(fake, real)
    r_real, r_fake = oracle.radii(real, k), oracle.radii(fake, k)
    inside = np.less_equal if inclusive else np.less
    np.testing.assert_array_equal(result.fake_counts[:, 0], inside(d, r_real[None, :]).sum(axis=1))
    np.testing.assert_array_equal(result.real_covered[:, 0], inside(d, r_real[None, :]).any(axis=0))
    np.testing.assert_array_equal(result.real_recalled[:, 0], inside(d, r_fake[:, None]).any(axis=0))
    truth = oracle.per_sample(real, fake, k)
    np.testing.assert_array_equal(result.fake_nearest_real, truth["fake_nearest_real"])
    np.testing.assert_array_equal(result.fake_nearest_dist, truth["fake_nearest_dist"])
    np.testing.assert_array_equal(result.fake_realism, truth["fake_realism"])
    np.testing.assert_array_equal(result.real_nearest_dist, truth["real_nearest_dist"])
    want = oracle.prdc(real, fake, k, inclusive=inclusive)
    assert {key: result.metrics[key] for key in KEYS} == pytest.approx(want, rel=1e-12, abs=1e-12)
    return result


@pytest.mark.parametrize("name", ["lattice", "one_hot", "repeated", "shared"])
@pytest.mark.parametrize("k, inclusive", [(1, False), (3, False), (5, False), (5, True)])
def test_tie_heavy_sets_equal_brute_force(name, k, inclusive):
    real, fake = tie_sets(name)
    check_all(real, fake, k, inclusive, block_rows=256)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lattice", "repeated"])
def test_tie_heavy_results_do_not_depend_on_block_size(name):
    real, fake = tie_sets(name)
    runs = [check_all(real, fake, 3, block_rows=b) for b in (128, 300, 4096)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.real_radii, runs[0].real_radii)
        np.testing.assert_array_equal(other.fake_counts, runs[0].fake_counts)
        np.testing.assert_array_equal(other.fake_nearest_real, runs[0].fake_nearest_real)
        assert same_metrics(other.metrics, runs[0].metrics)


def test_copies_prove_their_zero_radius_in_the_tile_pass():
    """A group of c >= k+1 identical rows has radius 0 (copies at distance 0), found
    from kept candidates: no row of the repeated sets needs the float64 pass."""
    real, fake = tie_sets("repeated")
    result = check_all(real, fake, 5, block_rows=128)
    assert result.real["float64_fallback_rows"] == 0 and result.fake["float64_fallback_rows"] == 0
    assert (result.real_radii[:, 0] == 0).sum() > 300


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shared", "one_hot"])
def test_tie_heavy_sets_on_worker_processes(tmp_path, name):
    """Worker processes give the same answers, on the float32 path and on exact tiles (one_hot)."""
    from conftest import zarr_store

    real, fake = tie_sets(name)
    dim = real.shape[1]
    paths = (
        zarr_store(tmp_path / "real.zarr", real, chunks=(256, dim)),
        zarr_store(tmp_path / "fake.zarr", fake, chunks=(256, dim)),
    )
    local = largeemb.evaluate(real, fake, k=3, block_rows=256, plots=False)
    remote = largeemb.evaluate(*paths, k=3, block_rows=256, plots=False, workers=2)
    np.testing.assert_array_equal(remote.real_radii, local.real_radii)
    np.testing.assert_array_equal(remote.fake_counts, local.fake_counts)
    np.testing.assert_array_equal(remote.fake_realism, local.fake_realism)
    assert same_metrics(remote.metrics, local.metrics)
    assert remote.float64["exact_tiles"] == local.float64["exact_tiles"] == (name == "one_hot")


@pytest.mark.parametrize("name", ["lattice", "one_hot"])
def test_capped_candidate_lists_fall_back_exactly(name, monkeypatch):
    """With few candidates allowed per row, tied rows overflow the cap, lower their
    floor and go to the float64 pass; answers stay those of the brute force."""
    monkeypatch.setattr(neighbours, "MAX_CANDIDATES", 8)
    monkeypatch.setattr(pipeline, "_exact_tiles", lambda moments: False)  # the general path
    real, fake = tie_sets(name)
    result = check_all(real, fake, 5, block_rows=256)
    assert result.real["float64_fallback_rows"] > 0


# -- exact tiles: lattice data settles its ties by counting ------------------------


def test_lattice_of_finds_the_coarsest_power_of_two_grid():
    from largeemb.kernels.moments import lattice_of

    assert lattice_of(np.array([[1.0, -2.0, 3.0], [0.0, 4.0, 0.0]])) == moments_lattice(0, 16.0)
    assert lattice_of(np.array([[0.25, -1.5], [3.0, 0.0]])).exp == -2
    assert lattice_of(np.array([[1.0, 0.1]])).exp is None  # 0.1 has 53 significant bits
    assert lattice_of(np.array([[1.0, 2.0], [1.0, 1.0 + 2.0**-20]])).exp is None  # the second row too
    assert lattice_of(np.array([[6.0, 12.0]])).exp == 1


def moments_lattice(exp, sqnorm):
    from largeemb.kernels.moments import Lattice

    return Lattice(exp, sqnorm)


def test_exactness_bound_holds_at_its_edge():
    """Lattice.exact's bound, 4 max|x|² <= 2**24 q²: at the largest accepted norms the
    float32 tiles equal the brute force's squared distances, one past it is refused."""
    from largeemb.kernels.distance import prepare_block, sqdist32
    from largeemb.kernels.moments import lattice_of

    rng = np.random.default_rng(7)
    dim = 64
    rows = rng.integers(-255, 256, (300, dim)).astype(np.float64)
    rows *= np.sqrt(2.0**22 / np.einsum("ij,ij->i", rows, rows))[:, None]
    rows = np.trunc(rows)  # integers, squared norms just under 2**22
    rows[0] = 0.0
    rows[0, :4] = 1024.0  # exactly 2**22
    rows *= 2.0**-3  # the same on the lattice of 1/8
    assert lattice_of(rows).exact() and lattice_of(rows).exp == -3
    block = prepare_block(rows.astype(np.float32), 0, np.zeros(dim, np.float32), "euclidean")
    tiles = sqdist32(block, block.right()).astype(np.float64)
    np.testing.assert_array_equal(np.sqrt(tiles), oracle.pairwise(rows, rows))
    over = rows.copy()
    over[1, :] = 0.0
    over[1, :5] = 1024.0 * 2.0**-3  # squared norm 5 * 2**20 q²: 4M > 2**24 q²
    assert not lattice_of(over).exact()


@pytest.mark.parametrize("name", ["lattice", "one_hot"])
@pytest.mark.parametrize("k, inclusive", [(1, False), (5, True)])
def test_exact_tiles_settle_ties_without_float64(name, k, inclusive):
    """Lattice sets run on exact tiles: no pair is re-checked in float64 in the radii,
    float64 or cross passes (the counters in metrics.json say so), results equal the brute force."""
    real, fake = tie_sets(name)
    result = check_all(real, fake, k, inclusive, block_rows=256)
    work = result.to_dict()["float64"]
    assert work["exact_tiles"] is True
    assert work["radii"] == {"real_pairs": 0, "fake_pairs": 0}
    assert work["radii_float64"] == {"real_rows": 0, "fake_rows": 0, "real_pairs": 0, "fake_pairs": 0}
    assert work["cross"] == {"pairs": 0}
    assert work["samples"]["pairs"] > 0


@pytest.mark.parametrize("name", ["lattice", "one_hot", "shared"])
def test_general_path_on_tie_sets_equals_brute_force(name, monkeypatch):
    """The same sets through the float32 error bounds (exact tiles off) give the same answers."""
    monkeypatch.setattr(pipeline, "_exact_tiles", lambda moments: False)
    real, fake = tie_sets(name)
    result = check_all(real, fake, 5, True, block_rows=256)
    assert result.to_dict()["float64"]["exact_tiles"] is False


def test_off_lattice_data_keeps_the_error_bounds():
    """Gaussian rows (and lattice rows scaled by 0.1) are not exact: the float32 path runs."""
    real, fake = mixture(400, 8, 1), mixture(300, 8, 2)
    assert largeemb.evaluate(real, fake, k=3, samples=False, plots=False).float64["exact_tiles"] is False
    lat_real, lat_fake = tie_sets("lattice")
    scaled = largeemb.evaluate(lat_real * np.float32(0.1), lat_fake * np.float32(0.1), k=3, samples=False, plots=False)
    assert scaled.float64["exact_tiles"] is False
    np.testing.assert_array_equal(scaled.real_radii[:, 0], oracle.radii(lat_real * np.float32(0.1), 3))


def test_exact_tiles_keep_one_nearest_pair_per_row():
    """With exact tiles a tile's nearest-row shortlists hold one pair per row (the lowest
    index among tied ones, which settle picks), however many rows tie at the minimum."""
    from largeemb.kernels import cross
    from largeemb.kernels.distance import prepare_block
    from largeemb.metrics.prdc import realism_radii

    real, fake = one_hot(96, 8, (1, -1, 2)), one_hot(64, 8, (2, -2, 3))
    zero = np.zeros(8, np.float32)
    rb, fb = prepare_block(real, 0, zero, "euclidean"), prepare_block(fake, 0, zero, "euclidean")
    real_radii, fake_radii = oracle.radii(real, 3)[:, None], oracle.radii(fake, 3)[:, None]
    res = cross.tile(fb, rb, rb.right(), fake_radii, real_radii, realism_radii(real_radii[:, 0]), 0.0, False)
    d = oracle.pairwise(fake, real)
    assert (np.sum(d == d.min(axis=1, keepdims=True), axis=1) > 1).all()  # every row ties
    np.testing.assert_array_equal(res.fake_nearest.rows, np.arange(len(fake)))
    np.testing.assert_array_equal(res.fake_nearest.cols, d.argmin(axis=1))
    np.testing.assert_array_equal(np.sqrt(res.fake_nearest.lo), d.min(axis=1))
    np.testing.assert_array_equal(res.real_nearest.rows, np.arange(len(real)))
    np.testing.assert_array_equal(np.sqrt(res.real_nearest.hi), d.min(axis=0))


def test_copies_cost_one_float64_difference_per_group_and_neighbour():
    """A group of c identical rows does not cost c² float64 differences in the tile pass's
    finish: copies in the block are at exactly 0, and one pair per (group, neighbour) is
    computed. Radii stay those of the brute force."""
    real, fake = tie_sets("repeated")  # groups of up to 300 copies
    one_block = largeemb.evaluate(real, fake, k=5, block_rows=4096, samples=False, plots=False)
    assert one_block.float64["radii"]["real_pairs"] < 2_000  # 99,075 when every pair was computed
    five_blocks = largeemb.evaluate(real, fake, k=5, block_rows=256, samples=False, plots=False)
    assert five_blocks.float64["radii"]["real_pairs"] < 10_000  # 73,636 before
    for result in (one_block, five_blocks):
        np.testing.assert_array_equal(result.real_radii[:, 0], oracle.radii(real, 5))
        np.testing.assert_array_equal(result.fake_radii[:, 0], oracle.radii(fake, 5))


def test_copies_cost_one_settle_difference_per_group():
    """Duplicates across the two sets tie for nearest row and realism: the settle pass
    computes one float64 difference per (row, group of identical rows), and per-sample
    values stay the brute force's (check_all)."""
    real, fake = tie_sets("shared")
    result = check_all(real, fake, 5, block_rows=256)
    assert result.float64["samples"]["pairs"] < 5_000  # 62,483 when each tied copy was computed


@pytest.mark.parametrize("collide", [False, True])
def test_copy_labels_group_exactly_the_identical_rows(monkeypatch, collide):
    """Labels equal exactly for identical rows, also when the row hash collides (then np.unique decides)."""
    from largeemb.kernels import distance

    rng = np.random.default_rng(5)
    rows = rng.integers(-2, 3, (600, 7)).astype(np.float64)  # many exact copies
    rows[::50, 3] += 2.0**-40  # near-copies that must stay apart
    if collide:  # every row gets the same hash
        monkeypatch.setattr(distance, "HASH_MULTIPLIERS", np.zeros_like(distance.HASH_MULTIPLIERS))
    label = distance.copy_labels(rows)
    same = label[:, None] == label[None, :]
    identical = (rows[:, None, :] == rows[None, :, :]).all(axis=2)
    np.testing.assert_array_equal(same, identical)
