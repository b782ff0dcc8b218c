"""P-precision and P-recall's sums (Park & Kim 2023) in the cross pass: per row, Σ log(d/R)
over the other set's rows within the common radius R, taken tile by tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels.nearest import NEAR_COPY


@dataclass
class ProbPartial:
    """P-precision / P-recall sums (Park & Kim 2023): per row, Σ log(d/R) over the
    other set's rows within the common radius R, and whether one lies at d = 0.

    ``fake_log[j]`` runs over real rows (R = the real radius), ``real_log[i]``
    over fake rows (R = the fake radius); Π(d/R) = exp(log sum), 0 with a zero.
    """

    fake_log: np.ndarray
    fake_zero: np.ndarray
    real_log: np.ndarray
    real_zero: np.ndarray

    @classmethod
    def empty(cls, fake_rows: int, real_rows: int) -> ProbPartial:
        return cls(np.zeros(fake_rows), np.zeros(fake_rows, bool), np.zeros(real_rows), np.zeros(real_rows, bool))

    def add(self, tile: ProbPartial, fake_rows, real_rows) -> None:
        self.fake_log[fake_rows] += tile.fake_log
        self.fake_zero[fake_rows] |= tile.fake_zero
        self.real_log[real_rows] += tile.real_log
        self.real_zero[real_rows] |= tile.real_zero

    def merge_real_blocks(self, other: ProbPartial) -> ProbPartial:
        return ProbPartial(
            self.fake_log + other.fake_log, self.fake_zero | other.fake_zero,
            np.concatenate([self.real_log, other.real_log]), np.concatenate([self.real_zero, other.real_zero]),
        )

    def merge_fake_blocks(self, other: ProbPartial) -> ProbPartial:
        return ProbPartial(
            np.concatenate([self.fake_log, other.fake_log]), np.concatenate([self.fake_zero, other.fake_zero]),
            self.real_log + other.real_log, self.real_zero | other.real_zero,
        )


def log_ratios(d32, radius, eps, exact_of, owners, n):
    """Σ log(d/R) per owner row over candidate pairs with d < R, and which owners meet a pair at d = 0.

    Pairs whose float32 value cannot be told from 0 or from R² within their
    error bound get float64 distances; elsewhere log(d/R) is taken from the
    float32 value (relative error of d under eps/d², a few 1e-7 here).
    """
    r2 = radius * radius
    unsure = (d32 <= NEAR_COPY * eps) | (np.abs(d32 - r2) <= eps)
    dist = np.sqrt(np.maximum(d32, 0.0))
    picked = np.flatnonzero(unsure)
    if len(picked):
        dist[picked] = exact_of(picked)
    inside = dist < radius
    zero = inside & (dist == 0)
    logs = np.log(dist[inside & ~zero] / radius)
    total = np.bincount(owners[inside & ~zero], weights=logs, minlength=n)
    met_zero = np.zeros(n, bool)
    met_zero[owners[zero]] = True
    return total, met_zero
