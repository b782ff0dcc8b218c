"""Precision, recall, density and coverage per k (Kynkäänniemi et al. 2019;
Naeem et al. 2020), from the cross pass's per-row memberships; their sampling
standard errors; the realism radii of the per-sample values; and the warning
about empty balls of duplicate rows.
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.base import Found, Needs, Value, leading

NAME = "prdc"
PRECISION, RECALL, DENSITY, COVERAGE = "precision", "recall", "density", "coverage"
KEYS = (PRECISION, RECALL, DENSITY, COVERAGE)
TIMING = None


def chosen(config) -> bool:
    return True


def needs(config, real, fake) -> Needs:
    """The radii and memberships at the config's k (every run has them); per-sample values when the config asks."""
    return Needs(realism=realism_radii) if fake is not None and config.samples else Needs()


def precision(found: Found, q: int) -> float:
    """Share of fake rows inside some real ball, at the q-th k."""
    return float(np.mean(found.memberships.fake_counts[:, q] > 0))


def recall(found: Found, q: int) -> float:
    """Share of real rows inside some fake ball, at the q-th k."""
    return float(np.mean(found.memberships.real_recalled[:, q]))


def value(found: Found, config) -> Value:
    m = found.memberships
    n_fake, n_real = len(m.fake_counts), len(m.real_covered)
    by_k, errors = {}, {"conditional_on": "k-NN radii"}
    for q, k in enumerate(config.k):
        counts = m.fake_counts[:, q]
        by_k[k] = {
            PRECISION: precision(found, q),
            RECALL: recall(found, q),
            DENSITY: float(counts.sum() / (k * len(counts))),
            COVERAGE: float(np.mean(m.real_covered[:, q])),
        }
        # Conditional on the radii (the balls held fixed): binomial for the shares,
        # the standard error of the mean ball count over k for density.
        errors[str(k)] = {
            PRECISION: binomial_se(by_k[k][PRECISION], n_fake),
            RECALL: binomial_se(by_k[k][RECALL], n_real),
            DENSITY: float(np.std(counts / k, ddof=1) / np.sqrt(n_fake)),
            COVERAGE: binomial_se(by_k[k][COVERAGE], n_real),
        }
    warnings = radius_warnings(
        leading(found.real_radii, config.k), leading(found.fake_radii, config.k), config.k, config.inclusive,
        found.reference,
    )
    return Value(by_k=by_k, standard_errors=errors, warnings=warnings)


def binomial_se(p: float, n: int) -> float:
    """The standard error of a share p of n independent rows."""
    return float(np.sqrt(p * (1 - p) / n))


def realism_radii(real_radii: np.ndarray) -> np.ndarray:
    """Radii of the real rows that take part in realism scores, 0 for the rest.

    Kynkäänniemi et al. (2019) drop the half of the real balls with the
    largest radii: a row takes part when its radius is not above the median.
    """
    return np.where(real_radii <= np.median(real_radii), real_radii, 0.0)


def radius_warnings(real_radii: np.ndarray, fake_radii, ks, inclusive: bool, reference: str | None = None) -> list[str]:
    """Zero radii (duplicate rows) make empty balls under strict '<'. The real set's, when they come from a
    reference, were said in full when it was built: here in one short line."""
    if inclusive:
        return []
    warnings = []
    for radii, role in ((real_radii, "real"), (fake_radii, "fake")):
        if radii is None:
            continue
        zero = (radii == 0).sum(axis=0)
        hit = [(k, int(count)) for k, count in zip(ks, zero) if count]
        if not hit:
            continue
        counts = ", ".join(f"{count} at k={k}" for k, count in hit)
        if role == "real" and reference is not None:
            warnings.append(f"the reference's zero radii ({counts}): as when it was built")
            continue
        warnings.append(
            f"{role} rows have a zero k-NN radius from duplicate rows ({counts}); "
            "with strict '<' their balls are empty (use --inclusive for '<=')"
        )
    return warnings
