"""Memorisation audit, MiFID and ``largeemb worst --copies`` against independent oracles.

- MiFID: Lightning-AI/torchmetrics ``src/torchmetrics/image/mifid.py`` (``_compute_cosine_distance``,
  ``_mifid_compute``) and ``image/fid.py`` (``_compute_fid``) at commit
  dab033394560ab3ce05e3d14c13f32e4cde6b351, ported to NumPy float64 below (features1 = real, as its
  ``compute`` passes them: for each real row the minimum over the fake rows of 1 − |cos|, then the mean).
- Memorisation: a float64 brute force of each fake row's nearest real row (lowest index on ties) and that
  real row's nearest other real row.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import largeemb
from conftest import mixture
from largeemb.cli import app

runner = CliRunner()


def _sq(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def torchmetrics_fid(mu1, sigma1, mu2, sigma2):
    a = ((mu1 - mu2) ** 2).sum()
    b = np.trace(sigma1) + np.trace(sigma2)
    c = np.sqrt(np.linalg.eigvals(sigma1 @ sigma2).astype(complex)).real.sum()
    return a + b - 2 * c


def torchmetrics_mifid(real, fake, eps=0.1, torchmetrics_rows=True):
    """``_mifid_compute`` on torch.cov statistics (unbiased), features1 = real, features2 = fake.

    torchmetrics leaves out rows whose entries sum to 0; largeemb rows of zero length (``torchmetrics_rows``
    False): the two agree unless a nonzero row sums to 0 (the lattice set has such rows).
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    fid = torchmetrics_fid(real.mean(0), np.cov(real.T), fake.mean(0), np.cov(fake.T))
    if torchmetrics_rows:
        f1, f2 = real[real.sum(1) != 0], fake[fake.sum(1) != 0]
    else:
        f1, f2 = real[np.abs(real).sum(1) != 0], fake[np.abs(fake).sum(1) != 0]
    n1, n2 = f1 / np.linalg.norm(f1, axis=1, keepdims=True), f2 / np.linalg.norm(f2, axis=1, keepdims=True)
    d = 1.0 - np.abs(n1 @ n2.T)
    mean_min_d = d.min(axis=1).mean()
    distance = mean_min_d if mean_min_d < eps else 1.0
    return (fid / (distance + 10e-15) if fid > 1e-8 else 0.0), mean_min_d


def brute_memorization(real, fake, threshold=1 / 3):
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    to_real = np.sqrt(_sq(fake, real))
    nearest = to_real.argmin(axis=1)  # lowest index on ties
    dist = to_real[np.arange(len(fake)), nearest]
    own = np.sqrt(_sq(real, real))
    np.fill_diagonal(own, np.inf)
    radius = own.min(axis=1)[nearest]
    return (dist < threshold * radius) | (dist == 0), dist, nearest


def _sets():
    rng = np.random.default_rng(11)
    lattice = np.round(rng.standard_normal((600, 5)) * 2).astype(np.float32)  # duplicated real rows
    near = mixture(600, 12, 4)
    copied = near[:550] + rng.standard_normal((550, 12)).astype(np.float32) * 0.02  # close to real rows
    return {
        "gaussian": (rng.standard_normal((600, 12)).astype(np.float32) * 2,
                     rng.standard_normal((540, 12)).astype(np.float32) * 2 + 0.3),
        "near copies": (near, np.concatenate([copied, near[:40]])),  # 40 exact copies
        "duplicates": (lattice, np.concatenate([lattice[:200], np.round(rng.standard_normal((300, 5)) * 2)])),
    }


@pytest.mark.parametrize("name", ["gaussian", "near copies", "duplicates"])
def test_memorization_and_mifid_equal_the_oracles_for_any_block_size(name):
    real, fake = _sets()[name]
    flags, _, _ = brute_memorization(real, fake)
    expected_mifid, mean_min_d = torchmetrics_mifid(real, fake, torchmetrics_rows=name != "duplicates")
    for block_rows in (100, 256, 4096):
        result = largeemb.evaluate(
            real, fake, k=3, companions=("memorization", "mifid"), plots=False, block_rows=block_rows
        )
        out = result.to_dict()
        assert result.metrics["memorization"] == pytest.approx(flags.mean(), abs=0), block_rows
        assert out["details"]["memorization"]["threshold"] == pytest.approx(1 / 3)
        assert out["details"]["memorization"]["memorized_rows"] == int(flags.sum())
        assert out["details"]["mifid"]["mean_min_cosine_distance"] == pytest.approx(mean_min_d, rel=1e-9, abs=1e-12)
        assert result.metrics["mifid"] == pytest.approx(expected_mifid, rel=1e-6), block_rows
    if name == "near copies":  # the penalty applies (mean min distance < 0.1) and divides FD
        assert mean_min_d < 0.1 and expected_mifid > result.metrics["fd"]
        assert flags.mean() > 0.5


def test_worst_copies_lists_the_closest_pairs_from_samples_zarr(tmp_path):
    """Exact copies first, then by distance (oracle: the brute force); --json and the table agree."""
    real, fake = _sets()["near copies"]
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    out = tmp_path / "o"
    done = runner.invoke(app, ["evaluate", str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--out", str(out),
                               "--no-plots", "--companions", "memorization"])
    assert done.exit_code == 0, done.output
    listed = json.loads(runner.invoke(app, ["worst", str(out), "--copies", "--n", "50", "--json"]).output)["copies"]
    flags, dist, nearest = brute_memorization(real, fake)
    order = np.lexsort((np.arange(len(dist)), dist))[:50]
    assert [row["row"] for row in listed[:40]] == list(range(550, 590))  # the 40 exact copies, by row
    assert [row["row"] for row in listed[40:]] == list(order[40:])
    assert [row["nearest_real"] for row in listed] == list(nearest[order])
    np.testing.assert_allclose([row["nearest_real_dist"] for row in listed], dist[order], rtol=1e-5, atol=1e-6)
    assert all(row["memorization_ratio"] == 0.0 for row in listed[:40])
    text = runner.invoke(app, ["worst", str(out), "--copies", "--n", "3"]).output
    assert text.startswith("closest fake-real pairs") and "memorization_ratio" in text


def test_memorization_needs_per_sample_values_and_is_on_by_default():
    real, fake = _sets()["gaussian"]
    on = largeemb.evaluate(real, fake, k=3, plots=False).to_dict()
    assert "memorization" in on["metrics"]
    # A share of 0 or 1 gets no binomial standard error (p(1 - p) = 0 would claim certainty).
    share = on["metrics"]["memorization"]
    assert ("memorization" in on["standard_errors_given_real"]) == (0 < share < 1)
    assert "memorization" not in on["standard_errors"]
    assert "memorization" not in largeemb.evaluate(real, fake, k=3, plots=False, samples=False).metrics
    off = largeemb.evaluate(real, fake, k=3, plots=False, samples=False, companions=("memorization",))
    assert "memorization" not in off.metrics


def test_mifid_without_penalty_is_fd_and_zero_rows_are_left_out():
    """Far sets: the mean minimum cosine distance is above 0.1, the penalty 1, MiFID = FD (torchmetrics).
    A zero real row has no cosine: left out, and counted."""
    real, fake = _sets()["gaussian"]
    real = real.copy()
    real[7] = 0
    result = largeemb.evaluate(real, fake, k=3, plots=False, samples=False, companions=("mifid",))
    details = result.to_dict()["details"]["mifid"]
    assert details["penalty"] == 1.0 and details["real_rows_left_out"] == 1
    assert result.metrics["mifid"] == pytest.approx(result.metrics["fd"] / (1 + 10e-15), rel=1e-12)


def test_memorization_and_kernel_companions_from_a_reference_equal_a_direct_run(write_zarr, tmp_path):
    """A reference keeps the k = 1 radii the audit needs; the kernel passes read its real store."""
    real, fake = _sets()["near copies"]
    ref = largeemb.build_reference(write_zarr("real.zarr", real), str(tmp_path / "ref"), k=(3,))
    companions = ("memorization", "mifid", "kad", "rke")
    direct = largeemb.evaluate(real, fake, k=3, plots=False, companions=companions)
    cached = largeemb.evaluate(ref.path, fake, k=3, plots=False, companions=companions)
    for key in ("memorization", "mifid", "kad", "rke_real", "rke_fake"):
        assert cached.metrics[key] == pytest.approx(direct.metrics[key], rel=1e-12), key
