"""The result of an evaluation: the numbers, and where they came from.

Built in one place, :meth:`EvaluationResult.of`, from what the passes
produced (:class:`largeemb.pipeline.Passes`) and the metrics' values
(:class:`largeemb.metrics.Value`, merged in registry order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from largeemb.kernels.moments import Moments
from largeemb.metrics import Value, authenticity, prdc, rarity
from largeemb.metrics.base import leading
from largeemb.passes.projection import Projection
from largeemb.pipeline import Passes, float64_work

#: 2: companion metrics in ``metrics`` and ``by_k``, ``details``; 3: ``run`` (label, finish time, host, elapsed time).
SCHEMA_VERSION = 3


@dataclass
class EvaluationResult:
    """What ``evaluate`` found. ``to_dict()`` is exactly what goes into ``metrics.json``.

    The per-row arrays (radii, ball counts, flags) stay on the object for
    callers that want them; they are not part of the JSON.
    """

    by_k: dict[int, dict[str, float]]
    #: The numbers that do not depend on k (FD and the companions), in output order.
    values: dict[str, float]
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
    #: The metrics' per-row arrays, by name (e.g. ``fake_authentic``).
    rows: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: What lies behind some metrics (FD∞'s points, KID's subsets), for metrics.json.
    details: dict = field(default_factory=dict)
    #: Sampling standard errors, as the metrics give them (see :meth:`standard_errors`).
    sampling_errors: dict = field(default_factory=dict)
    #: Standard errors given the real set (see :meth:`standard_errors_given_real`).
    sampling_errors_given_real: dict = field(default_factory=dict)
    #: Streamed float64 moments of each set as stored (mean, covariance).
    real_moments: Moments | None = field(default=None, repr=False)
    fake_moments: Moments | None = field(default=None, repr=False)
    #: What the plots need; None with plots off.
    projection: Projection | None = field(default=None, repr=False)
    #: Which run this was: label, finished_utc, host, elapsed_s, id (set by ``evaluate_to``; empty for ``evaluate``).
    run: dict = field(default_factory=dict)
    #: Per-class evaluation (``by_class``, ``class_averaged``; see :mod:`largeemb.by_class`); empty without labels.
    classes: dict = field(default_factory=dict)

    @classmethod
    def of(cls, passes: Passes, values: list[Value], config, warnings=()) -> EvaluationResult:
        """The result of ``passes`` and the metrics' ``values`` under ``config``;
        ``warnings`` (about the inputs) come first."""
        by_k: dict[int, dict[str, float]] = {}
        merged = Value(warnings=list(warnings))
        for value in values:
            for k, numbers in value.by_k.items():
                by_k.setdefault(k, {}).update(numbers)
            merged.metrics.update(value.metrics)
            merged.details.update(value.details)
            merged.standard_errors.update(value.standard_errors)
            merged.standard_errors_given_real.update(value.standard_errors_given_real)
            merged.rows.update(value.rows)
            merged.warnings += value.warnings
        merged.details["screening"] = passes.screening
        timings = {**passes.timings, "total": sum(passes.timings.values())}
        real, fake, memberships, per_sample = passes.real, passes.fake, passes.memberships, passes.per_sample
        return cls(
            by_k=by_k,
            values=merged.metrics,
            real={
                **real.source.describe(),
                "fingerprint": real.fingerprint,
                "reference": passes.reference,
                "float64_fallback_rows": int(real.radii.float64_rows),
            },
            fake={
                **fake.source.describe(), "fingerprint": fake.fingerprint,
                "float64_fallback_rows": int(fake.radii.float64_rows),
            },
            params=config.params(),
            warnings=merged.warnings,
            timings_s=timings,
            float64=float64_work(passes),
            versions=_versions(),
            real_radii=leading(real.radii.values, config.k),
            fake_radii=leading(fake.radii.values, config.k),
            fake_counts=memberships.fake_counts,
            real_covered=memberships.real_covered,
            real_recalled=memberships.real_recalled,
            fake_nearest_dist=per_sample.fake_nearest_dist if per_sample else None,
            fake_nearest_real=per_sample.fake_nearest_real if per_sample else None,
            fake_realism=per_sample.fake_realism if per_sample else None,
            real_nearest_dist=per_sample.real_nearest_dist if per_sample else None,
            rows=merged.rows,
            details=merged.details,
            sampling_errors=merged.standard_errors,
            sampling_errors_given_real=merged.standard_errors_given_real,
            real_moments=real.moments,
            fake_moments=fake.moments,
            projection=passes.projection,
        )

    def __repr__(self) -> str:
        """One line: the primary k's four metrics and FD (``to_dict()`` holds everything)."""
        k = self.params["k"][0]
        numbers = ", ".join(f"{name} {value:.4g}" for name, value in self.by_k[k].items() if name in prdc.KEYS)
        fd = self.values.get("fd")
        return f"<EvaluationResult k={k}: {numbers}" + (f", fd {fd:.4g}>" if fd is not None else ">")

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics for the primary (first) k, then those that do not depend on k."""
        first = self.params["k"][0]
        return {**self.by_k[first], **self.values}

    @property
    def fake_authentic(self) -> np.ndarray | None:
        """Authenticity flag per fake row (its nearest real row is nearer to another real row than to it)."""
        return self.rows.get(authenticity.FLAGS)

    @property
    def fake_rarity(self) -> np.ndarray | None:
        """Rarity score per fake row at the first k (NaN: in no real ball), when computed."""
        return self.rows.get(rarity.ROWS)

    def standard_errors(self) -> dict:
        """Sampling standard errors of the metrics, per k and per metric, with both sets samples.

        Precision, recall, density and coverage: from random halves and
        quarters of both sets (:mod:`largeemb.kernels.splits`), radii and
        rows alike resampled; each metric's own for the others (authenticity, KID).
        """
        return dict(self.sampling_errors)

    def standard_errors_given_real(self) -> dict:
        """Standard errors of precision, recall, density and coverage per k with the real set (or
        reference) held fixed: what a comparison of fake sets against one real set needs."""
        return dict(self.sampling_errors_given_real)

    def add_timings(self, timings: dict[str, float]) -> None:
        """Add the times of a later stage (the plots) and count them in the total."""
        self.timings_s.update(timings)
        self.timings_s["total"] = sum(v for key, v in self.timings_s.items() if key != "total")

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            **({"run": self.run} if self.run else {}),
            "metrics": self.metrics,
            "by_k": {str(k): v for k, v in self.by_k.items()},
            "standard_errors": self.standard_errors(),
            **self.classes,
            **({"standard_errors_given_real": g} if (g := self.standard_errors_given_real()) else {}),
            "real": self.real,
            "fake": self.fake,
            "params": self.params,
            "warnings": list(self.warnings),
            "details": self.details,
            "timings_s": {key: round(v, 4) for key, v in self.timings_s.items()},
            "float64": self.float64,
            "versions": self.versions,
        }


def _versions() -> dict[str, str]:
    from importlib import metadata

    names = ["largeemb", "numpy", "dask", "zarr", "faiss-cpu", "scikit-learn", "openTSNE", "matplotlib"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
