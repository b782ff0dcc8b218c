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
    #: Streamed float64 moments of each set as stored (mean, covariance).
    real_moments: object = field(default=None, repr=False)
    fake_moments: object = field(default=None, repr=False)
    #: What the plots need (``largeemb.projection.Projection``); None with plots off.
    projection: object = field(default=None, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics for the primary (first) k, plus the Fréchet distance."""
        first = self.params["k"][0]
        return {**self.by_k[first], FD: self.fd}

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "metrics": self.metrics,
            "by_k": {str(k): v for k, v in self.by_k.items()},
            "real": self.real,
            "fake": self.fake,
            "params": self.params,
            "warnings": list(self.warnings),
            "timings_s": {key: round(v, 4) for key, v in self.timings_s.items()},
            "versions": self.versions,
        }


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
