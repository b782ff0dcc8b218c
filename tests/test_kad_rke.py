"""KAD and the RKE mode counts equal their authors' formulas on every pair, whatever the block size.

Oracles, ported to NumPy float64 below:
- KAD: YoonjinXD/kadtk ``kadtk/kad.py`` at commit 8bda71d87f55cc7f8a8e38d3d4cfbae902ff78b1
  (``calc_kernel_audio_distance`` with x the baseline/real set, y the eval/fake set, and
  ``median_pairwise_distance(y)``: ``torch.median(torch.pdist(y))``, torch's lower median);
- RKE: mjalali/renyi-kernel-entropy ``rke_score/rke.py`` at commit e97951b99f6b7270b80a486251e94f2809a4039c
  (``compute_rke_mc_frobenius_norm``: the mean of k² over every (i, j), diagonal included; the mode
  count is its inverse, as ``compute_rke_mc`` returns 1 / mean);
plus a float64 brute force from pairwise differences for each.
"""

import numpy as np
import pytest

import largeemb
from conftest import mixture
from largeemb.errors import InputError
from largeemb.passes import pairs as pairs_pass


def _sq(a, b):
    """Squared distances from differences, float64 (the brute force)."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def kadtk_median(y):
    """kadtk ``median_pairwise_distance(y)`` (no subsample): torch.median of torch.pdist, the lower median."""
    d = np.sqrt(_sq(y, y)[np.triu_indices(len(y), 1)])
    return np.sort(d)[(len(d) - 1) // 2]


def kadtk_kad(x, y, bandwidth=None):
    """kadtk ``calc_kernel_audio_distance``, Gaussian kernel, no cache, in NumPy float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if bandwidth is None:
        bandwidth = kadtk_median(y)
    m, n = len(x), len(y)
    gamma = 1 / (2 * bandwidth**2 + 1e-8)
    xx, yy, xy = x @ x.T, y @ y.T, x @ y.T
    x_sq, y_sq = np.diag(xx), np.diag(yy)
    k_xx = np.exp(-gamma * (x_sq[:, None] + x_sq[None, :] - 2 * xx))
    k_xx = k_xx - np.diag(np.diag(k_xx))
    k_yy = np.exp(-gamma * (y_sq[:, None] + y_sq[None, :] - 2 * yy))
    k_yy = k_yy - np.diag(np.diag(k_yy))
    k_xy = np.exp(-gamma * (x_sq[:, None] + y_sq[None, :] - 2 * xy))
    return 100 * (k_xx.sum() / (m * (m - 1)) + k_yy.sum() / (n * (n - 1)) - 2 * k_xy.mean())


def brute_kad(x, y, sigma):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    gamma = 1 / (2 * sigma**2 + 1e-8)
    k_xx, k_yy, k_xy = np.exp(-gamma * _sq(x, x)), np.exp(-gamma * _sq(y, y)), np.exp(-gamma * _sq(x, y))
    m, n = len(x), len(y)
    return 100 * ((k_xx.sum() - m) / (m * (m - 1)) + (k_yy.sum() - n) / (n * (n - 1)) - 2 * k_xy.mean())


def authors_rke(x, sigma):
    """renyi-kernel-entropy: 1 / (Σ_{i,j} exp(−0.5‖x_i − x_j‖²/σ²)² / n²), vectorised, float64."""
    x = np.asarray(x, np.float64)
    k = np.exp(-0.5 * _sq(x, x) / sigma**2)
    return 1 / ((k**2).sum() / len(x) ** 2)


def _sets():
    rng = np.random.default_rng(5)
    lattice = np.round(rng.standard_normal((500, 5)) * 2)  # many exact duplicates and tied distances
    return {
        "gaussian": (rng.standard_normal((520, 10)) * 3, rng.standard_normal((480, 10)) * 3 + 0.7),
        "mixture": (mixture(520, 10, 1, spread=8), mixture(470, 10, 2, keep=5, spread=8)),
        "duplicates": (lattice, np.concatenate([lattice[:250], np.round(rng.standard_normal((230, 5)) * 2)])),
    }


