"""The bfloat16 screening path: its error bound, what it settles, and exact results.

The bf16 tile is emulated here (operands rounded to bfloat16, then a float32
GEMM: the product oneDNN computes, with the same bound), so every check runs
on any CPU; the oneDNN tile is checked against the same bound where it loads.
The oracle is a float64 brute force of the float32 centred rows.
"""

import json
import threading

import ml_dtypes
import numpy as np
import pytest

import largeemb
import oracle
from conftest import mixture, same_metrics
from largeemb.errors import InputError
from largeemb.io import onednn
from largeemb.kernels import bf16, screen
from largeemb.kernels.bf16 import Rounded
from largeemb.kernels.distance import prepare_block, sqdist32, sqdist_error_scale
from largeemb.kernels.screen import ScreenedTiles, below, bf16_error_scale, bf16_tile, rounding_terms
from largeemb.passes.context import WITH_PART_RADII, resolve_precision, tile_arithmetic


@pytest.fixture(autouse=True)
def screen_every_tile(monkeypatch):
    """The small tiles of these tests are screened too (by default, tiles under MIN_SCREEN_ENTRIES stay float32)."""
    monkeypatch.setattr(screen, "MIN_SCREEN_ENTRIES", 0)


def _adversarial(name: str, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a rows, b rows, centre) that stress one part of the bound."""
    if name == "gaussian":
        a, b = rng.standard_normal((300, 512)), rng.standard_normal((200, 512))
        return a, b, np.zeros(512)
    if name == "near_copies_far_from_centre":  # huge norms, tiny distances: cancellation
        base = 1e3 + rng.standard_normal((1, 256))
        a = base + 1e-3 * rng.standard_normal((200, 256))
        return a, base + 1e-3 * rng.standard_normal((150, 256)), np.zeros(256)
    if name == "ties":
        a = np.repeat(rng.standard_normal((40, 64)), 5, axis=0)
        return a, a[::-1].copy(), a.mean(axis=0)
    if name == "large_dim":
        return rng.standard_normal((64, 8192)), rng.standard_normal((48, 8192)), np.zeros(8192)
    if name == "worst_rounding":  # every coordinate rounds the same way by nearly u
        value = 1 + 3 * 2.0**-9 - 2.0**-20
        a = np.full((32, 1024), value) * rng.choice([1.0, 1.0 + 2.0**-7], (32, 1024))
        return a, -a, np.zeros(1024)
    if name == "mixed_magnitudes":
        scale = 10.0 ** rng.integers(-6, 4, 128)
        return rng.standard_normal((120, 128)) * scale, rng.standard_normal((90, 128)) * scale, np.zeros(128)
    raise ValueError(name)


ADVERSARIAL = ["gaussian", "near_copies_far_from_centre", "ties", "large_dim", "worst_rounding", "mixed_magnitudes"]


def _blocks(name, seed=0):
    a, b, centre = _adversarial(name, np.random.default_rng(seed))
    centre = centre.astype(np.float32)
    return tuple(prepare_block(rows.astype(np.float32), 0, centre, "euclidean") for rows in (a, b))


def _whole(block):
    """(block, every row): a tile operand that is its whole block (rounded once per block)."""
    return block, np.arange(block.rows)


def _exact(a, b) -> np.ndarray:
    """float64 squared distances of the float32 centred rows (what both tiles approximate)."""
    return oracle.pairwise(a.centred, b.centred) ** 2


def _bound(a, b, kappa) -> np.ndarray:
    return kappa * (a.sqnorm[:, None] + b.sqnorm[None, :])


def test_rounding_to_bfloat16_matches_ml_dtypes():
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [rng.standard_normal(10_000) * 10.0 ** rng.integers(-30, 30, 10_000), [0.0, -0.0, 1 + 2**-8, 1 + 3 * 2**-8]]
    )
    values = values.astype(np.float32)
    np.testing.assert_array_equal(bf16.to_bits(values), values.astype(ml_dtypes.bfloat16).view(np.uint16))
    np.testing.assert_array_equal(
        bf16.from_bits(bf16.to_bits(values)), values.astype(ml_dtypes.bfloat16).astype(np.float32)
    )
    hi, lo = bf16.split(np.abs(values).astype(np.float64))
    parts = bf16.from_bits(hi).astype(np.float64) + bf16.from_bits(lo)
    assert (np.abs(parts - np.abs(values)) <= 2.0**-16 * np.abs(values)).all()


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_bf16_bound_holds_on_adversarial_data(name):
    a, b = _blocks(name)
    error = np.abs(bf16_tile(bf16.emulated, a, b.right()).astype(np.float64) - _exact(a, b))
    bound = _bound(a, b, bf16_error_scale(a.dim))
    assert (error <= bound).all(), float((error / bound).max())
    if name == "worst_rounding":  # the bound is tight here: it is not vacuous
        assert (error / bound).max() > 0.3


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_per_row_rounding_terms_bound_every_product(name):
    """The screening's per-row bound on the operands' rounding (Cauchy-Schwarz), against float64 products."""
    a, b = _blocks(name)
    x, y = a.centred, b.centred
    x_rounded, y_rounded = Rounded.of(x), Rounded.of(y)
    x_bits, y_bits = x_rounded.bits, y_rounded.bits
    e_x, e_y = rounding_terms(x_rounded, y_rounded)
    exact = 2 * x.astype(np.float64) @ y.astype(np.float64).T
    rounded = 2 * bf16.from_bits(x_bits).astype(np.float64) @ bf16.from_bits(y_bits).astype(np.float64).T
    error = np.abs(exact - rounded)
    bound = e_x[:, None] + e_y[None, :]
    assert (error <= bound).all(), float((error / bound).max())
    worst = _bound(a, b, 2 * 2.0**-8 + 2.0**-16)  # the worst-case rounding term of bf16_error_scale
    if name in ("gaussian", "large_dim"):  # typical rows: far tighter than the worst case
        assert (bound < 0.6 * worst).all()


@pytest.mark.skipif(not onednn.available(), reason="oneDNN (the bf16 extra) or bf16 hardware missing")
@pytest.mark.parametrize("name", ADVERSARIAL)
def test_onednn_tile_within_the_same_bound(name):
    a, b = _blocks(name)
    error = np.abs(bf16_tile(onednn.onednn(), a, b.right()).astype(np.float64) - _exact(a, b))
    assert (error <= _bound(a, b, bf16_error_scale(a.dim))).all()


@pytest.mark.skipif(not onednn.available(), reason="oneDNN (the bf16 extra) or bf16 hardware missing")
def test_onednn_from_concurrent_task_threads_gives_the_same_tile():
    """Task threads share the process: one primitive run from two threads at once once gave wrong products."""
    a, b = _blocks("gaussian")
    expected = bf16_tile(onednn.onednn(), a, b.right())
    diffs = []

    def work():
        for _ in range(6):
            diffs.append(float(np.abs(bf16_tile(onednn.onednn(), a, b.right()) - expected).max()))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert diffs and max(diffs) == 0.0


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_screened_tile_settles_only_entries_above_both_cuts(name):
    a, b = _blocks(name)
    d32 = sqdist32(a, b.right()).astype(np.float64)
    # Cuts at a low quantile of each row and column, as k-NN and ball cuts are.
    row_cut = np.quantile(d32, 0.01, axis=1).astype(np.float32)
    col_cut = np.quantile(d32, 0.01, axis=0).astype(np.float32)
    strategy = ScreenedTiles(bf16.emulated)
    screened = strategy.tile(a, b.right(), row_cut, col_cut, _whole(a), _whole(b))[0]
    # The rows rounded once per block (as unpruned passes have them) or per tile: one tile.
    per_tile_strategy = ScreenedTiles(bf16.emulated, round_blocks=False)
    per_tile = per_tile_strategy.tile(a, b.right(), row_cut, col_cut, _whole(a), _whole(b))[0]
    np.testing.assert_array_equal(per_tile, screened)
    counts = strategy.counts
    settled = np.isinf(screened)
    assert (d32[settled] >= np.maximum(row_cut[:, None], col_cut[None, :])[settled]).all()
    # The rest are float32 values within the float32 bound of the exact ones.
    assert (
        np.abs(screened[~settled] - _exact(a, b)[~settled]) <= _bound(a, b, sqdist_error_scale(a.dim))[~settled]
    ).all()
    assert (counts.entries, counts.rechecked) == (d32.size, (~settled).sum())
    if name == "gaussian":  # well-separated distances: bf16 settles most entries
        assert settled.mean() > 0.5


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_selection_from_the_open_entries_equals_a_scan_of_the_tile(name):
    """What callers take from a screened tile's open-entry list is what a scan of the whole tile finds."""
    a, b = _blocks(name)
    d32 = sqdist32(a, b.right())
    row_cut = np.quantile(d32, 0.02, axis=1).astype(np.float32)
    col_cut = np.quantile(d32, 0.02, axis=0).astype(np.float32)
    dist, open_entries = ScreenedTiles(bf16.emulated).tile(a, b.right(), row_cut, col_cut, _whole(a), _whole(b))
    if open_entries is None:  # the whole tile fell back to float32
        return
    assert (np.diff(open_entries) > 0).all() and np.isfinite(dist.ravel()[open_entries]).all()
    assert np.isinf(np.delete(dist.ravel(), open_entries)).all()
    for cut, by_columns in ((row_cut, False), (col_cut, True), (row_cut * np.float32(0.99), False)):
        scan = np.flatnonzero(dist < (cut[None, :] if by_columns else cut[:, None]))
        np.testing.assert_array_equal(below(dist, open_entries, cut, by_columns), scan)


