"""Projections for the plots: the real set's PCA basis, streamed 2-D
histograms of both sets on it, and seeded subsamples (whose t-SNE the plot
stage computes: :mod:`largeemb.report.tsne`).

Everything here is computed in the space the metric measures (unit rows for
``cosine``). The basis is fitted on the real set and applied to both sets.
The streamed pass runs over the fixed row segments of the moments pass, so
every row is projected by the same arithmetic whatever the block size, store
chunking, worker count or scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels.distance import metric_rows
from largeemb.kernels.highdim import few_rows, leading_axes_of_rows
from largeemb.kernels.moments import Moments, leading_axes
from largeemb.kernels.plan import MOMENT_ROWS, RowBlock, row_blocks, segments
from largeemb.run.graph import Graph, run
from largeemb.run.progress import announce_long_step, cubic_seconds
from largeemb.run.threads import one_blas_thread

#: Principal components kept (the plots use two; ten are kept for inspection).
PCA_COMPONENTS = 10
#: Bins per axis of the density backdrop.
HISTOGRAM_BINS = 300
#: The backdrop spans each set's mean ± this many standard deviations per axis.
RANGE_SIGMAS = 6.0
#: Salt of the subsample generator, so its stream differs from other seeded draws.
SUBSAMPLE_SALT = 0x5EED


@dataclass
class PcaBasis:
    """Principal axes of the real set: ``project(rows) = (rows - mean) @ components.T``."""

    mean: np.ndarray  # (dim,) float64
    components: np.ndarray  # (c, dim) float64, orthonormal rows, by decreasing variance
    explained_variance: np.ndarray  # (c,) unbiased (n - 1), like scikit-learn's PCA
    explained_variance_ratio: np.ndarray  # (c,) of the total variance

    def project(self, rows: np.ndarray, axes: int = 2) -> np.ndarray:
        return (np.asarray(rows, np.float64) - self.mean) @ self.components[:axes].T


def _basis(mean, components, variance, ratio) -> PcaBasis:
    """A basis with at least two axes: a 1-D set gets a zero second axis, so it still plots."""
    missing = max(0, 2 - len(components))
    return PcaBasis(
        np.asarray(mean, np.float64),
        np.vstack([_sign_fixed(np.asarray(components, np.float64)), np.zeros((missing, len(mean)))]),
        np.append(np.asarray(variance, np.float64), np.zeros(missing)),
        np.append(np.asarray(ratio, np.float64), np.zeros(missing)),
    )


def _sign_fixed(components: np.ndarray) -> np.ndarray:
    """Make each axis' largest-magnitude entry positive (scikit-learn's convention)."""
    signs = np.sign(components[np.arange(len(components)), np.argmax(np.abs(components), axis=1)])
    return components * np.where(signs == 0, 1.0, signs)[:, None]


def basis_from_moments(moments: Moments, n_components: int = PCA_COMPONENTS) -> PcaBasis:
    """Exact PCA: the eigendecomposition of the streamed float64 covariance."""
    dim = len(moments.mean)
    announce_long_step(f"the plots' PCA axes, an eigenproblem of dim {dim:,} (--no-plots skips it)", cubic_seconds(dim))
    cov = moments.cov
    with one_blas_thread():
        values, vectors = leading_axes(cov, n_components)
    return _basis_of(moments.mean, values, vectors, float(np.trace(cov)))


def basis_from_rows(rows: np.ndarray, mean: np.ndarray, n_components: int = PCA_COMPONENTS) -> PcaBasis:
    """The same exact PCA from the (metric) rows of a set with fewer rows than dims, through their Gram matrix.

    ``mean``: the streamed mean, kept as the basis' centre as in :func:`basis_from_moments`.
    """
    return _basis_of(mean, *leading_axes_of_rows(rows, n_components))


def _basis_of(mean, values, vectors, total: float) -> PcaBasis:
    """The basis of a covariance's leading eigenpairs (vectors as columns) and its trace."""
    variance = np.clip(values, 0.0, None)
    return _basis(mean, vectors.T, variance, variance / total if total > 0 else variance * 0)


def basis_incremental(source: Source, metric: str, n_components: int = PCA_COMPONENTS) -> PcaBasis:
    """scikit-learn's IncrementalPCA fitted block by block, in row order.

    Blocks are the fixed moments-pass blocks, so the fit does not depend on
    any option. Each partial fit needs at least ``n_components`` rows.
    """
    from sklearn.decomposition import IncrementalPCA

    blocks = row_blocks(source.rows, MOMENT_ROWS)
    n_components = min(n_components, source.dim, min(b.rows for b in blocks))
    ipca = IncrementalPCA(n_components=n_components)
    for block in blocks:
        ipca.partial_fit(metric_rows(source.read(block.start, block.stop), metric))
    return _basis(ipca.mean_, ipca.components_, ipca.explained_variance_, ipca.explained_variance_ratio_)


# -- seeded subsamples --------------------------------------------------------


