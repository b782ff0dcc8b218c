"""Shortlists: candidate pairs for a per-row order statistic, each with bounds on its true value.

The cross pass keeps the pairs that can still be a row's nearest row or best
realism ratio (:mod:`largeemb.kernels.cross`, :mod:`largeemb.kernels.nearest`),
the float64 resolution those that can still be among a row's k+1 nearest
(:mod:`largeemb.kernels.resolve`); the settle pass and the resolution's last
step compute exact values for what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FIELDS = ("rows", "cols", "lo", "hi")


@dataclass
class Shortlist:
    """Candidate pairs (row, col): ``lo``/``hi`` bound each pair's true value
    (a squared distance or a squared ratio) from below and above.

    ``rows`` index the side the value belongs to, ``cols`` the other side.
    """

    rows: np.ndarray
    cols: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def empty(cls) -> Shortlist:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0))

    @classmethod
    def bounded(cls, rows, cols, value, eps) -> Shortlist:
        """Pairs whose true value lies within ``eps`` of ``value``."""
        return cls(rows, cols, value - eps, value + eps)

    def __add__(self, other: Shortlist) -> Shortlist:
        return Shortlist(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in _FIELDS))

    @classmethod
    def joined(cls, parts: list[Shortlist]) -> Shortlist:
        return cls(*(np.concatenate([getattr(p, f) for p in [cls.empty(), *parts]]) for f in _FIELDS))

    def mapped(self, rows: np.ndarray, cols: np.ndarray) -> Shortlist:
        """The same pairs with rows and columns renamed (e.g. gathered rows to global ids)."""
        return Shortlist(rows[self.rows], cols[self.cols], self.lo, self.hi)

    def _take(self, keep) -> Shortlist:
        return Shortlist(*(getattr(self, f)[keep] for f in _FIELDS))

    def select(self, lo_row: int, hi_row: int) -> Shortlist:
        return self._take((self.rows >= lo_row) & (self.rows < hi_row))

    def best(self, width: int) -> Shortlist:
        """Drop pairs that cannot be among their row's ``width`` smallest (``best(1)``: a row's minimum).

        Proof: let T be a row's width-th smallest ``hi``. At least ``width``
        of its pairs have a true value <= T, so a pair with lo > T is
        strictly above the width-th order statistic, and dropping it leaves
        the first ``width`` order statistics (ties included) unchanged. A
        union's T is at most each part's, so what a part drops the union
        would drop too: filtering per part and again at every merge is exact.
        """
        if not len(self.rows):
            return self
        order = np.lexsort((self.hi, self.rows))
        rows, hi = self.rows[order], self.hi[order]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        counts = np.diff(np.r_[starts, len(rows)])
        cut = np.full(len(starts), np.inf)
        full = counts >= width
        cut[full] = hi[starts[full] + width - 1]
        return self._take(order[self.lo[order] <= np.repeat(cut, counts)])

    def merged(self, other: Shortlist, width: int) -> Shortlist:
        """The union, filtered again (:meth:`best`)."""
        return (self + other).best(width)

    def for_max(self) -> Shortlist:
        """Drop pairs that cannot be a row's maximum (a realism score)."""
        rows, where = np.unique(self.rows, return_inverse=True)
        top = np.full(len(rows), -np.inf)
        np.maximum.at(top, where, self.lo)
        return self._take(self.hi >= top[where])