@pytest.mark.parametrize("name", ["gaussian", "mixture", "duplicates"])
def test_kad_and_rke_equal_the_authors_formulas_for_any_block_size(name):
    real, fake = (np.asarray(s, np.float32) for s in _sets()[name])
    r, f = real.astype(np.float64), fake.astype(np.float64)
    sigma = kadtk_median(f)
    expected = kadtk_kad(r, f)
    assert expected == pytest.approx(brute_kad(r, f, sigma), rel=1e-9, abs=1e-12)
    rke_sigma = np.sqrt(2 * np.trace(np.cov(r.T))) / 2
    results = {}
    for block_rows in (97, 256, 4096):
        result = largeemb.evaluate(
            real, fake, k=3, companions=("kad", "rke"), samples=False, plots=False, block_rows=block_rows
        )
        out = result.to_dict()
        # The median is picked among pairwise differences' distances: exactly the oracle's value.
        assert out["details"]["kad"]["bandwidth"] == pytest.approx(sigma, rel=1e-14), block_rows
        assert result.metrics["kad"] == pytest.approx(expected, rel=1e-9, abs=1e-12), block_rows
        assert out["details"]["rke"]["bandwidth"] == pytest.approx(rke_sigma, rel=1e-12)
        assert result.metrics["rke_real"] == pytest.approx(authors_rke(r, rke_sigma), rel=1e-10)
        assert result.metrics["rke_fake"] == pytest.approx(authors_rke(f, rke_sigma), rel=1e-10)
        results[block_rows] = result.metrics
    for key in ("kad", "rke_real", "rke_fake"):
        assert len({round(m[key], 10) for m in results.values()}) == 1, key


def test_the_median_is_exact_when_selection_needs_many_passes_and_widened_windows(monkeypatch):
    """Few bins and tiny windows: several counting passes, and windows the GEMM's rounding cannot decide
    (the lattice's tied distances sit on bin edges) widen until the median is proven."""
    monkeypatch.setattr(pairs_pass, "BINS", 4)
    monkeypatch.setattr(pairs_pass, "WINDOW_PAIRS", 3)
    for real, fake in _sets().values():
        result = largeemb.evaluate(
            np.float32(real), np.float32(fake), k=3, companions=("kad",), samples=False, plots=False, block_rows=128
        )
        assert result.to_dict()["details"]["kad"]["bandwidth"] == pytest.approx(
            kadtk_median(np.float32(fake).astype(np.float64)), rel=1e-14
        )


def test_given_bandwidths_are_used_and_recorded_and_bad_ones_refused():
    real, fake = _sets()["gaussian"]
    result = largeemb.evaluate(
        real, fake, k=3, companions=("kad", "rke"), samples=False, plots=False, kad_bandwidth=2.5, rke_bandwidth=4.0
    )
    details = result.to_dict()["details"]
    assert details["kad"]["bandwidth"] == 2.5 and details["rke"]["bandwidth"] == 4.0
    assert details["kad"]["bandwidth_from"] == "--kad-bandwidth"
    assert result.metrics["kad"] == pytest.approx(kadtk_kad(real, fake, 2.5), rel=1e-9)
    assert result.metrics["rke_fake"] == pytest.approx(authors_rke(fake, 4.0), rel=1e-10)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1.5", True):
        with pytest.raises(InputError, match="kad_bandwidth must be a positive number"):
            largeemb.evaluate(real, fake, k=3, companions=("kad",), plots=False, kad_bandwidth=bad)


def test_identical_sets_and_mode_counts_of_separated_modes():
    """KAD of a set against itself: with S = Σ k over all n² pairs, 100 · 2(S − n²) / (n²(n − 1)), which lies in
    [−200/(n − 1), 0]. RKE of 6 tight, far-apart modes of equal size, with a bandwidth between the mode scale
    and the gaps, is about 6."""
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((6, 8)) * 100
    rows = (centres[np.arange(600) % 6] + rng.standard_normal((600, 8)) * 0.01).astype(np.float32)
    result = largeemb.evaluate(
        rows, rows.copy(), k=3, companions=("kad", "rke"), samples=False, plots=False, rke_bandwidth=1.0
    )
    assert -200 / 599 <= result.metrics["kad"] <= 0
    # Within a mode E d² = 2 · 8 · 0.01² = 0.0016, so k² ≈ e^−0.0016 and the count ≈ 6 · 1.0016; between modes
    # k² < e^−100: the count lies within 0.5% of 6.
    assert result.metrics["rke_real"] == pytest.approx(6.0, rel=5e-3)


@pytest.mark.slow
def test_kernel_companions_are_the_same_on_two_worker_processes(write_zarr):
    """KAD, RKE, MiFID, CMMD (every-pair sums) and the memorisation audit (per-sample values)."""
    real, fake = (np.float32(s) for s in _sets()["duplicates"])
    paths = write_zarr("real.zarr", real, chunks=(120, 5)), write_zarr("fake.zarr", fake, chunks=(120, 5))
    companions = ("kad", "rke", "mifid", "cmmd", "memorization")
    options = dict(k=3, plots=False, block_rows=128, companions=companions)
    local = largeemb.evaluate(*paths, **options)
    remote = largeemb.evaluate(*paths, workers=2, threads_per_worker=1, **options)
    for key in ("kad", "rke_real", "rke_fake", "mifid", "cmmd", "memorization"):
        assert remote.metrics[key] == pytest.approx(local.metrics[key], rel=1e-12, abs=1e-15), key
    assert remote.to_dict()["details"]["kad"] == local.to_dict()["details"]["kad"]