def subsample_indices(rows: int, size: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded subsample; a function of (rows, size, seed) only."""
    if size >= rows:
        return np.arange(rows, dtype=np.int64)
    rng = np.random.default_rng([SUBSAMPLE_SALT, seed, rows, size])
    return np.sort(rng.choice(rows, size=size, replace=False)).astype(np.int64)


# -- streamed pass: 2-D histogram of every row, and the subsample rows ---------


@dataclass
class Histogram2D:
    """Counts of projected rows on fixed bins; rows beyond the edges are counted apart."""

    x_edges: np.ndarray
    y_edges: np.ndarray
    counts: np.ndarray  # (bins, bins) int64, [x bin, y bin]
    outside: int

    def merge(self, other: Histogram2D) -> Histogram2D:
        return Histogram2D(self.x_edges, self.y_edges, self.counts + other.counts, self.outside + other.outside)


def histogram_edges(basis: PcaBasis, sets: list[Moments], bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges covering each set's mean ± RANGE_SIGMAS standard deviations on PC1 and PC2.

    Taken from the moments, so the bins are fixed before the single pass over
    the rows and are the same for both sets.
    """
    edges = []
    for axis in basis.components[:2]:
        lows, highs = [], []
        for moments in sets:
            centre = float((moments.mean - basis.mean) @ axis)
            spread = RANGE_SIGMAS * float(np.sqrt(max(moments.variance_along(axis), 0.0)))
            lows.append(centre - spread)
            highs.append(centre + spread)
        low, high = min(lows), max(highs)
        if not high > low:  # constant data: give the bins some width
            low, high = low - 1.0, high + 1.0
        edges.append(np.linspace(low, high, bins + 1))
    return edges[0], edges[1]


@dataclass
class ScanPart:
    """What segments contribute: histogram counts, and their subsample rows in pieces
    (joined once at the end, not copied at every merge)."""

    histogram: Histogram2D
    rows: list[np.ndarray]  # float32 metric rows of the wanted indices
    coords: list[np.ndarray]  # float64 (len(rows), 2) projections of those rows

    def merge(self, other: ScanPart) -> ScanPart:
        return ScanPart(self.histogram.merge(other.histogram), self.rows + other.rows, self.coords + other.coords)


def _scan_task(source: Source, seg: RowBlock, metric: str, basis: PcaBasis, edges, wanted: np.ndarray) -> ScanPart:
    rows = metric_rows(source.read(seg.start, seg.stop), metric)
    coords = basis.project(rows)
    counts, _, _ = np.histogram2d(coords[:, 0], coords[:, 1], bins=edges)
    counts = counts.astype(np.int64)
    local = wanted - seg.start
    return ScanPart(
        Histogram2D(edges[0], edges[1], counts, int(len(rows) - counts.sum())),
        [rows[local].astype(np.float32)],
        [coords[local]],
    )


def scan_graph(g: Graph, source: Source, metric: str, basis: PcaBasis, edges, wanted: np.ndarray):
    """One pass: histogram of all projected rows plus the rows at ``wanted`` (sorted) indices.

    ``basis`` and ``edges`` are the graph's shared values (see ``Graph.share``).
    """
    segs = segments(source.rows)
    bounds = [np.searchsorted(wanted, [seg.start, seg.stop]) for seg in segs]
    picks = g.share([wanted[lo:hi] for lo, hi in bounds])
    parts = [g.task("scan", _scan_task, source, seg, metric, basis, edges, pick) for seg, pick in zip(segs, picks)]
    return g.tree(parts, ScanPart.merge, "scan-merge")


# -- the projection stage of evaluate() ----------------------------------------


@dataclass
class SetProjection:
    """One set's share of the plots: its histogram and its two subsamples."""

    histogram: Histogram2D
    plot_index: np.ndarray  # sorted row indices drawn as points on the PCA plot
    plot_coords: np.ndarray  # (len(plot_index), 2)
    tsne_index: np.ndarray  # sorted row indices that go into t-SNE
    tsne_rows: np.ndarray  # float32 metric rows at tsne_index
    tsne_init: np.ndarray  # (len(tsne_index), 2) PCA coordinates of those rows


@dataclass
class Projection:
    """What the plots need from the embeddings; everything else comes from the result."""

    basis: PcaBasis
    method: str
    real: SetProjection
    fake: SetProjection


def _split(part: ScanPart, wanted: np.ndarray, plot_index: np.ndarray, tsne_index: np.ndarray) -> SetProjection:
    rows, coords = np.concatenate(part.rows), np.concatenate(part.coords)
    at_plot = np.searchsorted(wanted, plot_index)
    at_tsne = np.searchsorted(wanted, tsne_index)
    return SetProjection(part.histogram, plot_index, coords[at_plot], tsne_index, rows[at_tsne], coords[at_tsne])


def project(
    real: Source,
    fake: Source,
    real_moments: Moments,
    fake_moments: Moments,
    *,
    metric: str,
    method: str,
    plot_samples: int,
    tsne_samples: int,
    seed: int,
) -> Projection:
    """PCA basis of the real set, then one streamed pass over each set.

    ``real_moments``/``fake_moments`` come from the moments pass; for the
    cosine metric their moments of unit rows are used, since the plots show
    what the metric sees.
    """
    if metric != "euclidean":
        real_moments, fake_moments = real_moments.of_metric_rows(), fake_moments.of_metric_rows()
    if method != "moments":
        basis = basis_incremental(real, metric)
    elif few_rows(real.rows, real.dim):  # O(rows²·dim), not O(dim³)
        basis = basis_from_rows(metric_rows(real.read(0, real.rows), metric), real_moments.mean)
    else:
        basis = basis_from_moments(real_moments)
    edges = histogram_edges(basis, [real_moments, fake_moments])
    g = Graph("projection")
    shared_basis, shared_edges = g.share([basis, edges])  # on a cluster: sent once, not per task
    keys, wanted = [], []
    for src in (real, fake):
        plot_index = subsample_indices(src.rows, plot_samples, seed)
        tsne_index = subsample_indices(src.rows, tsne_samples, seed)
        union = np.union1d(plot_index, tsne_index)
        wanted.append((union, plot_index, tsne_index))
        keys.append(scan_graph(g, src, metric, shared_basis, shared_edges, union))
    real_part, fake_part = run(g, keys, "projection")
    return Projection(basis, method, _split(real_part, *wanted[0]), _split(fake_part, *wanted[1]))
