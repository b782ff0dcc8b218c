"""Clipped density and clipped coverage (Salvy et al., ICLR 2026), as the
authors' ``ClippedDensityCoverage`` computes them, per k.

Clipped density: real radii clipped at their median; per fake row, the real
balls (``<=``) holding it, over k, clipped at 1; their mean, over the same
mean for the real rows (each counted in the other real rows' clipped balls),
clipped at 1. The real rows' counts come from a real × real pass
(``Needs.real_in_real``), so the metric is opt-in (19-25% more CPU on a
metrics-only run, 20,000 rows a set).

Clipped coverage: per real row, the share of its k nearest fake rows inside
its (unclipped) ball, ``<`` as the authors' code: min(fake rows inside, k) / k;
the mean y is mapped through the paper's calibration g(y) = m*/(M + 1), m*
the fewest of M fake rows drawn from the real distribution whose expected
score reaches y (:func:`calibrated`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from largeemb.metrics.base import Ball, Found, Needs, Value

NAME = "clipped_density_coverage"
CLIPPED_DENSITY, CLIPPED_COVERAGE = "clipped_density", "clipped_coverage"
KEYS = (NAME, CLIPPED_DENSITY, CLIPPED_COVERAGE)
TIMING = "companions"


def clip_at_median(radii: np.ndarray) -> np.ndarray:
    """The real radii clipped at their median (one function object: the balls' identity)."""
    return np.minimum(radii, np.median(radii))


def _density_ball(k: int) -> Ball:
    return Ball("real", k, True, clip_at_median)


def _coverage_ball(k: int) -> Ball:
    return Ball("real", k, False)


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    if fake is None:
        return Needs()
    return Needs(
        balls=tuple(b for k in config.k for b in (_density_ball(k), _coverage_ball(k))),
        real_in_real=tuple(_density_ball(k) for k in config.k),
    )


def value(found: Found, config) -> Value:
    by_k, details = {}, {}
    n_fake = len(found.memberships.fake_counts)
    for k in config.k:
        fake_in = found.ball(_density_ball(k)).held_by
        real_in = found.real_in_real[_density_ball(k)]
        fake_ratio = float(np.mean(np.minimum(fake_in / k, 1.0)))
        real_ratio = float(np.mean(np.minimum(real_in / k, 1.0)))
        ratio = fake_ratio / real_ratio if real_ratio > 0 else float("nan")
        y = float(np.mean(np.minimum(found.ball(_coverage_ball(k)).holds, k) / k))
        by_k[k] = {CLIPPED_DENSITY: float(min(ratio, 1.0)), CLIPPED_COVERAGE: calibrated(y, k, len(real_in), n_fake)}
        details[str(k)] = {"density_unclipped": ratio, "real_ratio": real_ratio, "coverage_uncalibrated": y}
    return Value(by_k=by_k, details={NAME: details})


def _expected(m: int, k: int, n: int) -> float:
    """E[min(J, k)] / k for J ~ BetaBinomial(m, k, n - k): the clipped coverage of one real row's ball
    (probability mass ~ Beta(k, n - k)) by m fake rows drawn from the real distribution.

    E[min(J, k)] = k − Σ_{j<k} (k − j) P(J = j): k terms, not the m + 1 of the authors' sum.
    """
    j = np.arange(k)
    log_p = (
        gammaln(m + 1) - gammaln(j + 1) - gammaln(m - j + 1)
        + gammaln(k + j) + gammaln(n + m - k - j) - gammaln(n + m)
        - (gammaln(k) + gammaln(n - k) - gammaln(n))
    )
    return float((k - np.sum((k - j) * np.exp(log_p))) / k)


def calibrated(y: float, k: int, n: int, m: int) -> float:
    """g(y): the authors' ``searchsorted(f, y) / (M + 1)`` over f(0..M) (f = 0 below k, :func:`_expected`
    above, increasing in m), by bisection on m: the first m >= k with f(m) >= y, over M + 1."""
    if not y > 0:
        return 0.0
    if n <= k or m < k or _expected(m, k, n) < y:  # f never reaches y (with m < k, f is 0 throughout)
        return 1.0
    lo, hi = k, m  # f(hi) >= y
    while lo < hi:
        mid = (lo + hi) // 2
        if _expected(mid, k, n) >= y:
            hi = mid
        else:
            lo = mid + 1
    return lo / (m + 1)
