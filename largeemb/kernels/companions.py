"""The companion metrics' arithmetic: Vendi score, FD∞, KID (full U-statistic
and the subset estimator), F-scores. Arrays in, numbers out.

Where each comes from:
- Vendi (Friedman & Dieng 2023), cosine kernel: the non-zero eigenvalues of
  the n × n kernel matrix K/n = U Uᵀ/n equal those of the d × d matrix Uᵀ U/n,
  the second moment of the unit rows, streamed in the moments pass.
- FD∞ (Chong & Forsyth 2020): FD of the whole real set against nested seeded
  subsamples of the fake set at dgm-eval's 15 sizes, extrapolated linearly in
  1/N to N = ∞; each subsample's moments are sums of shells from the same pass.
- KID (Bińkowski et al. 2018): unbiased MMD² with k(x, y) = (x·y/d + 1)³, from
  per-row kernel sums over every pair (:mod:`largeemb.kernels.kid`).
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels.distance import unit_rows
from largeemb.kernels.moments import covariance_factor, frechet_distance

#: Subsample sizes of FD∞, as dgm-eval chooses them: 15 points from
#: min(5000, max(m // 10, 2)) to m.
FD_INF_POINTS = 15
#: Salt of the FD∞ subsample order, so its stream differs from other seeded draws.
FD_INF_SALT = 0xFD1F
#: torch-fidelity's default seed of the KID subset draws.
KID_SUBSET_SEED = 2020
#: P-precision / P-recall (Park & Kim 2023), the authors' defaults: the common
#: radius is PPR_A times the mean k-NN radius at k = PPR_K.
PPR_A, PPR_K = 1.2, 4


def vendi_score(unit_s2: np.ndarray, count: int) -> float:
    """exp(Shannon entropy) of the eigenvalues of K/n for the cosine kernel (q = 1)."""
    values = np.linalg.eigvalsh((unit_s2 + unit_s2.T) / (2 * count))
    values = values[values > 0]
    return float(np.exp(-(values * np.log(values)).sum()))


def vendi_score_of_rows(rows: np.ndarray, score=vendi_score) -> float:
    """As :func:`vendi_score`, from the rows themselves: the n × n K/n = U Uᵀ/n (where n < dim, O(n²·dim)).

    ``score``: :func:`vendi_score`, or the same held to one BLAS thread by the caller
    (:func:`largeemb.run.threads.one_blas_thread`): the eigenvalues alone, not the product.
    """
    unit = unit_rows(rows)
    return score(unit @ unit.T, len(unit))  # U Uᵀ and Uᵀ U share their non-zero eigenvalues


def subsample_sizes(rows: int) -> np.ndarray:
    sizes = np.linspace(min(5000, max(rows // 10, 2)), rows, FD_INF_POINTS).astype(np.int64)
    return np.unique(sizes)


def subsample_shells(rows: int, seed: int) -> tuple[np.ndarray, int]:
    """Each row's shell: the nested subsample of size ``sizes[j]`` is every row of shells 0..j.

    A seeded permutation orders the rows; the subsample of size N is its
    first N rows, so the subsamples are nested and depend only on (rows, seed).
    """
    sizes = subsample_sizes(rows)
    rank = np.empty(rows, np.int64)
    rank[np.random.default_rng([seed, FD_INF_SALT]).permutation(rows)] = np.arange(rows)
    return np.searchsorted(sizes, rank, side="right").astype(np.int8), len(sizes)


def fd_infinity(real_mean, real_cov, nested) -> tuple[float, list[int], list[float]]:
    """FD∞ and the FD of each nested subsample: a least-squares line of FD against 1/N, at 1/N = 0.

    ``nested`` is :meth:`largeemb.kernels.moments.Moments.nested` of the fake set.
    """
    sizes = [n for n, _, _ in nested]
    from concurrent.futures import ThreadPoolExecutor

    factor = covariance_factor(real_cov)
    with ThreadPoolExecutor(2) as pool:  # LAPACK releases the GIL: two eigenproblems at a time on two cores
        fds = list(pool.map(lambda point: frechet_distance(real_mean, real_cov, point[1], point[2], factor), nested))
    if len(sizes) < 2:
        return float(fds[-1]), sizes, fds
    slope_intercept = np.polyfit(1.0 / np.asarray(sizes, np.float64), fds, deg=1)
    return float(slope_intercept[1]), sizes, fds


def mmd2_unbiased(xx_sum: float, yy_sum: float, xy_sum: float, n: int, m: int) -> float:
    """Unbiased MMD² from the kernel sums over i ≠ i' (xx), j ≠ j' (yy) and all (i, j) (xy)."""
    return xx_sum / (n * (n - 1)) + yy_sum / (m * (m - 1)) - 2.0 * xy_sum / (n * m)


def kid_from_row_sums(real_self, real_cross, fake_self, fake_cross) -> tuple[float, float]:
    """KID (unbiased MMD²) over every pair, and its standard error.

    ``real_self[i]`` = Σ_{i'≠i} k(x_i, x_i'), ``real_cross[i]`` = Σ_j k(x_i, y_j);
    likewise for the fake rows. The standard error is the first-order
    (Hoeffding) one of a two-sample U-statistic: each row's own term,
    h(x_i) = real_self[i]/(n-1) - real_cross[i]/m, varies around its mean, and
    var(MMD²) ≈ 4 var(h(x))/n + 4 var(h(y))/m.
    """
    n, m = len(real_self), len(fake_self)
    value = mmd2_unbiased(real_self.sum(), fake_self.sum(), real_cross.sum(), n, m)
    h_real = real_self / (n - 1) - real_cross / m
    h_fake = fake_self / (m - 1) - fake_cross / n
    se = 2.0 * np.sqrt(np.var(h_real, ddof=1) / n + np.var(h_fake, ddof=1) / m)
    return float(value), float(se)


def polynomial_kernel(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """(a·b/d + 1)³ in float64."""
    return (np.asarray(a, np.float64) @ np.asarray(b, np.float64).T / dim + 1.0) ** 3


def kid_subset_draws(fake_rows: int, real_rows: int, subsets: int, size: int, seed: int = KID_SUBSET_SEED):
    """The rows of each subset, drawn as torch-fidelity draws them (fake first: its ``input1``)."""
    rng = np.random.RandomState(seed)
    draws = []
    for _ in range(subsets):
        fake = rng.choice(fake_rows, size, replace=False)
        real = rng.choice(real_rows, size, replace=False)
        draws.append((fake, real))
    return draws


def subset_mmd2(fake: np.ndarray, real: np.ndarray) -> float:
    """Unbiased MMD² of one subset pair, as torch-fidelity's ``mmd2`` computes it."""
    dim = fake.shape[1]
    k_ff, k_rr, k_fr = polynomial_kernel(fake, fake, dim), polynomial_kernel(real, real, dim), polynomial_kernel(fake, real, dim)
    n, m = len(fake), len(real)
    return mmd2_unbiased(k_ff.sum() - np.trace(k_ff), k_rr.sum() - np.trace(k_rr), k_fr.sum(), n, m)


def f_beta(precision: float, recall: float, beta: float) -> float:
    """Fβ of precision and recall, with torch-fidelity's guard against 0/0 (denominator at least 1e-5)."""
    b2 = beta * beta
    return float((1 + b2) * precision * recall / max(1e-5, b2 * precision + recall))


def prob_radius(radii_at_k: np.ndarray) -> float:
    """The common radius of P-precision / P-recall: a · mean k-NN radius (k = PPR_K)."""
    return float(PPR_A * np.mean(radii_at_k))


def prob_score(log_sum: np.ndarray, met_zero: np.ndarray) -> float:
    """mean over rows of 1 - Π(d/R): P-precision over fake rows, P-recall over real rows."""
    product = np.where(met_zero, 0.0, np.exp(log_sum))
    return float(np.mean(1.0 - product))
