"""The dim × dim steps at a large dim: FD, the plots' PCA axes and Vendi of a set with fewer rows than dims
come from its rows (an n × n problem) and equal float64 oracles, and no dim × dim eigensolve runs (the pruning
axes come from a sample); FD of a set with itself is exactly 0; and each O(dim³) step long enough to notice
is announced with its estimate before it starts."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import cli_evaluate, mixture
from largeemb import api


@pytest.mark.parametrize("real_rows, fake_rows", [(150, 40), (40, 150), (30, 30)])
def test_fd_of_a_set_with_fewer_rows_than_dims_skips_the_dim_cubed_eigensolve(real_rows, fake_rows, monkeypatch):
    import largeemb
    from largeemb.kernels import moments
    from oracle import frechet

    dim = 200
    real, fake = mixture(real_rows, dim, 1), mixture(fake_rows, dim, 2, shift=0.2)
    real_eigh = np.linalg.eigh

    def small_only(matrix, *args, **kwargs):
        assert matrix.shape[0] < dim, "an eigensolve of the whole dim x dim covariance"
        return real_eigh(matrix, *args, **kwargs)

    monkeypatch.setattr(moments.np.linalg, "eigh", small_only)
    result = largeemb.evaluate(real, fake, k=(3,), plots=False, samples=False, prune=False)
    assert "fd_infinity" not in result.metrics and any("FD∞" in w for w in result.warnings)
    # Independent oracle, exact for singular covariances (where sqrtm loses digits):
    # with Σ = AᵀA, tr((Σr Σf)^½) is the nuclear norm of Ar Afᵀ.
    factors = [(x - x.mean(0)) / np.sqrt(len(x) - 1) for x in (real.astype(np.float64), fake.astype(np.float64))]
    diff = real.astype(np.float64).mean(0) - fake.astype(np.float64).mean(0)
    exact = (
        diff @ diff
        + sum((a * a).sum() for a in factors)
        - 2 * np.linalg.svd(factors[0] @ factors[1].T, compute_uv=False).sum()
    )
    assert result.metrics["fd"] == pytest.approx(exact, rel=1e-7)  # the other set's Σ from streamed sums
    assert result.metrics["fd"] == pytest.approx(frechet(real, fake), rel=1e-5)


@pytest.mark.parametrize("real_rows, fake_rows", [(260, 40), (40, 260)])
def test_fd_when_only_one_set_has_fewer_rows_than_dims_goes_through_its_rows(real_rows, fake_rows, monkeypatch):
    """The other set's streamed covariance and the small set's rows: no dim × dim eigenproblem either."""
    import largeemb
    from oracle import frechet

    dim = 200
    real, fake = mixture(real_rows, dim, 1), mixture(fake_rows, dim, 2, shift=0.2)
    _no_dim_by_dim_eigensolve(monkeypatch, dim)
    result = largeemb.evaluate(real, fake, k=(3,), plots=False, samples=False, prune=False, companions=())
    monkeypatch.undo()
    factors = [(x - x.mean(0)) / np.sqrt(len(x) - 1) for x in (real.astype(np.float64), fake.astype(np.float64))]
    diff = real.astype(np.float64).mean(0) - fake.astype(np.float64).mean(0)
    exact = (
        diff @ diff
        + sum((a * a).sum() for a in factors)
        - 2 * np.linalg.svd(factors[0] @ factors[1].T, compute_uv=False).sum()
    )
    assert result.metrics["fd"] == pytest.approx(exact, rel=1e-7)
    assert result.metrics["fd"] == pytest.approx(frechet(real, fake), rel=1e-5)


def test_fd_of_a_set_with_itself_is_exactly_zero_through_the_rows():
    import largeemb

    rows = mixture(50, 80, 1)
    assert largeemb.evaluate(rows, rows.copy(), k=(3,), plots=False, samples=False, companions=()).metrics["fd"] == 0.0


def test_fd_of_identical_sets_is_zero_not_negative():
    from largeemb.kernels.moments import frechet_distance

    rng = np.random.default_rng(3)
    rows = rng.standard_normal((500, 64)) * rng.uniform(0.1, 30, 64)
    mean, cov = rows.mean(0), np.cov(rows, rowvar=False)
    assert frechet_distance(mean, cov, mean, cov) == 0.0  # a rounding-sized negative before the clip
    result = api.evaluate(rows, rows.copy(), k=3, plots=False, samples=False)
    assert result.metrics["fd"] == 0.0 and f"{result.metrics['fd']:.4f}" == "0.0000"


def test_pruning_axes_at_a_large_dim_skip_the_dim_cubed_eigensolve(monkeypatch):
    """The partition's part: above SAMPLE_AXES_DIM the pruning axes come from the sample."""
    import largeemb
    from largeemb.kernels import moments, prune
    from oracle import prdc

    monkeypatch.setattr(prune, "SAMPLE_AXES_DIM", 16)  # a small dim stands in for 10,000
    called = []
    real_axes = moments.leading_axes
    monkeypatch.setattr(prune, "leading_axes", lambda *a, **k: called.append(1) or real_axes(*a, **k))
    real, fake = mixture(2400, 24, 1, modes=10, spread=4.0), mixture(2000, 24, 2, modes=10, keep=7, spread=4.0)
    result = largeemb.evaluate(real, fake, k=3, plots=False, samples=False, companions=(), block_rows=512)
    assert not called
    expected = prdc(real, fake, 3)
    assert all(result.by_k[3][name] == pytest.approx(expected[name], abs=1e-12) for name in expected)


def _no_dim_by_dim_eigensolve(monkeypatch, dim):
    """Every symmetric eigensolver fails on a dim × dim matrix (NumPy's and the kernels' scipy one)."""
    import scipy.linalg

    from largeemb.kernels import moments

    def guarded(solver):
        def small_only(matrix, *args, **kwargs):
            assert np.shape(matrix)[0] < dim, "an eigensolve of a whole dim x dim matrix"
            return solver(matrix, *args, **kwargs)

        return small_only

    for owner, name in [
        (np.linalg, "eigh"), (np.linalg, "eigvalsh"), (scipy.linalg, "eigh"), (scipy.linalg, "eigvalsh"),
        (moments, "eigh"),
    ]:
        monkeypatch.setattr(owner, name, guarded(getattr(owner, name)))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pca_and_vendi_of_sets_with_fewer_rows_than_dims_come_from_their_rows(metric, monkeypatch):
    """The plots' PCA axes and Vendi of a set with fewer rows than dims, from its n × n Gram matrix, equal
    the float64 brute force; no dim × dim eigenproblem, no FD∞ shells, no unit moments taken."""
    import largeemb
    from largeemb.passes.projection import PCA_COMPONENTS

    dim = 160
    real, fake = mixture(120, dim, 1) + 1.0, mixture(60, dim, 2, shift=0.2) + 1.0
    _no_dim_by_dim_eigensolve(monkeypatch, dim)
    result = largeemb.evaluate(real, fake, k=(3,), metric=metric, samples=False, prune=False)
    monkeypatch.undo()
    assert result.fake_moments.shell_s2 is None  # FD∞ is skipped here: its 15 dim x dim sums are not taken either
    assert result.real_moments.unit_s2 is None and result.fake_moments.unit_s2 is None

    seen = np.asarray(real, np.float64)
    if metric == "cosine":
        seen = seen / np.linalg.norm(seen, axis=1, keepdims=True)
    centred = seen - seen.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular[:PCA_COMPONENTS] ** 2 / (len(seen) - 1)
    basis = result.projection.basis
    assert basis.components.shape == (PCA_COMPONENTS, dim)
    cosines = np.abs(np.sum(basis.components * axes[:PCA_COMPONENTS], axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-9)  # the same axes, up to sign
    np.testing.assert_allclose(basis.explained_variance, variance, rtol=1e-9)
    np.testing.assert_allclose(
        basis.explained_variance_ratio, variance / ((singular**2).sum() / (len(seen) - 1)), rtol=1e-9
    )
    np.testing.assert_allclose(basis.mean, seen.mean(axis=0), rtol=1e-12, atol=1e-12)

    for role, rows in (("real", real), ("fake", fake)):
        unit = np.asarray(rows, np.float64) / np.linalg.norm(np.asarray(rows, np.float64), axis=1, keepdims=True)
        values = np.linalg.eigvalsh(unit @ unit.T / len(unit))
        values = values[values > 0]
        assert result.metrics[f"vendi_{role}"] == pytest.approx(np.exp(-(values * np.log(values)).sum()), rel=1e-9)


def test_gram_route_equals_the_covariance_route():
    """The two exact routes of the plots' PCA agree on the same rows (a set just below its dim)."""
    from largeemb.kernels.moments import Moments
    from largeemb.passes.projection import basis_from_moments, basis_from_rows

    rows = mixture(40, 48, 3).astype(np.float64) * np.linspace(0.5, 3.0, 48)
    moments = Moments.of_rows(rows, rows[0], rows)
    by_cov, by_rows = basis_from_moments(moments), basis_from_rows(rows, moments.mean)
    np.testing.assert_allclose(by_rows.components, by_cov.components, atol=1e-8)  # signs fixed the same way
    np.testing.assert_allclose(by_rows.explained_variance, by_cov.explained_variance, rtol=1e-9)
    np.testing.assert_allclose(by_rows.explained_variance_ratio, by_cov.explained_variance_ratio, rtol=1e-9)


def test_a_long_dim_cubed_step_is_announced_with_its_estimate_before_it_starts(stores, tmp_path, monkeypatch):
    """Each O(dim³) step estimated above LONG_STEP_S gets one warning line with its estimate, before it runs."""
    import logging

    from largeemb.metrics import fd
    from largeemb.run import progress

    events = []

    class Recorder(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                events.append(record.getMessage())

    real_fd = fd.frechet_distance
    monkeypatch.setattr(fd, "frechet_distance", lambda *a, **k: events.append("FD runs") or real_fd(*a, **k))
    handler = Recorder()
    logging.getLogger("largeemb").addHandler(handler)
    try:
        cli_evaluate(stores["real"], stores["fake"], tmp_path / "quiet", "--no-plots", "--no-samples")
        assert events == ["FD runs"]  # dim 6: seconds are far below the threshold, nothing announced
        events.clear()
        monkeypatch.setattr(progress, "LONG_STEP_S", 0.0)  # every step counts as long now
        done = cli_evaluate(stores["real"], stores["fake"], tmp_path / "loud", "--no-samples", "--tsne-samples", "0")
    finally:
        logging.getLogger("largeemb").removeHandler(handler)
    assert done.exit_code == 0, done.stderr
    announced = [e for e in events if e.startswith("warning: ")]
    steps = ["the plots' PCA axes", "FD, ", "FD∞, ", "vendi_real, ", "vendi_fake, "]
    assert [next(i for i, e in enumerate(announced) if e.startswith("warning: " + s)) for s in steps] == list(range(5))
    assert all(" dim 6" in e and "about " in e and "(estimated)" in e for e in announced) and len(announced) == 5
    assert events.index("FD runs") == events.index(announced[1]) + 1  # FD's line comes right before FD
    stderr = [line for line in done.stderr.splitlines() if "warning: FD, " in line]
    assert len(stderr) == 1  # one line on the terminal too
