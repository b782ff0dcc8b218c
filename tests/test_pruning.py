"""Pruning by group lower bounds skips work and changes no answer.

The oracles are a float64 brute force and the same job with pruning off;
counting the pairs that reach the distance kernels shows the skip happens,
so the exactness tests exercise the pruned path.
"""

import json

import numpy as np
import pytest

import largeemb
from conftest import mixture
from largeemb.kernels import cross, knn, tiles
from largeemb.kernels import prune as groups
from largeemb.kernels.distance import prepare_block
from largeemb.kernels.nearest import PILOT_ROWS, pilot
from oracle import per_sample, prdc, radii

TILE_COST = tiles.TILE_COST  # the product's, before the fixture below sets it to 0
SAMPLES_TILE_COST = tiles.SAMPLES_TILE_COST
FIELDS = ("real_radii", "fake_radii", "fake_counts", "real_covered", "real_recalled")
SAMPLE_FIELDS = ("fake_nearest_dist", "fake_nearest_real", "fake_realism", "real_nearest_dist")


@pytest.fixture(scope="module", autouse=True)
def groups_at_test_size():
    """Groups wherever they skip MIN_SKIPPED of the pairs: at these sizes the tiles' cost rule
    (:func:`largeemb.kernels.tiles.groups_pay`) would cut the blocks into plain panels."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiles, "TILE_COST", 0.0)
        patch.setattr(tiles, "SAMPLES_TILE_COST", 0.0)
        yield


@pytest.fixture(scope="module")
def clustered():
    real = mixture(2400, 24, 1, modes=10, spread=4.0)
    fake = mixture(2000, 24, 2, modes=10, keep=7, spread=4.0, shift=0.05)
    return real, fake


@pytest.fixture(scope="module")
def clustered_run(groups_at_test_size, clustered):
    """The pruned run of ``clustered`` at the default options: the base the block sizes are compared with
    (computed once for the module)."""
    return run(*clustered)


def counted(monkeypatch):
    """Row pairs that reach the float32 kernels of the self and cross passes."""
    seen = {"pairs": 0}

    def wrap(module, name, rows_of):
        original = getattr(module, name)

        def counting(*args, **kwargs):
            seen["pairs"] += rows_of(*args)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)

    wrap(knn, "off_diagonal", lambda strategy, a, b_right, *rest: a.rows * len(b_right))
    wrap(knn, "diagonal", lambda block, *rest: block.rows * block.rows)
    wrap(cross, "tile", lambda fake, real, *rest: fake.rows * real.rows)
    wrap(cross, "nearest_tile", lambda fake, real, *rest: fake.rows * real.rows)
    return seen


def run(real, fake, **options):
    return largeemb.evaluate(real, fake, **{"k": (3, 5), "plots": False, "block_rows": 512, **options})


def test_pruning_skips_most_work_on_clustered_data_and_changes_nothing(clustered, monkeypatch):
    real, fake = clustered
    seen = counted(monkeypatch)
    full = run(real, fake, prune=False)
    full_pairs, seen["pairs"] = seen["pairs"], 0
    pruned = run(real, fake)
    assert seen["pairs"] < 0.5 * full_pairs
    for name in FIELDS + SAMPLE_FIELDS:
        assert np.array_equal(getattr(pruned, name), getattr(full, name)), name
    assert pruned.by_k == full.by_k


@pytest.mark.slow
def test_pruned_results_equal_float64_brute_force(clustered):
    real, fake = clustered
    result = run(real, fake, block_rows=333)
    for q, k in enumerate((3, 5)):
        assert np.array_equal(result.real_radii[:, q], radii(real, k))
        assert np.array_equal(result.fake_radii[:, q], radii(fake, k))
        expected = prdc(real, fake, k)
        assert all(result.by_k[k][name] == pytest.approx(expected[name], abs=1e-12) for name in expected)
    oracle = per_sample(real, fake, 3)
    assert np.array_equal(result.fake_nearest_real, oracle["fake_nearest_real"])
    assert np.allclose(result.fake_nearest_dist, oracle["fake_nearest_dist"], rtol=1e-12, atol=0)
    assert np.allclose(result.fake_realism, oracle["fake_realism"], rtol=1e-12, atol=0)
    assert np.allclose(result.real_nearest_dist, oracle["real_nearest_dist"], rtol=1e-12, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("block_rows", [200, 700, 2400])
def test_pruned_results_do_not_depend_on_block_size(clustered, clustered_run, block_rows):
    base = clustered_run
    other = run(*clustered, block_rows=block_rows)
    for name in FIELDS + SAMPLE_FIELDS:
        assert np.array_equal(getattr(other, name), getattr(base, name)), name


@pytest.mark.parametrize("seed", [3, 11, 49])
def test_pruning_changes_nothing_on_uneven_mixtures(seed, monkeypatch):
    """Random mixtures that share only some modes, with outliers on both sides.

    Rows far from every row of the other set need their nearest row from a
    full scan, and rows between modes sit near the bounds: each value must
    come out as with every tile computed. (Seeds 11 and 49 caught a real
    row's nearest fake row left out of every tile in an earlier draft.)
    """
    rng = np.random.default_rng(seed)
    dim, modes = int(rng.integers(4, 24)), int(rng.integers(4, 16))
    real = mixture(
        int(rng.integers(400, 1200)), dim, seed, modes=modes, keep=max(2, modes - 3), spread=float(rng.uniform(2, 6))
    )
    fake = mixture(
        int(rng.integers(400, 1200)), dim, seed + 100, modes=modes, spread=float(rng.uniform(2, 6)), shift=0.1
    )
    outliers = int(rng.integers(1, 20))
    real[:outliers] += rng.normal(0, 15, (outliers, dim)).astype(np.float32)
    fake[-outliers:] += rng.normal(0, 15, (outliers, dim)).astype(np.float32)
    options = {"k": (3,), "block_rows": int(rng.integers(100, 400))}
    seen = counted(monkeypatch)
    full = run(real, fake, prune=False, **options)
    full_pairs, seen["pairs"] = seen["pairs"], 0
    pruned = run(real, fake, **options)
    assert seen["pairs"] < full_pairs  # the pruned path ran
    for name in FIELDS + SAMPLE_FIELDS:
        assert np.array_equal(getattr(pruned, name), getattr(full, name)), name


def test_unclustered_data_falls_back_to_full_tiles(monkeypatch):
    rng = np.random.default_rng(5)
    real = rng.standard_normal((1500, 32)).astype(np.float32)
    fake = rng.standard_normal((1500, 32)).astype(np.float32)
    seen = counted(monkeypatch)
    full = run(real, fake, prune=False)
    full_pairs, seen["pairs"] = seen["pairs"], 0
    pruned = run(real, fake)
    assert seen["pairs"] <= full_pairs * 1.1  # nothing to skip: about the same work, no waste
    assert pruned.by_k == full.by_k


def test_grouped_tiles_must_pay_for_themselves(monkeypatch):
    """groups_pay: a quarter of the pairs skipped, and the work skipped (pairs x (dim + PAIR_DIMS))
    at least TILE_COST per tile added."""
    monkeypatch.setattr(tiles, "TILE_COST", TILE_COST)
    pairs = 4096 * 4096
    four_tiles = [(0, np.arange(1024), np.arange(3072))] * 4  # 3/4 of the pairs computed
    skipped = pairs - 4 * 1024 * 3072
    assert skipped == pairs // 4
    enough = int(skipped * (64 + tiles.PAIR_DIMS) // TILE_COST)
    assert tiles.groups_pay(four_tiles, pairs, 64, enough)
    assert not tiles.groups_pay(four_tiles, pairs, 64, enough + 1)
    assert not tiles.groups_pay(four_tiles + [(0, np.arange(1), np.arange(1))], pairs, 64, 0)  # under a quarter
    assert tiles.groups_pay([], pairs, 64, -3)  # every pair skipped in fewer tiles
    # Tiles that take per-sample values cost more each: the same skip pays for fewer of them.
    assert SAMPLES_TILE_COST > TILE_COST
    assert not tiles.groups_pay(four_tiles, pairs, 64, enough, SAMPLES_TILE_COST)
    assert tiles.groups_pay(four_tiles, pairs, 64, int(skipped * (64 + tiles.PAIR_DIMS) // SAMPLES_TILE_COST),
                            SAMPLES_TILE_COST)


@pytest.mark.parametrize("samples", [False, True])
def test_the_cross_pass_weighs_its_tiles_at_the_samples_cost_when_it_takes_per_sample_values(
    clustered, samples, monkeypatch
):
    """Groups that would pay at TILE_COST (0 here) but not at SAMPLES_TILE_COST (infinite here): the
    cross pass runs plain panels, one tile per block pair, exactly when per-sample values are on."""
    monkeypatch.setattr(tiles, "SAMPLES_TILE_COST", float("inf"))
    calls = []
    original = cross.tile
    monkeypatch.setattr(cross, "tile", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    real, fake = clustered
    got = run(real, fake, samples=samples, standard_errors=False, block_rows=1024, panel_rows=1024)
    assert (len(calls) == 3 * 2) == samples  # 2,400 / 1,024 and 2,000 / 1,024 blocks, rounded up
    full = run(real, fake, samples=samples, standard_errors=False, prune=False)
    for name in FIELDS + (SAMPLE_FIELDS if samples else ()):
        assert np.array_equal(getattr(got, name), getattr(full, name)), name


def test_the_pilot_guesses_what_the_full_search_can_only_improve_on(clustered):
    """pilot(): each fake row's least squared distance to evenly spaced real rows and its best squared
    realism ratio among them, each real row's least to evenly spaced fake rows; float64 brute force
    over the same rows (float32 tiles: relative error under 1e-4 here), and never better than over all rows."""
    real, fake = (rows[:700] for rows in clustered)
    centre = real.mean(axis=0)
    a, b = prepare_block(fake, 0, centre, "euclidean"), prepare_block(real, 0, centre, "euclidean")
    radius = np.where(np.arange(700) % 3 == 0, 0.0, np.linspace(0.5, 3.0, 700))  # every third not eligible
    near_f, ratio, near_r = pilot(a, b, b.right(), radius)
    d2 = ((fake.astype(np.float64)[:, None, :] - real.astype(np.float64)[None, :, :]) ** 2).sum(axis=2)
    some = np.linspace(0, 699, PILOT_ROWS).astype(np.int64)
    assert np.allclose(near_f, d2[:, some].min(axis=1), rtol=1e-4)
    assert np.allclose(near_r, d2[some].min(axis=0), rtol=1e-4)
    assert np.allclose(ratio, (radius[some] ** 2 / d2[:, some]).max(axis=1), rtol=1e-4)
    assert (near_f >= d2.min(axis=1) * (1 - 1e-4)).all() and (near_r >= d2.min(axis=0) * (1 - 1e-4)).all()
    assert (ratio <= (radius**2 / d2).max(axis=1) * (1 + 1e-4)).all()
    assert (near_f > d2.min(axis=1) * 1.01).mean() > 0.5  # a guess: looser than the full search for most rows


def test_small_blocks_of_many_groups_run_as_panels(clustered, monkeypatch):
    """64-row blocks cut into up to 16 groups each would run tiles of a few rows, each costing more
    than the pairs it skips: with the product's TILE_COST every block pair is one plain tile, and
    every value is what the grouped tiles and the unpruned run give."""
    real, fake = clustered[0][:700], clustered[1][:600]
    options = dict(block_rows=64, panel_rows=64, samples=False, standard_errors=False)
    calls = []
    original = cross.tile
    monkeypatch.setattr(cross, "tile", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    grouped = run(real, fake, **options)
    assert len(calls) > 2 * 11 * 10  # TILE_COST 0 (the fixture): more tiles than block pairs
    monkeypatch.setattr(tiles, "TILE_COST", TILE_COST)
    calls.clear()
    paneled = run(real, fake, **options)
    assert len(calls) == 11 * 10  # 600 / 64 and 700 / 64 blocks, rounded up: one tile per block pair
    full = run(real, fake, prune=False, **options)
    for name in FIELDS:
        assert np.array_equal(getattr(paneled, name), getattr(grouped, name)), name
        assert np.array_equal(getattr(paneled, name), getattr(full, name)), name


def test_group_and_row_lower_bounds_never_exceed_true_distances():
    """Near-duplicates far from the origin: the bounds must hold to the last bit."""
    rng = np.random.default_rng(3)
    base = 50.0 + rng.standard_normal((1, 16))
    rows = base + 1e-3 * rng.standard_normal((600, 16)) + np.repeat(rng.normal(0, 0.01, (6, 16)), 100, axis=0)
    rows = rows.astype(np.float32)
    centre = rows.mean(axis=0).astype(np.float32)
    sample = rows.astype(np.float64) - centre
    partition = groups.partition_of(np.cov(sample, rowvar=False), sample, seed=0)
    a = prepare_block(rows[:300], 0, centre, "euclidean")
    b = prepare_block(rows[300:], 300, centre, "euclidean")
    exact = rows.astype(np.float64)
    diff = exact[:300][:, None, :] - exact[300:][None, :, :]
    true = np.sqrt((diff * diff).sum(axis=2))
    ga, gb = partition.groups(a, 64), partition.groups(b, 64)
    bounds = ga.lower_bounds(gb)
    for i, rows_a in enumerate(ga.index):
        for j, rows_b in enumerate(gb.index):
            assert bounds[i, j] <= true[np.ix_(rows_a, rows_b)].min()
    # Rows against groups of one row: with 16 axes in 16 dims the bound is the
    # distance itself less the rounding margins, so a margin too small shows.
    single = partition.groups(b, 1)
    row_bounds = ga.row_bounds(single)
    assert row_bounds.max() > 0.5 * true.max()
    for j, (row,) in enumerate(single.index):
        assert (row_bounds[:, j] <= true[:, row]).all()


@pytest.mark.slow
def test_cli_no_prune_gives_the_same_metrics(clustered, tmp_path, write_zarr):
    from conftest import cli_evaluate

    real, fake = clustered
    paths = [write_zarr("real.zarr", real), write_zarr("fake.zarr", fake)]
    written = {}
    for flag in ("--prune", "--no-prune"):
        out = tmp_path / flag.strip("-")
        result = cli_evaluate(*paths, out, "--no-plots", "--block-rows", "512", flag)
        assert result.exit_code == 0, result.output
        written[flag] = json.loads((out / "metrics.json").read_text())
    assert written["--prune"]["params"]["prune"] is True
    assert written["--no-prune"]["params"]["prune"] is False
    assert written["--prune"]["by_k"] == written["--no-prune"]["by_k"]