@pytest.fixture(scope="module")
def adversarial_sets():
    """Near-ties and exact copies far from the real set's centre, in a Gaussian background."""
    rng = np.random.default_rng(7)
    real = rng.standard_normal((1300, 48)).astype(np.float32)
    fake = rng.standard_normal((1100, 48)).astype(np.float32)
    fake[:200] = real[:200]  # copies
    fake[200:400] = real[200:400] + np.float32(1e-3) * rng.standard_normal((200, 48)).astype(np.float32)
    far = 40.0 + 1e-2 * rng.standard_normal((60, 48))
    real[-60:], fake[-60:] = far, far[::-1] + 1e-4 * rng.standard_normal((60, 48))
    real[1000:1010] = real[1010:1020]  # ties inside the real set
    return real, fake


@pytest.mark.slow
@pytest.mark.parametrize("block_rows", [256, 600, 1300])
def test_screening_changes_nothing_and_equals_brute_force(adversarial_sets, block_rows):
    real, fake = adversarial_sets
    options = dict(k=(3, 1), block_rows=block_rows, panel_rows=256, plots=False, companions=())
    base = largeemb.evaluate(real, fake, precision="float32", **options)
    got = largeemb.evaluate(real, fake, precision="bf16-emulated", **options)
    assert same_metrics(got.to_dict()["metrics"], base.to_dict()["metrics"])
    for field in ("real_radii", "fake_radii", "fake_counts", "real_covered", "real_recalled",
                  "fake_nearest_dist", "fake_nearest_real", "fake_realism", "real_nearest_dist"):
        np.testing.assert_array_equal(getattr(got, field), getattr(base, field), err_msg=field)
    np.testing.assert_array_equal(got.real_radii[:, 0], oracle.radii(real, 3))
    np.testing.assert_array_equal(got.fake_radii[:, 1], oracle.radii(fake, 1))
    expected = oracle.prdc(real, fake, 3)
    assert all(got.metrics[key] == expected[key] for key in expected)
    samples = oracle.per_sample(real, fake, 3)
    np.testing.assert_array_equal(got.fake_nearest_dist, samples["fake_nearest_dist"])
    np.testing.assert_array_equal(got.fake_counts[:, 0], samples["fake_ball_count"])
    screening = got.to_dict()["details"]["screening"]
    assert screening["precision"] == "bf16-emulated"
    assert screening["radii_real"]["entries"] > 0 and screening["radii_fake"]["entries"] > 0


