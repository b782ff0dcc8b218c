"""The result of an evaluation: the numbers, and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from largeemb.kernels.companions import f_beta

#: 2: companion metrics in ``metrics`` and ``by_k``, ``details``.
SCHEMA_VERSION = 2

PRECISION, RECALL, DENSITY, COVERAGE, FD = "precision", "recall", "density", "coverage", "fd"
F1, F8, F1_8 = "f1", "f8", "f1_8"
#: Fβ reported per k: F1 (torch-fidelity's f_score), F8 and F1/8 (Sajjadi et al. 2018: recall- and precision-weighted).
F_BETAS = {F1: 1.0, F8: 8.0, F1_8: 1.0 / 8.0}


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
    #: The float64 work per pass (:func:`largeemb.pipeline.float64_work`): what ties cost.
    float64: dict = field(default_factory=dict)
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
    #: Authenticity flag per fake row (its nearest real row is nearer to another real row than to it).
    fake_authentic: np.ndarray | None = field(default=None, repr=False)
    #: Companion metrics that do not depend on k (FD∞, authenticity, Vendi scores, KID), by name.
    companions: dict[str, float] = field(default_factory=dict)
    #: What lies behind some companions (FD∞'s points, KID's subsets), for metrics.json.
    details: dict = field(default_factory=dict)
    #: Streamed float64 moments of each set as stored (mean, covariance).
    real_moments: object = field(default=None, repr=False)
    fake_moments: object = field(default=None, repr=False)
    #: What the plots need (``largeemb.passes.projection.Projection``); None with plots off.
    projection: object = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics for the primary (first) k, plus the Fréchet distance."""
        first = self.params["k"][0]
        return {**self.by_k[first], FD: self.fd, **self.companions}

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
        if self.fake_authentic is not None:
            out["authenticity"] = _binomial_se(float(np.mean(self.fake_authentic)), len(self.fake_authentic))
        if "kid_se" in self.details:
            out["kid"] = self.details["kid_se"]
        return out

    def add_timings(self, timings: dict[str, float]) -> None:
        """Add the times of a later stage (the plots) and count them in the total."""
        self.timings_s.update(timings)
        self.timings_s["total"] = sum(v for key, v in self.timings_s.items() if key != "total")

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
            "details": self.details,
            "timings_s": {key: round(v, 4) for key, v in self.timings_s.items()},
            "float64": self.float64,
            "versions": self.versions,
        }


def _binomial_se(p: float, n: int) -> float:
    return float(np.sqrt(p * (1 - p) / n))


def metrics_from_memberships(ks, fake_counts, real_covered, real_recalled, f_scores: bool = False) -> dict[int, dict[str, float]]:
    """Precision, recall, density and coverage per k from per-row memberships (and the Fβ of precision and recall)."""
    by_k = {}
    for q, k in enumerate(ks):
        counts = fake_counts[:, q]
        by_k[k] = {
            PRECISION: float(np.mean(counts > 0)),
            RECALL: float(np.mean(real_recalled[:, q])),
            DENSITY: float(counts.sum() / (k * len(counts))),
            COVERAGE: float(np.mean(real_covered[:, q])),
        }
        if f_scores:
            by_k[k].update({name: f_beta(by_k[k][PRECISION], by_k[k][RECALL], beta) for name, beta in F_BETAS.items()})
    return by_k


def authentic(real_nearest_other: np.ndarray, fake_nearest_real: np.ndarray, fake_nearest_dist: np.ndarray) -> np.ndarray:
    """Per fake row: its nearest real row lies closer to another real row than to it (Alaa et al. 2022).

    As dgm-eval's AuthPct computes it: strict ``<``, and the nearest real row
    is the lowest index among equally near ones.
    """
    return real_nearest_other[fake_nearest_real] < fake_nearest_dist


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
