"""Per-sample values against a NumPy float64 brute force."""

import numpy as np
import pytest

import largeemb
import oracle
from conftest import mixture, same_metrics


def check(real, fake, k, **options):
    result = largeemb.evaluate(real, fake, k=k, **options)
    truth = oracle.per_sample(real, fake, k)
    np.testing.assert_array_equal(result.fake_counts[:, 0], truth["fake_ball_count"])
    np.testing.assert_array_equal(result.fake_nearest_real, truth["fake_nearest_real"])
    np.testing.assert_array_equal(result.fake_nearest_dist, truth["fake_nearest_dist"])
    np.testing.assert_array_equal(result.fake_realism, truth["fake_realism"])
    np.testing.assert_array_equal(result.real_radii[:, 0], truth["real_radius"])
    np.testing.assert_array_equal(result.real_covered[:, 0], truth["real_covered"])
    np.testing.assert_array_equal(result.real_nearest_dist, truth["real_nearest_dist"])
    return result


@pytest.mark.parametrize("block_rows", [300, 4096])
def test_per_sample_values_equal_brute_force(block_rows):
    real, fake = mixture(1500, 12, 1), mixture(1100, 12, 2, keep=4, shift=0.2)
    check(real, fake, 5, block_rows=block_rows)


def test_copies_and_duplicates_tie_to_lowest_index():
    """Fake rows copied from real rows (distance 0: realism inf), and a real row
    repeated, so that the nearest real row is a tie broken by the lowest index."""
    real = mixture(1200, 8, 3).astype(np.float64)
    real[700:710] = real[5]
    fake = np.concatenate([real[::4], mixture(600, 8, 4)])
    result = check(real, fake, 3, block_rows=256)
    assert np.isinf(result.fake_realism).any()


def test_far_from_origin_near_points():
    rng = np.random.default_rng(3)
    real = (50.0 + 1e-3 * rng.standard_normal((1200, 16))).astype(np.float32)
    fake = (50.0 + 1e-3 * rng.standard_normal((900, 16))).astype(np.float32)
    check(real, fake, 3, block_rows=500)


def test_means_reproduce_the_metrics():
    real, fake = mixture(1400, 10, 5), mixture(1000, 10, 6, keep=3)
    result = largeemb.evaluate(real, fake, k=(4, 2))
    for q, k in enumerate((4, 2)):
        metrics = result.by_k[k]
        assert np.mean(result.fake_counts[:, q] > 0) == metrics["precision"]
        assert np.mean(result.fake_counts[:, q]) / k == pytest.approx(metrics["density"], rel=1e-15)
        assert np.mean(result.real_covered[:, q]) == metrics["coverage"]
        assert np.mean(result.real_recalled[:, q]) == metrics["recall"]
    # coverage is also "nearest fake closer than the radius"
    assert np.mean(result.real_nearest_dist < result.real_radii[:, 0]) == result.by_k[4]["coverage"]


def test_standard_errors_given_the_real_set_are_iid_for_precision_and_density():
    """Given the real set, precision and density are means of per-fake-row values (the splits give the
    others, and both standard errors: tests/test_standard_errors_engine.py)."""
    real, fake = mixture(1400, 10, 5), mixture(1000, 10, 6, keep=3)
    result = largeemb.evaluate(real, fake, k=5)
    se = result.to_dict()["standard_errors_given_real"]
    flags = (result.fake_counts[:, 0] > 0).astype(float)
    assert se["5"]["precision"] == pytest.approx(np.std(flags, ddof=1) / np.sqrt(1000))
    assert se["5"]["density"] == pytest.approx(np.std(result.fake_counts[:, 0] / 5, ddof=1) / np.sqrt(1000))


def test_samples_can_be_left_out():
    real, fake = mixture(1100, 8, 1), mixture(1000, 8, 2)
    result = largeemb.evaluate(real, fake, k=3, samples=False)
    assert result.fake_realism is None
    with_samples = largeemb.evaluate(real, fake, k=3).metrics
    # Authenticity and the memorisation audit need each fake row's nearest real row:
    per_sample = ("authenticity", "memorization")
    assert all(key in with_samples and key not in result.metrics for key in per_sample)
    # P-precision/recall take log(d/R) from float32 values, which a screened tile
    # (--precision bf16: per-sample values off) recomputes one by one: 1e-8 (same_metrics).
    assert same_metrics(result.metrics, {key: v for key, v in with_samples.items() if key not in per_sample})