@pytest.mark.parametrize("block_rows", [256, 700])
def test_screening_on_lattice_data_changes_nothing(block_rows):
    """Small-integer rows with many exact copies: float32 tiles are exact (kappa 0), ties everywhere."""
    rng = np.random.default_rng(11)
    real = rng.integers(-2, 3, (1500, 12)).astype(np.float32)
    fake = np.concatenate([real[:300], rng.integers(-2, 3, (900, 12))]).astype(np.float32)
    options = dict(k=(3, 5), block_rows=block_rows, panel_rows=256, plots=False, companions=())
    base = largeemb.evaluate(real, fake, precision="float32", **options)
    got = largeemb.evaluate(real, fake, precision="bf16-emulated", **options)
    for field in (
        "real_radii", "fake_radii", "fake_counts", "real_covered", "real_recalled", "fake_nearest_dist", "fake_realism",
    ):
        np.testing.assert_array_equal(getattr(got, field), getattr(base, field), err_msg=field)
    np.testing.assert_array_equal(got.real_radii[:, 0], oracle.radii(real, 3))
    np.testing.assert_array_equal(got.fake_radii[:, 1], oracle.radii(fake, 5))
    expected = oracle.prdc(real, fake, 3)
    assert all(got.metrics[key] == expected[key] for key in expected)
    assert got.to_dict()["details"]["screening"]["radii_real"]["entries"] > 0


