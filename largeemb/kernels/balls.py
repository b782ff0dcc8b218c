"""More balls for the cross pass to count in (:class:`Balls`), and what it
counts in them (:class:`BallPartial`): the k-NN family's per-row reductions.

Each column is one set's radii (at some k, or a function of them, e.g.
clipped at their median) with its own convention, ``<=`` or ``<``, whatever
the run's ``--inclusive`` says: each metric keeps its authors' convention.
:mod:`largeemb.kernels.cross` decides every membership of these columns as
it decides its own (float32 with a proven error bound, float64 near the
boundary); this module holds the columns and folds the decided memberships
into counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Balls:
    """Columns of ball radii: ``real[i, c]`` is real row i's radius in real column c, ``fake`` likewise."""

    real: np.ndarray  # (real rows, real columns) float64
    real_inclusive: tuple[bool, ...]
    fake: np.ndarray  # (fake rows, fake columns) float64
    fake_inclusive: tuple[bool, ...]

    def taken(self, fake_rows, real_rows) -> Balls:
        return Balls(self.real[real_rows], self.real_inclusive, self.fake[fake_rows], self.fake_inclusive)

    def widest(self, role: str) -> np.ndarray:
        """Each row's largest radius over its set's columns (0 with none)."""
        radii = self.real if role == "real" else self.fake
        return radii.max(axis=1) if radii.shape[1] else np.zeros(len(radii))


@dataclass
class BallPartial:
    """Counts in the columns of :class:`Balls`, over the pairs one tile (or a merge of tiles) saw.

    Real columns: ``fake_in_real[j, c]`` real balls holding fake row j; ``real_holds[i, c]``
    fake rows in real row i's ball; ``fake_min_radius[j, c]`` the smallest radius of the
    real balls holding fake row j (inf: none). Fake columns: ``fake_holds[j, c]`` real rows
    in fake row j's ball; ``real_in_fake[i, c]`` fake balls holding real row i.
    """

    fake_in_real: np.ndarray
    real_holds: np.ndarray
    fake_min_radius: np.ndarray
    fake_holds: np.ndarray
    real_in_fake: np.ndarray

    @classmethod
    def empty(cls, fake_rows: int, real_rows: int, real_columns: int, fake_columns: int) -> BallPartial:
        return cls(
            np.zeros((fake_rows, real_columns), np.int64), np.zeros((real_rows, real_columns), np.int64),
            np.full((fake_rows, real_columns), np.inf),
            np.zeros((fake_rows, fake_columns), np.int64), np.zeros((real_rows, fake_columns), np.int64),
        )

    def add(self, tile: BallPartial, fake_rows, real_rows) -> None:
        self.fake_in_real[fake_rows] += tile.fake_in_real
        self.real_holds[real_rows] += tile.real_holds
        self.fake_min_radius[fake_rows] = np.minimum(self.fake_min_radius[fake_rows], tile.fake_min_radius)
        self.fake_holds[fake_rows] += tile.fake_holds
        self.real_in_fake[real_rows] += tile.real_in_fake

    def merge_real_blocks(self, other: BallPartial) -> BallPartial:
        """Same fake rows, two disjoint runs of real rows (self's first)."""
        return BallPartial(
            self.fake_in_real + other.fake_in_real, np.concatenate([self.real_holds, other.real_holds]),
            np.minimum(self.fake_min_radius, other.fake_min_radius),
            self.fake_holds + other.fake_holds, np.concatenate([self.real_in_fake, other.real_in_fake]),
        )

    def merge_fake_blocks(self, other: BallPartial) -> BallPartial:
        """Two disjoint runs of fake rows (self's first) over the same real rows."""
        return BallPartial(
            np.concatenate([self.fake_in_real, other.fake_in_real]), self.real_holds + other.real_holds,
            np.concatenate([self.fake_min_radius, other.fake_min_radius]),
            np.concatenate([self.fake_holds, other.fake_holds]), self.real_in_fake + other.real_in_fake,
        )


def widened(balls: Balls | None, real_reach: np.ndarray, fake_reach: np.ndarray):
    """Each row's reach (real, fake), widened to its extra balls' radii."""
    if balls is None:
        return real_reach, fake_reach
    return np.maximum(real_reach, balls.widest("real")), np.maximum(fake_reach, balls.widest("fake"))


def counts(owners, inside, n) -> np.ndarray:
    """(n, columns) int64: per owner row, its pairs inside, per column of ``inside`` (pairs × columns)."""
    out = np.zeros((n, inside.shape[1]), np.int64)
    for q in range(inside.shape[1]):
        out[:, q] = np.bincount(owners[inside[:, q]], minlength=n)
    return out


def empty(balls: Balls | None, fake_rows: int, real_rows: int) -> BallPartial | None:
    """Zero counts of these rows in every column of ``balls`` (None without balls)."""
    if balls is None:
        return None
    return BallPartial.empty(fake_rows, real_rows, balls.real.shape[1], balls.fake.shape[1])


def real_side(balls: Balls | None, out, f_rows, r_rows, inside, d32, eps, exact_of) -> BallPartial | None:
    """A tile's counts in the real columns, from its real-side candidate pairs (the fake columns: :func:`fake_side`).

    ``out``: the tile's CrossPartial (its row counts); ``inside``: the cross pass's exact membership test.
    """
    if balls is None:
        return None
    nf, nr = len(out.fake_counts), len(out.real_covered)
    partial = empty(balls, nf, nr)
    radii = balls.real[r_rows]
    held = inside(d32, radii, eps, exact_of, np.array(balls.real_inclusive, bool))
    partial.fake_in_real = counts(f_rows, held, nf)
    partial.real_holds = counts(r_rows, held, nr)
    for q in range(held.shape[1]):
        np.minimum.at(partial.fake_min_radius[:, q], f_rows[held[:, q]], radii[held[:, q], q])
    return partial


def fake_side(partial: BallPartial | None, balls: Balls | None, f_rows, r_rows, inside, d32, eps, exact_of) -> None:
    """A tile's counts in the fake columns, from its fake-side candidate pairs, into ``partial``."""
    if balls is None:
        return
    held = inside(d32, balls.fake[f_rows], eps, exact_of, np.array(balls.fake_inclusive, bool))
    partial.fake_holds = counts(f_rows, held, len(partial.fake_holds))
    partial.real_in_fake = counts(r_rows, held, len(partial.real_in_fake))

