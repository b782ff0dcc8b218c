"""The Fréchet distance of the two sets' Gaussians (FID's formula on any embeddings).

From the streamed moments, or through the rows of a set with fewer rows
than dimensions, where the dim × dim route would cost O(dim³) for a
covariance of rank below its rows.
"""

from __future__ import annotations

from largeemb.kernels.highdim import few_rows, frechet_distance_of_rows
from largeemb.kernels.moments import frechet_distance, frechet_distance_few_rows
from largeemb.metrics.base import Found, Needs, Value
from largeemb.run.progress import announce_long_step, cubic_seconds
from largeemb.run.threads import one_blas_thread

NAME = "fd"
KEYS = (NAME,)
TIMING = "fd"


def chosen(config) -> bool:
    return True


def needs(config, real, fake) -> Needs:
    return Needs()  # both sets' moments, which every run streams


def value(found: Found, config) -> Value:
    return Value(metrics={NAME: frechet_once(found)})


def frechet_once(found: Found) -> float:
    """FD, computed once per evaluate (MiFID scales it too): kept in ``found.extra``."""
    if _CACHED not in found.extra:
        found.extra[_CACHED] = frechet(found)
    return found.extra[_CACHED]


#: Where FD is kept in ``Found.extra`` (no pass has this name).
_CACHED = "fd (value)"


def frechet(found: Found) -> float:
    """FD; through the rows of sets with fewer rows than dimensions (both: O(n·m·dim); the smaller: O(n·dim²);
    not O(dim³))."""
    real_src, fake_src, real, fake = found.real, found.fake, found.real_moments, found.fake_moments
    small, other = min([(fake_src, real), (real_src, fake)], key=lambda pair: pair[0].rows)
    if few_rows(real_src.rows, real_src.dim) and few_rows(fake_src.rows, fake_src.dim):  # O(n·m·dim)
        return frechet_distance_of_rows(real_src.read(0, real_src.rows), fake_src.read(0, fake_src.rows))
    if few_rows(small.rows, small.dim):
        return frechet_distance_few_rows(other.mean, other.cov, small.read(0, small.rows))
    # A Cholesky factor, two dim × dim products and the eigenvalues: about two eigenproblems' time.
    announce_long_step(f"FD, eigenproblems of dim {real_src.dim:,}", cubic_seconds(real_src.dim, 2))
    with one_blas_thread():
        return frechet_distance(real.mean, real.cov, fake.mean, fake.cov)
