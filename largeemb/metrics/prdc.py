"""Precision, recall, density and coverage per k (Kynkäänniemi et al. 2019;
Naeem et al. 2020), from the cross pass's per-row memberships; their sampling
standard errors (random halves and quarters of both sets: :mod:`largeemb.kernels.splits`,
both sets sampled and given the real set); the realism radii of the per-sample values;
and the warnings about empty balls of duplicate rows and a reference without part radii.
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels import stderr
from largeemb.metrics.base import Found, Needs, Value, leading

NAME = "prdc"
PRECISION, RECALL, DENSITY, COVERAGE = "precision", "recall", "density", "coverage"
KEYS = (PRECISION, RECALL, DENSITY, COVERAGE)
TIMING = None


def chosen(config) -> bool:
    return True


def needs(config, real, fake) -> Needs:
    """The radii and memberships at the config's k (every run has them); per-sample values when the config asks;
    the random splits of the standard errors unless the config turns them off (a reference keeps the real
    set's part radii)."""
    splits = config.standard_errors and splittable(config, real, fake)
    return Needs(realism=realism_radii if fake is not None and config.samples else None, splits=splits)


def splittable(config, real, fake) -> bool:
    """Every quarter of each set holds more than k rows: a k-NN radius inside each exists."""
    return all(src.rows // 4 > max(config.k) for src in (real, fake) if src is not None)


def precision(found: Found, q: int) -> float:
    """Share of fake rows inside some real ball, at the q-th k."""
    return float(np.mean(found.memberships.fake_counts[:, q] > 0))


def recall(found: Found, q: int) -> float:
    """Share of real rows inside some fake ball, at the q-th k."""
    return float(np.mean(found.memberships.real_recalled[:, q]))


def value(found: Found, config) -> Value:
    m = found.memberships
    by_k, errors, given_real = {}, {}, {}
    for q, k in enumerate(config.k):
        counts = m.fake_counts[:, q]
        by_k[k] = {
            PRECISION: precision(found, q),
            RECALL: recall(found, q),
            DENSITY: float(counts.sum() / (k * len(counts))),
            COVERAGE: float(np.mean(m.real_covered[:, q])),
        }
        if found.split_parts is not None:
            real_parts, fake_parts = found.split_parts
            se = stderr.standard_errors(m.splits[q], real_parts, fake_parts, k, counts, by_k[k])
            errors[str(k)], given_real[str(k)] = se["both"], se["given_real"]
    warnings = radius_warnings(
        leading(found.real_radii, config.k), leading(found.fake_radii, config.k), config.k, config.inclusive,
        found.reference,
    )
    if config.standard_errors and not splittable(config, found.real, found.fake):
        warnings.append(
            "no standard errors of precision, recall, density and coverage: they need a quarter of each set "
            f"to hold more than k = {max(config.k)} rows"
        )
    if found.splits_missing:
        k = ",".join(map(str, config.k))
        warnings.append(
            f"the reference holds no part radii at k={k} (built by an older largeemb, or for other k): no standard "
            f"errors of precision, recall, density and coverage; rebuild it with `largeemb reference build --force "
            f"--k {k}` to have them"
        )
    return Value(by_k=by_k, standard_errors=errors, standard_errors_given_real=given_real, warnings=warnings)


def binomial_se(p: float, n: int) -> float:
    """The standard error of a share p of n independent rows."""
    return float(np.sqrt(p * (1 - p) / n))


def share_errors(name: str, flags: np.ndarray) -> dict:
    """A share of per-fake-row flags, the real set held fixed: its binomial standard error, for
    ``standard_errors_given_real`` (none at a share of 0 or 1, where p(1 - p) = 0 says nothing)."""
    share = float(np.mean(flags))
    return {name: binomial_se(share, len(flags))} if 0.0 < share < 1.0 else {}


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
