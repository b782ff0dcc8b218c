"""The cross pass's share of the standard errors: each pair of a tile tested against the part radii of
its rows (:mod:`largeemb.kernels.splits`), folded into :class:`~largeemb.kernels.splits.SplitCounts`.

Part radii are at least the row's full-sample radius, so most pairs are
decided by their float32 value and its proven error bound alone: beyond
the row's largest part radius no bit is set, below its smallest every bit.
Only the pairs in between go through the membership test of the cross
pass itself (``inside``: float32 where the bound decides, float64 distances
where it cannot), so the masks equal a float64 brute force's, ties and
``--inclusive`` included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels.membership import inside
from largeemb.kernels.roundoff import UNIT_ROUNDOFF64
from largeemb.kernels.splits import (
    SplitCounts,
    fold_fake_pairs,
    fold_real_pairs,
    packed,
    part_index,
    part_masks,
    split_words,
)


@dataclass
class SplitRows:
    """One set's rows as the splits see them: part radii (rows, nk, 64), part masks (rows, 4)
    (:func:`~largeemb.kernels.splits.part_masks`) and part indices (rows, 64)
    (:func:`~largeemb.kernels.splits.part_index`)."""

    radii: np.ndarray
    parts: np.ndarray
    index: np.ndarray

    @classmethod
    def of(cls, radii: np.ndarray, key: int) -> SplitRows:
        """A whole set's, from its part radii and its split key."""
        words = split_words(np.arange(len(radii)), len(radii), key)
        return cls(radii, part_masks(words), part_index(words))

    def __getitem__(self, rows) -> SplitRows:
        return SplitRows(self.radii[rows], self.parts[rows], self.index[rows])

    def widest(self) -> np.ndarray:
        """Each row's largest part radius (at any k)."""
        return self.radii.max(axis=(1, 2))


def empty(split_rows, real_rows: int, fake_rows: int) -> list[SplitCounts] | None:
    """Empty totals per split k for these rows (None without ``split_rows``: no standard errors)."""
    if split_rows is None:
        return None
    return [SplitCounts.empty(real_rows, fake_rows) for _ in range(split_rows[0].radii.shape[1])]


def reach(split_rows, fake_reach: np.ndarray, real_reach: np.ndarray):
    """Each row's reach widened to its largest part radius (part radii are at least the full-sample ones)."""
    if split_rows is None:
        return fake_reach, real_reach
    return np.maximum(fake_reach, split_rows[0].widest()), np.maximum(real_reach, split_rows[1].widest())


def taken(split_rows, fake_rows, real_rows):
    """The (fake, real) SplitRows of a tile's rows, or None."""
    return None if split_rows is None else (split_rows[0][fake_rows], split_rows[1][real_rows])


def part_words(d32, rows, radii, eps, exact_of, inclusive) -> np.ndarray:
    """(pairs,) uint64: bit h set when the pair lies in the part ball of column h of its row ``rows[i]``
    (``radii``: (rows, 64), indexed by ``rows``).

    Pairs surely beyond the row's largest radius (float32 value minus its
    bound above it, with the same 4-roundoff margin as ``inside``) set
    nothing; pairs surely below its smallest (value plus bound below it)
    set every bit, as ``inside`` would column by column (r² only grows with
    r). Only the rest are tested column by column, their radii gathered.
    """
    widest, narrowest = radii.max(axis=1), radii.min(axis=1)
    widest2, narrowest2 = widest * widest, narrowest * narrowest
    beyond = d32 - eps > widest2[rows] * (1 + 4 * UNIT_ROUNDOFF64)
    words = np.where(d32 + eps < narrowest2[rows] * (1 - 4 * UNIT_ROUNDOFF64), ~np.uint64(0), np.uint64(0))
    near = np.flatnonzero(~beyond & (words == 0))
    if len(near):
        bits = inside(d32[near], radii, eps[near], lambda sel: exact_of(near[sel]), inclusive, rows[near])
        words[near] = packed(bits)
    return words


def real_side(split_rows, real_rows, fake_rows, f_rows, r_rows, d32, eps, exact_of, inclusive):
    """One tile's totals (None without ``split_rows``), from its pairs (tile-local ``f_rows``, ``r_rows``,
    float32 ``d32`` and bound ``eps``) against the real rows' part balls: precision, coverage, density."""
    splits = empty(split_rows, real_rows, fake_rows)
    if splits is None:
        return None
    fake, real = split_rows
    for q, counts in enumerate(splits):
        words = part_words(d32, r_rows, real.radii[:, q], eps, exact_of, inclusive)
        hit = words != 0
        fold_real_pairs(counts, f_rows[hit], r_rows[hit], words[hit], fake.parts, real.parts, fake.index, real.index)
    return splits


def fake_side(splits, split_rows, f_rows, r_rows, d32, eps, exact_of, inclusive) -> None:
    """Fold one tile's pairs against the fake rows' part balls (recall) into ``splits`` (None: nothing)."""
    if splits is None:
        return
    fake = split_rows[0]
    for q, counts in enumerate(splits):
        words = part_words(d32, f_rows, fake.radii[:, q], eps, exact_of, inclusive)
        hit = words != 0
        fold_fake_pairs(counts, r_rows[hit], f_rows[hit], words[hit], fake.parts)


def add(into: list[SplitCounts], tile: list[SplitCounts], fake_rows, real_rows) -> None:
    """Fold a tile over these rows of a block pair into the block pair's."""
    for a, b in zip(into, tile):
        a.precision[fake_rows] |= b.precision
        a.coverage[real_rows] |= b.coverage
        a.recall[real_rows] |= b.recall
        a.density += b.density


def merge_real_blocks(first: list[SplitCounts], second: list[SplitCounts]) -> list[SplitCounts]:
    """Same fake rows, two disjoint runs of real rows (first's first)."""
    return [
        SplitCounts(
            a.precision | b.precision, np.concatenate([a.coverage, b.coverage]),
            np.concatenate([a.recall, b.recall]), a.density + b.density,
        )
        for a, b in zip(first, second)
    ]


def merge_fake_blocks(first: list[SplitCounts], second: list[SplitCounts]) -> list[SplitCounts]:
    """Two disjoint runs of fake rows (first's first) over the same real rows."""
    return [
        SplitCounts(
            np.concatenate([a.precision, b.precision]), a.coverage | b.coverage, a.recall | b.recall,
            a.density + b.density,
        )
        for a, b in zip(first, second)
    ]
