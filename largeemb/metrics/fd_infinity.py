"""FD∞ (Chong & Forsyth 2020): FD of the whole real set against nested seeded
subsamples of the fake set at dgm-eval's 15 sizes, extrapolated linearly in
1/N to N = ∞. Each subsample's moments are sums of shells streamed in the
moments pass (:meth:`largeemb.kernels.moments.Moments.nested`), so no subsample
is read again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from largeemb.kernels.moments import covariance_factor, frechet_distance
from largeemb.metrics.base import Found, Needs, Value
from largeemb.run.progress import announce_long_step, cubic_seconds
from largeemb.run.threads import one_blas_thread

NAME = "fd_infinity"
KEYS = (NAME,)
TIMING = "companions"
#: Subsample sizes of FD∞, as dgm-eval chooses them: 15 points from
#: min(5000, max(m // 10, 2)) to m.
FD_INF_POINTS = 15
#: Salt of the FD∞ subsample order, so its stream differs from other seeded draws.
FD_INF_SALT = 0xFD1F


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    """The fake set's shells, where FD∞ is computed: a real set with more rows than dims (else one
    FD per point would cost O(dim³) for a covariance of low rank)."""
    if fake is None or real.rows <= real.dim:
        return Needs()
    return Needs(shells=subsample_shells(fake.rows, config.seed))


def value(found: Found, config) -> Value:
    real, fake = found.real_moments, found.fake_moments
    dim = len(real.mean)
    if real.count <= dim:
        return Value(
            warnings=[
                f"FD∞ not computed: the real set has {real.count} rows for dim {dim} (it needs more rows than dims)"
            ]
        )
    nested = fake.nested()
    # A Cholesky factor, then each point's products and eigenvalues, two points at a time.
    announce_long_step(f"FD∞, {len(nested)} eigenproblems of dim {dim:,} (--companions without fd_infinity skips it)",
                       cubic_seconds(dim, 1 + len(nested)))
    fd, sizes, fds = fd_infinity(real.mean, real.cov, nested)
    # An extrapolation, not a distance: the line through the FDs may cross zero (a set against itself does).
    # Reported clipped at 0; the line's intercept itself stays in the details.
    warnings = [] if fd >= 0 else [f"FD∞ extrapolated to {fd:.4g} < 0 (the fitted line crosses zero): reported as 0"]
    return Value(
        metrics={NAME: max(fd, 0.0)}, details={NAME: {"subsample_rows": sizes, "fd": fds, "intercept": fd}},
        warnings=warnings,
    )


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


# One BLAS thread for the whole pool: a limit set and restored by each thread left the other's BLAS at 1 or 2
# threads by turns, and its sums in another order.
@one_blas_thread()
def fd_infinity(real_mean, real_cov, nested) -> tuple[float, list[int], list[float]]:
    """FD∞ and the FD of each nested subsample: a least-squares line of FD against 1/N, at 1/N = 0.

    ``nested`` is :meth:`largeemb.kernels.moments.Moments.nested` of the fake set.
    """
    sizes = [n for n, _, _ in nested]
    factor = covariance_factor(real_cov)
    with ThreadPoolExecutor(2) as pool:  # LAPACK releases the GIL: two eigenproblems at a time on two cores
        fds = list(pool.map(lambda point: frechet_distance(real_mean, real_cov, point[1], point[2], factor), nested))
    if len(sizes) < 2:
        return float(fds[-1]), sizes, fds
    slope_intercept = np.polyfit(1.0 / np.asarray(sizes, np.float64), fds, deg=1)
    return float(slope_intercept[1]), sizes, fds
