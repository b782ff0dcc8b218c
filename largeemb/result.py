"""The result of an evaluation: the numbers, and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCHEMA_VERSION = 1

PRECISION, RECALL, DENSITY, COVERAGE, FD = "precision", "recall", "density", "coverage", "fd"


@dataclass
class EvaluationResult:
    """What ``evaluate`` found. ``to_dict()`` is exactly what goes into ``metrics.json``.

    The per-row arrays (radii, ball counts, flags) stay on the object for
    callers that want them; they are not part of the JSON.
    """

    by_k: dict[int, dict[str, float]]
    fd: float
    real: dict
    fake: dict
    params: dict
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    real_radii: np.ndarray | None = field(default=None, repr=False)
    fake_radii: np.ndarray | None = field(default=None, repr=False)
    fake_counts: np.ndarray | None = field(default=None, repr=False)
    real_covered: np.ndarray | None = field(default=None, repr=False)
    real_recalled: np.ndarray | None = field(default=None, repr=False)
    fake_nearest_dist: np.ndarray | None = field(default=None, repr=False)
    fake_nearest_real: np.ndarray | None = field(default=None, repr=False)
    fake_realism: np.ndarray | None = field(default=None, repr=False)
    real_nearest_dist: np.ndarray | None = field(default=None, repr=False)
    #: Streamed float64 moments of each set as stored (mean, covariance).
    real_moments: object = field(default=None, repr=False)
    fake_moments: object = field(default=None, repr=False)
    #: What the plots need (``largeemb.passes.projection.Projection``); None with plots off.
    projection: object = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics for the primary (first) k, plus the Fréchet distance."""
        first = self.params["k"][0]
        return {**self.by_k[first], FD: self.fd}

    def standard_errors(self) -> dict:
        """Sampling standard errors of the metrics, per k.

        Conditional on the radii (the real and fake balls are held fixed):
        binomial for precision, recall and coverage from the per-row flags,
        and the standard error of the mean per-fake ball count over k for density.
        """
        out = {"conditional_on": "k-NN radii"}
        for q, k in enumerate(self.params["k"]):
            m = self.by_k[k]
            n_fake, n_real = len(self.fake_counts), len(self.real_covered)
            out[str(k)] = {
                PRECISION: _binomial_se(m[PRECISION], n_fake),
                RECALL: _binomial_se(m[RECALL], n_real),
                DENSITY: float(np.std(self.fake_counts[:, q] / k, ddof=1) / np.sqrt(n_fake)),
                COVERAGE: _binomial_se(m[COVERAGE], n_real),
            }
        return out

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "metrics": self.metrics,
            "by_k": {str(k): v for k, v in self.by_k.items()},
            "standard_errors": self.standard_errors(),
            "real": self.real,
            "fake": self.fake,
            "params": self.params,
            "warnings": list(self.warnings),
            "timings_s": {key: round(v, 4) for key, v in self.timings_s.items()},
            "versions": self.versions,
        }


def _binomial_se(p: float, n: int) -> float:
    return float(np.sqrt(p * (1 - p) / n))


def metrics_from_memberships(ks, fake_counts, real_covered, real_recalled) -> dict[int, dict[str, float]]:
    """Precision, recall, density and coverage per k from per-row memberships."""
    by_k = {}
    for q, k in enumerate(ks):
        counts = fake_counts[:, q]
        by_k[k] = {
            PRECISION: float(np.mean(counts > 0)),
            RECALL: float(np.mean(real_recalled[:, q])),
            DENSITY: float(counts.sum() / (k * len(counts))),
            COVERAGE: float(np.mean(real_covered[:, q])),
        }
    return by_k


def realism_radii(real_radii: np.ndarray) -> np.ndarray:
    """Radii of the real rows that take part in realism scores, 0 for the rest.

    Kynkäänniemi et al. (2019) drop the half of the real balls with the
    largest radii: a row takes part when its radius is not above the median.
    """
    return np.where(real_radii <= np.median(real_radii), real_radii, 0.0)


def radius_warnings(real_radii: np.ndarray, fake_radii: np.ndarray, ks, inclusive: bool) -> list[str]:
    """Zero radii (duplicate rows) make empty balls under strict '<'."""
    if inclusive:
        return []
    warnings = []
    for radii, role in ((real_radii, "real"), (fake_radii, "fake")):
        zero = (radii == 0).sum(axis=0)
        hit = [(k, int(count)) for k, count in zip(ks, zero) if count]
        if hit:
            counts = ", ".join(f"{count} at k={k}" for k, count in hit)
            warnings.append(
                f"{role} rows have a zero k-NN radius from duplicate rows ({counts}); "
                "with strict '<' their balls are empty (use --inclusive for '<=')"
            )
    return warnings
