"""Exact pruning of tile work: lower bounds on distances between groups of rows.

Orthogonal projection never lengthens a vector, so for any orthonormal basis
Q, ``|x - y| >= |Qᵀx - Qᵀy|``. Rows of a block are grouped by the nearest of a
few centroids in the space of the real set's leading principal axes; each
group gets a centre and a spread (the largest distance of a projected row from
the centre) there, and then every pair of rows of groups g and h is at least
``|c_g - c_h| - s_g - s_h`` apart. A tile's group pair whose bound already
exceeds every threshold its rows are compared with (a ball radius, a row's
current k-th distance, a current nearest distance) cannot change any answer,
so it is skipped. The answers stay exact; only work on pairs that provably
do not matter is left out. On data without cluster structure the bounds are
small, nothing qualifies, and the tiles run as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .distance import UNIT_ROUNDOFF32, Block
from .moments import leading_axes

#: Principal axes that the bounds are measured in.
AXES = 16
#: Centroids that rows are grouped by.
CLUSTERS = 16
#: A block pair takes the grouped path only if at least this share of its
#: pairs can be skipped; below it the plain panels are faster.
MIN_SKIPPED = 0.25


@dataclass(frozen=True)
class Partition:
    """Centroids in the projected space, shared by every task of a run."""

    basis: np.ndarray  # (dim, axes) float64, orthonormal columns
    centroids: np.ndarray  # (clusters, axes) float64

    def _basis32(self, dim: int) -> np.ndarray:
        """The basis in float32 with two zero rows, to project a block's ``left`` without copying it."""
        padded = np.zeros((dim + 2, self.basis.shape[1]), np.float32)
        padded[:dim] = self.basis
        return padded

    def groups(self, block: Block, max_rows: int) -> "Groups":
        """The block's rows grouped by nearest centroid, each group cut to at most ``max_rows``.

        Coordinates come from one float32 GEMM; :meth:`Groups.lower_bounds`
        accounts for its rounding.
        """
        coords = (block.left @ self._basis32(block.dim)).astype(np.float64)
        label = _nearest(coords, self.centroids)
        order = np.argsort(label, kind="stable")
        coords, label = coords[order], label[order]
        starts = np.flatnonzero(np.r_[True, label[1:] != label[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        pieces = -(-sizes // max_rows)  # groups over max_rows are cut into near-equal pieces
        starts = np.concatenate([a + (np.arange(p) * n) // p for a, n, p in zip(starts, sizes, pieces)])
        ends = np.r_[starts[1:], len(order)]
        member = np.repeat(np.arange(len(starts)), ends - starts)
        centre = np.add.reduceat(coords, starts, axis=0) / (ends - starts)[:, None]
        spread = np.sqrt(np.maximum.reduceat(((coords - centre[member]) ** 2).sum(axis=1), starts))
        norm = np.sqrt(np.maximum.reduceat(block.sqnorm[order], starts))
        index = [order[a:b] for a, b in zip(starts, ends)]
        return Groups(index, centre, spread, norm, block.dim)


@dataclass(frozen=True)
class Groups:
    index: list[np.ndarray]  # local rows of each group
    centre: np.ndarray  # (groups, axes)
    spread: np.ndarray  # (groups,)
    norm: np.ndarray  # (groups,) largest centred row norm, for the rounding margins
    dim: int

    def __len__(self) -> int:
        return len(self.index)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(i) for i in self.index])

    def lower_bounds(self, other: "Groups") -> np.ndarray:
        """(groups, other groups): no true distance between their rows is smaller.

        In exact arithmetic the bound is ``gap - s_g - s_h``. Rounding is
        paid for, each term doubled: the float32 coordinates of a row x are
        off by at most sqrt(axes)·γ_dim·|x| (γ_n = n u / (1 - n u)); the
        float32 basis Q̃ stretches no vector by more than 1 + u·sqrt(axes·dim);
        the centred float32 rows differ from the true ones by at most u|x|.
        """
        axes = self.centre.shape[1]
        u = UNIT_ROUNDOFF32
        gamma = self.dim * u / (1 - self.dim * u)
        norms = self.norm[:, None] + other.norm[None, :]
        gap = np.sqrt(((self.centre[:, None, :] - other.centre[None, :, :]) ** 2).sum(axis=2))
        projected = gap - self.spread[:, None] - other.spread[None, :] - 2 * np.sqrt(axes) * gamma * norms
        return np.maximum(projected / (1 + 2 * u * np.sqrt(axes * self.dim)) - 2 * u * norms, 0.0)

    def maxima(self, values: np.ndarray) -> np.ndarray:
        """Per group, the largest of a per-row value."""
        return np.array([values[i].max() for i in self.index])


def skipped_share(skip: np.ndarray, a: Groups, b: Groups, among=None) -> float:
    """Share of the row pairs (of those group pairs selected by ``among``) that ``skip`` leaves out."""
    area = np.outer(a.sizes, b.sizes)
    if among is not None:
        area = area[among]
    total = area.sum()
    return float(area[skip].sum() / total) if total else 0.0


@dataclass(frozen=True)
class Cut:
    """A block cut into parts, one GEMM operand each: plain panels, or groups with bounds."""

    rows: list[np.ndarray]  # block-local rows of each part
    groups: Groups | None = None  # None for panels: no bounds, nothing is skipped

    def __len__(self) -> int:
        return len(self.rows)

    def part(self, block: Block, i: int, exact: bool = True) -> Block:
        """Part i as a Block of its own, with start 0 (the caller maps rows back).

        A panel is a view; a group's rows are gathered. ``exact=False`` leaves
        the stored rows behind (for kernels that need only float32).
        """
        rows = self.rows[i]
        if self.groups is None:
            return replace(block.panel(int(rows[0]), int(rows[-1]) + 1), start=0)
        raw = block.raw[rows] if exact else None
        return Block(0, raw, block.metric, block.left[rows], block.sqnorm[rows])

    def lower_bounds(self, other: "Cut") -> np.ndarray:
        if self.groups is None or other.groups is None:
            return np.zeros((len(self), len(other)))
        return self.groups.lower_bounds(other.groups)

    def maxima(self, values: np.ndarray) -> np.ndarray:
        """Per part, the largest of a per-row value."""
        return np.array([values[rows].max() for rows in self.rows])


def panels(block: Block, panel_rows: int) -> Cut:
    return Cut([np.arange(lo, min(lo + panel_rows, block.rows)) for lo in range(0, block.rows, panel_rows)])


def grouped(block: Block, panel_rows: int, partition: Partition) -> Cut:
    groups = partition.groups(block, panel_rows)
    return Cut(groups.index, groups)


def cut_pair(a: Block, b: Block, panel_rows: int, partition: Partition | None, skippable) -> tuple[Cut, Cut, np.ndarray]:
    """Both blocks cut for a tile, and which part pairs to skip.

    Groups when there is a partition and ``skippable(groups_a, groups_b)``
    leaves out at least MIN_SKIPPED of the row pairs; else panels, none skipped.
    """
    if partition is not None:
        ga, gb = grouped(a, panel_rows, partition), grouped(b, panel_rows, partition)
        skip = skippable(ga.groups, gb.groups)
        if skipped_share(skip, ga.groups, gb.groups) >= MIN_SKIPPED:
            return ga, gb, skip
    ca, cb = panels(a, panel_rows), panels(b, panel_rows)
    return ca, cb, np.zeros((len(ca), len(cb)), bool)


def partition_of(basis_cov: np.ndarray, sample: np.ndarray, seed: int) -> Partition | None:
    """Principal axes of ``basis_cov`` and k-means centroids of a centred sample in them.

    None when the sample is too small to be worth grouping.
    """
    if len(sample) < 4 * CLUSTERS:
        return None
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small products: waking BLAS threads costs more than it saves
        return _partition(basis_cov, sample, seed)


def _partition(basis_cov: np.ndarray, sample: np.ndarray, seed: int) -> Partition | None:
    basis = np.ascontiguousarray(leading_axes(basis_cov, AXES)[1])
    coords = sample.astype(np.float64) @ basis
    centroids = _kmeans(coords, CLUSTERS, seed)
    return Partition(basis, centroids) if _promising(sample, coords, centroids) else None


def _promising(sample: np.ndarray, coords: np.ndarray, centroids: np.ndarray) -> bool:
    """Whether the clusters are far enough apart for bounds to skip work.

    In the sample, cluster pairs whose bound exceeds the median distance from
    a row to its nearest row in half the sample must make up MIN_SKIPPED of
    the row pairs. A set's k-NN radii are mostly below that distance (the set
    has many more rows than the sample), so where this fails, the tiles would
    fail it too and grouping would only cost time.
    """
    label = _nearest(coords, centroids)
    used = np.unique(label)
    centre = np.stack([coords[label == c].mean(axis=0) for c in used])
    spread = np.array([np.sqrt(((coords[label == c] - m) ** 2).sum(axis=1).max()) for c, m in zip(used, centre)])
    sizes = np.array([(label == c).sum() for c in used])
    gap = np.sqrt(((centre[:, None] - centre[None]) ** 2).sum(axis=2)) - spread[:, None] - spread[None, :]
    rows = np.asarray(sample[::2], np.float32)
    sq = (rows * rows).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * rows @ rows.T
    np.fill_diagonal(d2, np.inf)
    typical = np.sqrt(max(float(np.median(d2.min(axis=1))), 0.0))
    area = np.outer(sizes, sizes)
    return area[gap > typical].sum() >= MIN_SKIPPED * area.sum()


def _nearest(coords: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return (coords @ centroids.T * -2 + (centroids**2).sum(axis=1)).argmin(axis=1)


def _kmeans(coords: np.ndarray, clusters: int, seed: int, rounds: int = 20) -> np.ndarray:
    """Plain Lloyd iterations from k-means++ seeds (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    centroids = [coords[rng.integers(len(coords))]]
    nearest = ((coords - centroids[0]) ** 2).sum(axis=1)
    for _ in range(1, clusters):
        pick = rng.choice(len(coords), p=nearest / nearest.sum()) if nearest.sum() > 0 else rng.integers(len(coords))
        centroids.append(coords[pick])
        nearest = np.minimum(nearest, ((coords - coords[pick]) ** 2).sum(axis=1))
    centroids = np.array(centroids)
    for _ in range(rounds):
        label = _nearest(coords, centroids)
        counts = np.bincount(label, minlength=clusters)
        sums = np.stack([np.bincount(label, weights=column, minlength=clusters) for column in coords.T], axis=1)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids
