"""Streamed float64 moments and the Fréchet distance.

Sums are taken per fixed row segment about a fixed shift (the set's first
row), then merged in a fixed binary tree, so the float64 result does not depend
on how the work was chunked or scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh


@dataclass
class Moments:
    """Shifted sums of a row set: count, Σ(x - s), Σ(x - s)(x - s)ᵀ, and Σ of metric rows m.

    When the metric sees other rows than the stored ones (unit rows for
    cosine), Σ(m - t)(m - t)ᵀ about a metric shift t is kept too, in the same
    pass, for the plots' PCA of what the metric sees.
    """

    count: int
    shift: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    metric_sum: np.ndarray
    metric_shift: np.ndarray | None = None
    metric_s2: np.ndarray | None = None

    @classmethod
    def of_rows(cls, rows: np.ndarray, shift: np.ndarray, metric_rows: np.ndarray, metric_shift=None) -> "Moments":
        x = rows - shift
        out = cls(len(rows), shift, x.sum(axis=0), x.T @ x, metric_rows.sum(axis=0))
        if metric_shift is not None:
            m = metric_rows - metric_shift
            out.metric_shift, out.metric_s2 = metric_shift, m.T @ m
        return out

    def merge(self, other: "Moments") -> "Moments":
        return Moments(
            self.count + other.count,
            self.shift,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.metric_sum + other.metric_sum,
            self.metric_shift,
            None if self.metric_s2 is None else self.metric_s2 + other.metric_s2,
        )

    def of_metric_rows(self) -> "Moments":
        """The moments of the metric rows (None when they were not taken)."""
        if self.metric_s2 is None:
            return None
        s1 = self.metric_sum - self.count * self.metric_shift
        return Moments(self.count, self.metric_shift, s1, self.metric_s2, self.metric_sum)

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.s1 / self.count

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (n - 1 in the denominator, like ``np.cov``)."""
        centred = self.s1 / self.count
        cov = (self.s2 - self.count * np.outer(centred, centred)) / (self.count - 1)
        return (cov + cov.T) / 2

    @property
    def metric_mean(self) -> np.ndarray:
        return self.metric_sum / self.count


def leading_axes(cov: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n leading eigenvalues and eigenvectors (columns) of a covariance, largest first.

    Only those n are computed (LAPACK ``dsyevx``), not the whole spectrum.
    """
    dim = cov.shape[0]
    n = min(n, dim)
    values, vectors = eigh(cov, subset_by_index=(dim - n, dim - 1), driver="evx")
    return values[::-1], vectors[:, ::-1]


def frechet_distance(mean_a, cov_a, mean_b, cov_b) -> float:
    """|μa - μb|² + tr(Σa + Σb - 2 (Σa Σb)^½), via a symmetric eigenproblem.

    tr((Σa Σb)^½) equals the sum of square roots of the eigenvalues of
    Σa^½ Σb Σa^½, which is symmetric positive semi-definite: this is stabler
    than a general matrix square root and needs no complex arithmetic.
    """
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = root_a @ cov_b @ root_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mean_a - mean_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)
