"""Precision, recall, density and coverage per k (Kynkäänniemi et al. 2019;
Naeem et al. 2020), from the cross pass's per-row memberships; their sampling
standard errors (random halves and quarters of both sets: :mod:`largeemb.kernels.splits`,
both sets sampled and given the real set); the realism radii of the per-sample values;
and the warnings about empty balls of duplicate rows, fake rows that carry density (hubs) and a reference
without part radii.
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
    warnings += hub_warnings(m.fake_counts, config.k, len(m.real_covered))
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


#: A hub lies in at least this many times as many real balls as the 99th percentile of the fake rows; warned
#: of when the hubs carry half the variance of the rows' ball counts. Seen without hubs (`largeemb`'s
#: calibration data, 1,000 and 4,000 rows, k = 1-20): the largest row 1.5-3.3 times the 99th percentile
#: (Gaussian, mixture, text-lsa); text-lsa's near-empty texts (4 of 20,000 npm rows near the origin of
#: unit vectors): 30 times, 60-80% of the variance.
HUB_TIMES, HUBS_SHARE = 5.0, 0.5


def hub_warnings(fake_counts: np.ndarray, ks, real_rows: int) -> list[str]:
    """Fake rows that lie in so many real balls that density's value and variance rest on them, at the first
    k where they do: the standard errors can count such rows only as often as the sample holds them."""
    for q, k in enumerate(ks):
        counts = fake_counts[:, q].astype(np.float64)
        square = (counts - counts.mean()) ** 2
        hubs = np.flatnonzero(counts >= HUB_TIMES * max(np.quantile(counts, 0.99), 1.0))
        if not len(hubs) or square[hubs].sum() < HUBS_SHARE * square.sum():
            continue
        many = np.sort(fake_counts[hubs, q])
        lie = f"{many[0]:,}" + (f"-{many[-1]:,}" if many[-1] != many[0] else "")
        named = ", ".join(map(str, hubs[:5])) + (", ..." if len(hubs) > 5 else "")
        return [
            f"density rests on {len(hubs)} of {len(counts):,} fake rows (row {named}): they lie in {lie} of the "
            f"{real_rows:,} real balls at k={k} (the median row: {int(np.median(counts)):,}) and carry "
            f"{square[hubs].sum() / square.sum():.0%} of its variance across rows; its standard errors count rows "
            "like them only as often as the sample holds them (empty or failed inputs? README: standard errors)"
        ]
    return []


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
