"""Projections for the plots against scikit-learn and NumPy oracles, and their invariance."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

import largeemb
from largeemb.config import EvaluateConfig
from largeemb.errors import InputError
from largeemb.io.store import open_source
from largeemb.kernels.moments import Moments
from largeemb.passes import projection
from largeemb.passes.moments import moments_stage
from largeemb.report.tsne import tsne
from largeemb.run.session import open_run

COMPONENTS = 10


def spread_spectrum(rows, dim, seed):
    """Gaussian rows with well-separated variances along a random rotation, off the origin."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scales = 3.0 * 0.8 ** np.arange(dim)
    return rng.standard_normal((rows, dim)) * scales @ rotation.T + rng.normal(0, 5, dim)


def component_angles_deg(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Angle between matching axes, ignoring sign (an axis has no direction)."""
    cosines = np.abs(np.sum(ours * theirs, axis=1)) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    return np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def streamed_moments(data: np.ndarray, chunk: int) -> Moments:
    shift = data[0]
    parts = [Moments.of_rows(data[lo : lo + chunk], shift, data[lo : lo + chunk]) for lo in range(0, len(data), chunk)]
    total = parts[0]
    for part in parts[1:]:
        total = total.merge(part)
    return total


@pytest.fixture(scope="module")
def data():
    return spread_spectrum(9001, 24, seed=5)


@pytest.fixture(scope="module")
def oracle_pca(data):
    return PCA(n_components=COMPONENTS, svd_solver="full").fit(data)


@pytest.mark.parametrize("chunk", [777, 1000, 4096, 9001])
def test_moments_basis_matches_sklearn_pca(data, oracle_pca, chunk):
    basis = projection.basis_from_moments(streamed_moments(data, chunk))
    assert basis.components.shape == (COMPONENTS, data.shape[1])
    assert component_angles_deg(basis.components, oracle_pca.components_).max() < 1e-4
    np.testing.assert_allclose(basis.explained_variance, oracle_pca.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(basis.explained_variance_ratio, oracle_pca.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(basis.mean, oracle_pca.mean_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        np.abs(basis.project(data[:50])), np.abs(oracle_pca.transform(data[:50])[:, :2]), atol=1e-9
    )


def test_moments_pass_of_evaluate_gives_the_same_basis(data, oracle_pca, write_zarr):
    """Through the real moments pass: a store whose chunks do not divide the rows, several workers."""
    source = open_source(write_zarr("pca.zarr", data, chunks=(1234, 24)))
    with open_run(EvaluateConfig(threads_per_worker=3)):
        [found] = moments_stage([(source, "real")], "euclidean").sets
        moments = found.moments
    basis = projection.basis_from_moments(moments)
    assert component_angles_deg(basis.components, oracle_pca.components_).max() < 1e-4
    np.testing.assert_allclose(basis.explained_variance, oracle_pca.explained_variance_, rtol=1e-8)


def test_incremental_basis_against_the_same_oracle(data, oracle_pca, write_zarr):
    source = open_source(write_zarr("ipca.zarr", data, chunks=(1000, 24)))
    basis = projection.basis_incremental(source, "euclidean")
    # IncrementalPCA keeps only COMPONENTS axes between blocks, so it is close, not
    # exact: measured here 2e-4 and 1e-3 degrees for PC 1 and 2, 0.6 for PC 10.
    angles = component_angles_deg(basis.components, oracle_pca.components_)
    assert angles[:2].max() < 1e-2 and angles.max() < 2.0
    np.testing.assert_allclose(basis.explained_variance, oracle_pca.explained_variance_, rtol=1e-3)
    np.testing.assert_allclose(basis.explained_variance_ratio, oracle_pca.explained_variance_ratio_, rtol=1e-3)
    np.testing.assert_allclose(basis.mean, oracle_pca.mean_, rtol=1e-10, atol=1e-10)


def test_cosine_basis_is_the_pca_of_unit_rows(data):
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    oracle = PCA(n_components=COMPONENTS, svd_solver="full").fit(unit)
    source = open_source(data)
    [found] = moments_stage([(source, "real")], "cosine").sets  # the one pass over the store
    moments = found.moments
    basis = projection.basis_from_moments(moments.of_metric_rows())
    assert component_angles_deg(basis.components, oracle.components_).max() < 1e-4
    np.testing.assert_allclose(basis.explained_variance, oracle.explained_variance_, rtol=1e-8)


def test_subsample_depends_only_on_rows_size_and_seed():
    first = projection.subsample_indices(100_000, 500, seed=3)
    assert len(first) == 500 and len(np.unique(first)) == 500
    assert np.all(np.diff(first) > 0) and first[0] >= 0 and first[-1] < 100_000
    np.testing.assert_array_equal(first, projection.subsample_indices(100_000, 500, seed=3))
    assert not np.array_equal(first, projection.subsample_indices(100_000, 500, seed=4))
    np.testing.assert_array_equal(projection.subsample_indices(300, 500, seed=3), np.arange(300))


def run_project(source_a, source_b, workers=None, method="moments"):
    """The projection stage on ``workers`` task threads (default: all cores)."""
    with open_run(EvaluateConfig(threads_per_worker=workers)):
        real_moments, fake_moments = (
            s.moments for s in moments_stage([(source_a, "real"), (source_b, "fake")], "euclidean").sets
        )
        return projection.project(
            source_a, source_b, real_moments, fake_moments, metric="euclidean", method=method,
            plot_samples=150, tsne_samples=400, seed=11,
        )


@pytest.fixture(scope="module")
def pair():
    real = spread_spectrum(5003, 12, seed=1).astype(np.float32)
    fake = (spread_spectrum(4500, 12, seed=2) * 1.1 + 0.3).astype(np.float32)
    return real, fake


def test_histogram_and_subsample_match_numpy_on_the_whole_set(pair):
    real, fake = pair
    got = run_project(open_source(real), open_source(fake))
    basis = got.basis
    for rows, part in ((real, got.real), (fake, got.fake)):
        coords = basis.project(rows.astype(np.float64))
        counts, _, _ = np.histogram2d(coords[:, 0], coords[:, 1], bins=(part.histogram.x_edges, part.histogram.y_edges))
        np.testing.assert_array_equal(part.histogram.counts, counts.astype(np.int64))
        assert part.histogram.counts.sum() + part.histogram.outside == len(rows)
        np.testing.assert_array_equal(part.tsne_rows, rows[part.tsne_index])
        np.testing.assert_allclose(part.plot_coords, coords[part.plot_index], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(part.tsne_init, coords[part.tsne_index], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got.real.plot_index, projection.subsample_indices(len(real), 150, 11))


def test_projection_is_identical_whatever_the_chunking_and_workers(pair, write_zarr):
    real, fake = pair
    base = run_project(open_source(real), open_source(fake))
    for chunks, workers in ((100, 1), (777, 2), (5003, 3)):
        real_src = open_source(write_zarr(f"r{chunks}.zarr", real, chunks=(chunks, 12)))
        fake_src = open_source(write_zarr(f"f{chunks}.zarr", fake, chunks=(min(chunks, 4500), 12)))
        got = run_project(real_src, fake_src, workers=workers)
        np.testing.assert_array_equal(got.basis.components, base.basis.components)
        for ours, theirs in ((got.real, base.real), (got.fake, base.fake)):
            np.testing.assert_array_equal(ours.histogram.counts, theirs.histogram.counts)
            np.testing.assert_array_equal(ours.plot_coords, theirs.plot_coords)
            np.testing.assert_array_equal(ours.tsne_index, theirs.tsne_index)
            np.testing.assert_array_equal(ours.tsne_rows, theirs.tsne_rows)


def test_evaluate_projection_ignores_block_rows(pair):
    real, fake = pair
    first, second = (
        largeemb.evaluate(real[:1500], fake[:1300], k=3, block_rows=b, plot_samples=100, tsne_samples=0).projection
        for b in (64, 1000)
    )
    np.testing.assert_array_equal(first.real.histogram.counts, second.real.histogram.counts)
    np.testing.assert_array_equal(first.fake.plot_coords, second.fake.plot_coords)


def test_tsne_is_identical_for_the_same_seed_and_input(pair):
    real, fake = pair
    rows = np.concatenate([real[:200], fake[:200]])
    init = np.concatenate([real[:200, :2], fake[:200, :2]]).astype(np.float64)
    first = tsne(rows, init, seed=5)
    second = tsne(rows, init, seed=5)
    assert first.shape == (400, 2) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


def test_plot_options_are_validated():
    with pytest.raises(InputError, match="PCA method"):
        EvaluateConfig(pca="svd")
    with pytest.raises(InputError, match="subsample"):
        EvaluateConfig(tsne_samples=-1)
    assert EvaluateConfig(tsne_samples=0).tsne_samples == 0


def test_cosine_run_projects_unit_rows(pair):
    real, fake = pair
    result = largeemb.evaluate(real[:1200], fake[:1000], k=3, metric="cosine", tsne_samples=0, plot_samples=50)
    unit = real[:1200].astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    oracle = PCA(n_components=2, svd_solver="full").fit(unit)
    assert component_angles_deg(result.projection.basis.components[:2], oracle.components_).max() < 1e-4
    np.testing.assert_allclose(
        np.abs(result.projection.real.plot_coords), np.abs(oracle.transform(unit[result.projection.real.plot_index])),
        atol=1e-9,
    )