def test_metrics_only_run_is_screened_and_shares_are_recorded(monkeypatch):
    # The radii's own screening: the standard errors' longer lists (8k + 24 rows) put the cuts of these
    # 1,000-row blocks so far out that most entries are rechecked (tests/test_standard_errors_engine.py).
    real, fake = mixture(2000, 32, 3, modes=1), mixture(1800, 32, 4, modes=1)
    options = dict(k=3, block_rows=1000, plots=False, samples=False, companions=(), standard_errors=False)
    got = largeemb.evaluate(real, fake, precision="bf16-emulated", **options)
    base = largeemb.evaluate(real, fake, precision="float32", **options)
    np.testing.assert_array_equal(got.fake_counts, base.fake_counts)
    np.testing.assert_array_equal(got.real_recalled, base.real_recalled)
    record = json.loads(json.dumps(got.to_dict()))
    assert record["params"]["precision"] == "bf16-emulated"
    screening = record["details"]["screening"]
    assert 0 < screening["cross"]["share"] < 0.1 and 0 < screening["radii_real"]["share"] < 0.1, screening
    expected = oracle.prdc(real, fake, 3)
    assert all(got.metrics[key] == expected[key] for key in expected)
    assert base.to_dict()["details"]["screening"] == {"precision": "float32"}
    with_ppr = largeemb.evaluate(
        real, fake, precision="bf16-emulated", **{**options, "companions": ("p_precision_recall",)}
    )
    assert with_ppr.to_dict()["details"]["screening"]["cross"]["entries"] == 0  # its wide radius: plain float32 tiles
    np.testing.assert_array_equal(with_ppr.fake_counts, base.fake_counts)


def test_unknown_precision_is_an_input_error():
    with pytest.raises(InputError, match="unknown precision"):
        largeemb.EvaluateConfig(precision="fp8")


def test_bf16_without_onednn_is_an_input_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setenv("LARGEEMB_DNNL", "/nonexistent/libdnnl.so.3")
    onednn.onednn.cache_clear()
    try:
        with pytest.raises(InputError, match="largeemb\\[bf16\\]"):
            resolve_precision("bf16")
        assert resolve_precision("auto") == "float32"
        assert resolve_precision("bf16-emulated") == "bf16-emulated"
    finally:
        onednn.onednn.cache_clear()


def test_auto_says_why_it_chose_its_precision(monkeypatch):
    """Where auto stays float32 it names the reason (no bf16 CPU, no oneDNN); where it screens, that it can."""
    onednn.onednn.cache_clear()
    try:
        monkeypatch.setattr(onednn, "cpu_has_bf16", lambda: False)
        assert onednn.auto_choice() == ("float32", "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX-BF16)")
        monkeypatch.setattr(onednn, "cpu_has_bf16", lambda: True)
        monkeypatch.setenv("LARGEEMB_DNNL", "/nonexistent/libdnnl.so.3")
        choice, why = onednn.auto_choice()
        assert choice == "float32" and "did not load from /nonexistent/libdnnl.so.3" in why
        assert tile_arithmetic("auto", choice) == {"precision": "float32", "auto": why}
        assert tile_arithmetic("float32", "float32") == {"precision": "float32"}
    finally:
        onednn.onednn.cache_clear()


def test_auto_stays_float32_with_part_radii_to_list(monkeypatch):
    """Where auto would screen, a run with standard errors (part radii at some k) multiplies in float32
    and says why; without them it screens."""
    monkeypatch.setattr(onednn, "auto_choice", lambda: ("bf16", "this CPU multiplies bfloat16 in hardware"))
    assert resolve_precision("auto") == "bf16"
    assert resolve_precision("auto", (5,)) == "float32"
    assert tile_arithmetic("auto", "float32", (5,)) == {"precision": "float32", "auto": WITH_PART_RADII}
    monkeypatch.setattr(onednn, "auto_choice", lambda: ("float32", "no bf16 here"))
    assert tile_arithmetic("auto", "float32", (5,)) == {"precision": "float32", "auto": "no bf16 here"}


@pytest.mark.slow
def test_screened_run_on_worker_processes_equals_the_in_process_float32_run(tmp_path):
    """Worker count and scheduler change nothing on the screened path (metrics only: the cross pass is screened too).

    Blocks of 2,100 rows give tiles of 2,048 x 2,048, screened at the default MIN_SCREEN_ENTRIES
    (the worker processes do not see this module's fixture)."""
    from conftest import zarr_store

    real, fake = mixture(4200, 16, 21, modes=1), mixture(4300, 16, 22, modes=1)
    fake[:300] = real[:300]  # copies
    paths = (
        zarr_store(tmp_path / "real.zarr", real, chunks=(700, 16)),
        zarr_store(tmp_path / "fake.zarr", fake, chunks=(700, 16)),
    )
    options = dict(k=(3, 1), block_rows=2100, plots=False, samples=False, companions=())
    local = largeemb.evaluate(real, fake, precision="float32", threads_per_worker=1, **options)
    remote = largeemb.evaluate(*paths, precision="bf16-emulated", workers=2, **options)
    for field in ("real_radii", "fake_radii", "fake_counts", "real_covered", "real_recalled"):
        np.testing.assert_array_equal(getattr(remote, field), getattr(local, field), err_msg=field)
    assert remote.metrics == local.metrics
    screening = remote.to_dict()["details"]["screening"]
    assert screening["cross"]["entries"] > 0 and screening["radii_real"]["entries"] > 0, screening


def test_small_tiles_stay_float32_by_default(monkeypatch):
    """At the module's own MIN_SCREEN_ENTRIES, a 1024 x 1024 tile (measured: no faster screened) stays
    float32, and a 2048 x 1025 one (just over 2^21 entries) is screened. Either fails if the default moves
    past the measurement (this file's fixture, which screens every tile, is undone first)."""
    monkeypatch.undo()
    rows = np.random.default_rng(3).standard_normal((2048, 16)).astype(np.float32)
    block = prepare_block(rows, 0, np.zeros(16, np.float32), "euclidean")
    right, everything = block.right(), np.full(2048, np.inf)
    small, part = ScreenedTiles(bf16.emulated), block.panel(0, 1024)
    dist, open_entries = small.tile(part, right[:1024], everything[:1024], everything[:1024])
    assert open_entries is None and small.counts.entries == 0
    np.testing.assert_array_equal(dist, sqdist32(part, right[:1024]))
    large = ScreenedTiles(bf16.emulated)
    large.tile(block, right[:1025], everything, everything[:1025])
    assert large.counts.entries == 2048 * 1025


@pytest.mark.skipif(not onednn.available(), reason="oneDNN (the bf16 extra) or bf16 hardware missing")
def test_a_task_thread_holds_onednn_openmp_at_one_thread():
    """Once oneDNN is loaded, its OpenMP runtime reports every core to threads that have not set it: tasks set it."""
    from largeemb.run import threads

    onednn.onednn()
    seen = {}
    worker = threading.Thread(target=lambda: seen.update(threads.thread_probe_task()))
    worker.start()
    worker.join()
    gomp = {path: n for path, n in seen["blas"].items() if "libgomp" in path}
    assert gomp and set(gomp.values()) == {1}, seen
