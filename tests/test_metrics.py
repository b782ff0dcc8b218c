"""Metrics against independent oracles: the prdc package and a NumPy float64 brute force."""

import numpy as np
import pytest
from prdc import compute_prdc

import largeemb
import oracle
from conftest import mixture

KEYS = ("precision", "recall", "density", "coverage")


def dataset(name):
    rng = np.random.default_rng(7)
    if name == "gaussian":
        return rng.standard_normal((1500, 16)), rng.standard_normal((1500, 16)) + 0.2
    if name == "unequal":
        return mixture(2100, 24, 1).astype(np.float64), mixture(700, 24, 2, shift=0.1).astype(np.float64)
    if name == "mode_collapse":
        return mixture(1800, 12, 3).astype(np.float64), mixture(900, 12, 4, keep=1).astype(np.float64)
    if name == "duplicates":
        real = rng.standard_normal((1200, 8))
        real[600:900] = real[:300]  # 300 rows appear twice
        real[900:960] = real[0]  # and one row 62 times: its radius is 0
        return real, rng.standard_normal((1000, 8)) * 1.1
    if name == "float32_wide":
        real = rng.standard_normal((1300, 96)).astype(np.float32)
        return real, (rng.standard_normal((1100, 96)) * 1.05).astype(np.float32)
    raise KeyError(name)


@pytest.mark.parametrize(
    "name, k",
    [("gaussian", 5), ("unequal", 3), ("mode_collapse", 1), ("duplicates", 5), ("duplicates", 1), ("float32_wide", 3)],
)
def test_matches_prdc_and_float64_brute_force(name, k, capsys):
    real, fake = dataset(name)
    got = largeemb.evaluate(real, fake, k=k, block_rows=256).metrics
    truth = oracle.prdc(real, fake, k)
    # Exactly the float64 brute force: memberships are decided in float64.
    assert {key: got[key] for key in KEYS} == pytest.approx(truth, rel=1e-12, abs=1e-12)
    reference = compute_prdc(np.asarray(real, np.float64), np.asarray(fake, np.float64), k)
    for key in KEYS:
        # prdc measures distances with sklearn's |x|^2+|y|^2-2xy formula; on data
        # without ties it agrees with the brute force. Where it breaks a tie
        # differently (duplicate rows give distances of ~1e-8 instead of 0), the
        # float64 brute force is the right answer, and that is what we match above.
        if abs(reference[key] - truth[key]) <= 1e-12:
            assert got[key] == pytest.approx(reference[key], rel=1e-12, abs=1e-12), key


@pytest.mark.slow
def test_prdc_agrees_on_every_tie_free_dataset():
    """The prdc comparison above is not vacuous: on tie-free data prdc equals the oracle."""
    for name, k in (("gaussian", 5), ("unequal", 3), ("mode_collapse", 1), ("float32_wide", 3)):
        real, fake = dataset(name)
        reference = compute_prdc(np.asarray(real, np.float64), np.asarray(fake, np.float64), k)
        truth = oracle.prdc(real, fake, k)
        assert {key: float(reference[key]) for key in KEYS} == pytest.approx(truth, rel=1e-12, abs=1e-12), name


def test_frechet_distance_matches_float64_oracle():
    real, fake = dataset("unequal")
    got = largeemb.evaluate(real, fake, k=3).metrics["fd"]
    assert got == pytest.approx(oracle.frechet(real, fake), rel=1e-6)


def test_set_against_itself_scores_one():
    real = mixture(1500, 10, 5)
    metrics = largeemb.evaluate(real, real, k=4, block_rows=300).metrics
    assert {key: metrics[key] for key in KEYS} == {key: 1.0 for key in KEYS}
    assert metrics["fd"] == pytest.approx(0.0, abs=1e-9)


def test_far_apart_sets_score_zero():
    real = mixture(1200, 10, 5)
    metrics = largeemb.evaluate(real, real + 1000.0, k=5).metrics
    assert {key: metrics[key] for key in KEYS} == {key: 0.0 for key in KEYS}


def test_precision_of_a_b_is_recall_of_b_a():
    a, b = mixture(1400, 12, 1), mixture(1100, 12, 2, keep=3, shift=0.3)
    ab = largeemb.evaluate(a, b, k=5).metrics
    ba = largeemb.evaluate(b, a, k=5).metrics
    assert ab["precision"] == ba["recall"]
    assert ab["recall"] == ba["precision"]


def test_mode_collapsed_fake_has_high_precision_low_recall():
    """Pins the roles (torch-fidelity once shipped precision and recall swapped)."""
    real = mixture(3000, 16, 1, modes=10)
    fake = mixture(3000, 16, 2, modes=10, keep=1)  # every fake row from one real mode
    metrics = largeemb.evaluate(real, fake, k=5).metrics
    assert metrics["precision"] > 0.8
    assert metrics["recall"] < 0.3
    assert metrics["coverage"] < 0.3


