"""Exact pruning of tile work: lower bounds on distances between rows and groups of rows.

Orthogonal projection never lengthens a vector, so for any orthonormal basis
Q, ``|x - y| >= |Qᵀx - Qᵀy|``. Rows of a block are grouped by the nearest of a
few centroids in the space of the real set's leading principal axes; each
group gets a centre and a spread (the largest distance of a projected row from
the centre) there. Every row x is then at least ``|Qᵀx - c_h| - s_h`` from
every row of group h. A row whose bound to a group already exceeds every
threshold its pairs with that group are compared with (a ball radius, a row's
current k-th distance, a current nearest distance) has no pair there that can
change an answer, so a group's tile runs only on the rows that can still meet
it (:mod:`largeemb.kernels.tiles`). The answers stay exact; only work on pairs that
provably do not matter is left out. On data without cluster structure the
bounds are small, nothing qualifies, and the tiles run as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels.distance import Block
from largeemb.kernels.moments import leading_axes
from largeemb.kernels.roundoff import UNIT_ROUNDOFF32

#: Principal axes that the bounds are measured in.
AXES = 16
#: Centroids that rows are grouped by.
CLUSTERS = 16
#: A block pair takes the grouped path only if at least this share of its
#: pairs can be skipped (:func:`largeemb.kernels.tiles.cut_pair`); below it the
#: plain panels are faster. The sample check asks for the same share.
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

    def groups(self, block: Block, max_rows: int) -> Groups:
        """The block's rows grouped by nearest centroid, each group cut to at most ``max_rows``.

        Coordinates come from one float32 GEMM; :func:`_lower_bound`
        accounts for its rounding.
        """
        projected = (block.left @ self._basis32(block.dim)).astype(np.float64)
        label = _nearest(projected, self.centroids)
        order = np.argsort(label, kind="stable")
        coords, label = projected[order], label[order]
        starts = np.flatnonzero(np.r_[True, label[1:] != label[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        pieces = -(-sizes // max_rows)  # groups over max_rows are cut into near-equal pieces
        starts = np.concatenate([a + (np.arange(p) * n) // p for a, n, p in zip(starts, sizes, pieces)])
        ends = np.r_[starts[1:], len(order)]
        member = np.repeat(np.arange(len(starts)), ends - starts)
        centre = np.add.reduceat(coords, starts, axis=0) / (ends - starts)[:, None]
        spread = np.sqrt(np.maximum.reduceat(((coords - centre[member]) ** 2).sum(axis=1), starts))
        row_norm = np.sqrt(block.sqnorm)
        norm = np.maximum.reduceat(row_norm[order], starts)
        index = [order[a:b] for a, b in zip(starts, ends)]
        return Groups(index, centre, spread, norm, block.dim, projected, row_norm)


@dataclass(frozen=True)
class Groups:
    index: list[np.ndarray]  # local rows of each group, ascending
    centre: np.ndarray  # (groups, axes)
    spread: np.ndarray  # (groups,)
    norm: np.ndarray  # (groups,) largest centred row norm, for the rounding margins
    dim: int
    coords: np.ndarray  # (rows, axes) each row's projected coordinates, in block order
    row_norm: np.ndarray  # (rows,) each row's centred norm

    def __len__(self) -> int:
        return len(self.index)

    def lower_bounds(self, other: Groups) -> np.ndarray:
        """(groups, other groups): no true distance between their rows is smaller."""
        gap = np.sqrt(((self.centre[:, None, :] - other.centre[None, :, :]) ** 2).sum(axis=2))
        spreads = self.spread[:, None] + other.spread[None, :]
        return _lower_bound(gap, spreads, self.norm[:, None] + other.norm[None, :], self.dim)

    def row_bounds(self, other: Groups) -> np.ndarray:
        """(rows, other groups): no true distance from the row to a row of the group is smaller.

        A row is a group of its own with spread 0, so this beats
        :meth:`lower_bounds` by the spread of the row's own group.
        """
        # Expanded square in float64: its rounding (about 1e-16 of the squared
        # norms) is far inside the float32 margins that _lower_bound subtracts.
        sq = (
            (self.coords**2).sum(axis=1)[:, None]
            + (other.centre**2).sum(axis=1)[None, :]
            - 2 * self.coords @ other.centre.T
        )
        gap = np.sqrt(np.maximum(sq, 0.0))
        return _lower_bound(gap, other.spread[None, :], self.row_norm[:, None] + other.norm[None, :], self.dim)


def _lower_bound(gap: np.ndarray, spreads: np.ndarray, norms: np.ndarray, dim: int) -> np.ndarray:
    """The distance bound between two groups whose projected centres are ``gap`` apart.

    In exact arithmetic it is ``gap - spreads`` (the two spreads summed).
    Rounding is paid for, each term doubled: the float32 coordinates of a row
    x are off by at most sqrt(axes)·γ_dim·|x| (γ_n = n u / (1 - n u)); the
    float32 basis Q̃ stretches no vector by more than 1 + u·sqrt(axes·dim);
    the centred float32 rows differ from the true ones by at most u|x|.
    ``norms`` sums the two groups' largest centred row norms.
    """
    u = UNIT_ROUNDOFF32
    gamma = dim * u / (1 - dim * u)
    projected = gap - spreads - 2 * np.sqrt(AXES) * gamma * norms
    return np.maximum(projected / (1 + 2 * u * np.sqrt(AXES * dim)) - 2 * u * norms, 0.0)


#: Above this dim the axes come from the sample's SVD, O(sample² · dim), not
#: from the dim × dim covariance's eigenproblem, O(dim³) (dim 10,000: 240 s).
#: Any orthonormal axes give valid bounds; the covariance's only group better.
SAMPLE_AXES_DIM = 2048


def partition_of(basis_cov: np.ndarray | None, sample: np.ndarray, seed: int) -> Partition | None:
    """Principal axes of ``basis_cov`` and k-means centroids of a centred sample in them.

    Above SAMPLE_AXES_DIM the axes are the sample's and ``basis_cov`` is not used (None will do).

    None when the sample is too small to be worth grouping.
    """
    if len(sample) < 4 * CLUSTERS:
        return None
    if sample.shape[1] > SAMPLE_AXES_DIM:
        centred = sample.astype(np.float64) - sample.mean(axis=0)
        basis = np.ascontiguousarray(np.linalg.svd(centred, full_matrices=False)[2][:AXES].T)
    else:
        basis = np.ascontiguousarray(leading_axes(basis_cov, AXES)[1])
    coords = sample.astype(np.float64) @ basis
    centroids = _kmeans(coords, CLUSTERS, seed)
    return Partition(basis, centroids) if _promising(sample, coords, centroids) else None


def _promising(sample: np.ndarray, coords: np.ndarray, centroids: np.ndarray) -> bool:
    """Whether the clusters are far enough apart for bounds to skip work.

    In the sample, the pairs (row, row of a cluster) whose row-to-cluster
    bound exceeds the median distance from a row to its nearest row in half
    the sample must make up MIN_SKIPPED of all pairs. A set's k-NN radii are
    mostly below that distance (the set has many more rows than the sample),
    so where this fails, the tiles would fail it too and grouping would only
    cost time.
    """
    label = _nearest(coords, centroids)
    used = np.unique(label)
    centre = np.stack([coords[label == c].mean(axis=0) for c in used])
    spread = np.array([np.sqrt(((coords[label == c] - m) ** 2).sum(axis=1).max()) for c, m in zip(used, centre)])
    sizes = np.array([(label == c).sum() for c in used])
    bound = np.sqrt(((coords[:, None] - centre[None]) ** 2).sum(axis=2)) - spread[None, :]
    rows = np.asarray(sample[::2], np.float32)
    sq = (rows * rows).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * rows @ rows.T
    np.fill_diagonal(d2, np.inf)
    typical = np.sqrt(max(float(np.median(d2.min(axis=1))), 0.0))
    return ((bound > typical) @ sizes).sum() >= MIN_SKIPPED * len(coords) * sizes.sum()


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