def test_inclusive_counts_boundary_points():
    real, fake = dataset("duplicates")
    got = largeemb.evaluate(real, fake, k=5, inclusive=True).metrics
    assert {key: got[key] for key in KEYS} == pytest.approx(oracle.prdc(real, fake, 5, inclusive=True), rel=1e-12)


def test_fake_rows_copied_from_real_hit_ball_boundaries_exactly():
    """A fake row equal to a real row's k-th neighbour lies exactly on its ball:
    strict '<' leaves it out, '<=' counts it, as the float64 brute force says."""
    real = mixture(1500, 16, 3).astype(np.float64)
    fake = np.concatenate([real[::3], mixture(500, 16, 4)])
    for inclusive in (False, True):
        got = largeemb.evaluate(real, fake, k=3, inclusive=inclusive).metrics
        assert {key: got[key] for key in KEYS} == pytest.approx(
            oracle.prdc(real, fake, 3, inclusive=inclusive), rel=1e-12
        )


def test_cosine_metric_matches_oracle():
    real, fake = mixture(1200, 16, 1), mixture(900, 16, 2, shift=0.5)
    got = largeemb.evaluate(real, fake, k=5, metric="cosine").metrics
    assert {key: got[key] for key in KEYS} == pytest.approx(oracle.prdc(real, fake, 5, metric="cosine"), rel=1e-12)


def test_near_points_far_from_origin_are_exact():
    """rows ~ 50 + 1e-3 noise: naive float32 |x|^2+|y|^2-2xy flips memberships."""
    rng = np.random.default_rng(3)
    real = (50.0 + 1e-3 * rng.standard_normal((1500, 32))).astype(np.float32)
    fake = (50.0 + 1e-3 * rng.standard_normal((1200, 32)) * 1.02).astype(np.float32)
    got = largeemb.evaluate(real, fake, k=5, block_rows=500).metrics
    assert {key: got[key] for key in KEYS} == pytest.approx(oracle.prdc(real, fake, 5), rel=1e-12)
    r32, f32 = real, fake  # the naive float32 formula really does get this wrong
    naive = np.sqrt(np.maximum(0, (f32 * f32).sum(1)[:, None] + (r32 * r32).sum(1)[None] - 2 * f32 @ r32.T))
    naive_precision = (naive < oracle.radii(real, 5)[None]).any(1).mean()
    assert naive_precision != got["precision"]


def test_float64_fallback_keeps_radii_exact(monkeypatch):
    """With no spare candidates most rows cannot be proven in float32 and take
    the float64 fallback; the answer must not change."""
    from largeemb.kernels import neighbours

    monkeypatch.setattr(neighbours, "MARGIN", 0)
    monkeypatch.setattr(neighbours, "BAND", 0.0)
    real, fake = mixture(900, 8, 1), mixture(800, 8, 2)
    # the standard errors' longer lists would leave no spare-less row
    result = largeemb.evaluate(real, fake, k=3, block_rows=200, standard_errors=False)
    assert result.real["float64_fallback_rows"] > 0
    np.testing.assert_array_equal(result.real_radii[:, 0], oracle.radii(real, 3))
    assert {key: result.metrics[key] for key in KEYS} == pytest.approx(oracle.prdc(real, fake, 3), rel=1e-12)


def test_several_k_match_single_k_runs():
    real, fake = mixture(1300, 12, 1), mixture(1000, 12, 2, shift=0.2)
    sweep = largeemb.evaluate(real, fake, k=(3, 1, 7))
    assert sweep.params["k"] == [3, 1, 7]
    for k in (3, 1, 7):
        single = largeemb.evaluate(real, fake, k=k).metrics
        assert sweep.by_k[k] == {key: single[key] for key in sweep.by_k[k]} and set(KEYS) <= set(sweep.by_k[k])
    assert sweep.metrics == largeemb.evaluate(real, fake, k=3).metrics


def test_radii_agree_with_faiss_knn_up_to_float32():
    """The symmetric tiled search finds the same neighbours faiss.knn does; the
    radii then differ only by faiss's float32 rounding (ours are float64 exact)."""
    import faiss

    real = mixture(2500, 32, 9)
    result = largeemb.evaluate(real, mixture(1000, 32, 10), k=(5, 2), block_rows=400)
    dist, _ = faiss.knn(real, real, 6)
    np.testing.assert_allclose(result.real_radii[:, 0], np.sqrt(np.maximum(dist[:, 5], 0)), rtol=2e-5)
    np.testing.assert_allclose(result.real_radii[:, 1], np.sqrt(np.maximum(dist[:, 2], 0)), rtol=2e-5)
