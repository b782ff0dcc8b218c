"""Reference cache: same results as a plain evaluate, refused when the source changed."""

import json
import os

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import largeemb
from conftest import mixture
from largeemb.cli import app
from largeemb.io.reference import PARTITION_FILE, load_reference

runner = CliRunner()


@pytest.fixture
def stores(write_zarr):
    real = write_zarr("real.zarr", mixture(1800, 12, 1), chunks=(500, 12))
    fake = write_zarr("fake.zarr", mixture(1300, 12, 2, keep=5, shift=0.1), chunks=(400, 12))
    return real, fake


def test_reference_equals_plain_evaluate_for_every_k(stores, tmp_path):
    real, fake = stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(3, 5, 10), block_rows=700)
    for ks in ((5,), (10, 3), (3, 5, 10)):
        plain = largeemb.evaluate(real, fake, k=ks)
        cached = largeemb.evaluate(ref.path, fake, k=ks)
        assert cached.to_dict()["metrics"] == plain.to_dict()["metrics"]
        assert cached.to_dict()["by_k"] == plain.to_dict()["by_k"]
        np.testing.assert_array_equal(cached.fake_realism, plain.fake_realism)
        np.testing.assert_array_equal(cached.real_radii, plain.real_radii)
        assert cached.real["reference"] == ref.path


def test_reference_evaluate_runs_no_real_self_pass(stores, tmp_path, monkeypatch):
    """Every row of a set whose self pass runs goes through faiss once, in its own block's part."""
    from largeemb.kernels import knn

    real, fake = stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(5,))
    rows = []
    original = knn.diagonal
    monkeypatch.setattr(knn, "diagonal", lambda block, *args: rows.append(block.rows) or original(block, *args))
    largeemb.evaluate(real, fake, k=5, plots=False)
    assert sum(rows) == 1800 + 1300
    rows.clear()
    largeemb.evaluate(ref.path, fake, k=5, plots=False)
    assert sum(rows) == 1300


def test_reference_keeps_its_pruning_groups_and_works_without_them(stores, tmp_path):
    """Same results with the stored groups and without them (a reference built before they existed)."""
    real, fake = stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(5,))
    stored = ref.partition()
    assert stored is not None  # the mixture is clustered: the groups are worth keeping
    plain = largeemb.evaluate(real, fake, k=5)
    with_groups = largeemb.evaluate(ref.path, fake, k=5)
    os.remove(os.path.join(ref.path, PARTITION_FILE))
    assert load_reference(ref.path).partition() is None
    without = largeemb.evaluate(ref.path, fake, k=5)
    for result in (with_groups, without):
        assert result.to_dict()["by_k"] == plain.to_dict()["by_k"]
        np.testing.assert_array_equal(result.fake_nearest_real, plain.fake_nearest_real)


def test_changed_source_is_refused(stores, tmp_path):
    real, fake = stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(3,))
    arr = zarr.open_array(real, mode="r+")
    arr[1234, 5] = arr[1234, 5] + 1.0
    result = runner.invoke(app, ["evaluate", ref.path, fake, "--out", str(tmp_path / "out"), "--k", "3"])
    assert result.exit_code == 2
    assert "fingerprint" in result.output and real in result.output
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_cosine_reference_gives_the_same_plot_basis_and_metrics(stores, tmp_path):
    """The reference keeps the moments of unit rows, so the plots need no extra pass over the real store."""
    real, fake = stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(5,), metric="cosine")
    plain = largeemb.evaluate(real, fake, k=5, metric="cosine", tsne_samples=0)
    cached = largeemb.evaluate(ref.path, fake, k=5, metric="cosine", tsne_samples=0)
    assert cached.to_dict()["by_k"] == plain.to_dict()["by_k"]
    np.testing.assert_array_equal(cached.projection.basis.components, plain.projection.basis.components)
    np.testing.assert_array_equal(cached.projection.real.plot_coords, plain.projection.real.plot_coords)


def test_k_not_in_reference_and_wrong_metric_are_refused(stores, tmp_path):
    real, fake = stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(3, 5))
    with pytest.raises(largeemb.InputError, match="k=7"):
        largeemb.evaluate(ref.path, fake, k=7)
    with pytest.raises(largeemb.InputError, match="metric"):
        largeemb.evaluate(ref.path, fake, k=3, metric="cosine")


def test_cli_build_info_evaluate(stores, tmp_path):
    real, fake = stores
    ref, out = str(tmp_path / "ref"), str(tmp_path / "out")
    built = runner.invoke(app, ["reference", "build", real, "--out", ref, "--k", "3,5"])
    assert built.exit_code == 0, built.output
    again = runner.invoke(app, ["reference", "build", real, "--out", ref])
    assert again.exit_code == 2 and "--force" in again.output
    info = runner.invoke(app, ["reference", "info", ref])
    assert info.exit_code == 0 and json.loads(info.output)["k"] == [3, 5, 1, 4]  # k = 1 and 4 always: companions
    evaluated = runner.invoke(app, ["evaluate", ref, fake, "--out", out, "--k", "5,3", "--no-plots"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["by_k"]) == {"5", "3"}
    worst = runner.invoke(app, ["worst", out, "--n", "3"])
    assert worst.exit_code == 0 and "least covered" in worst.output
    assert "sorted by ball_count" in worst.output and "nearest_fake_dist/radius" in worst.output  # the sort key is shown
    as_json = json.loads(runner.invoke(app, ["worst", out, "--n", "2", "--json"]).output)
    assert len(as_json["fake"]) == len(as_json["real"]) == 2 and as_json["k"] == 5
    assert set(as_json["fake"][0]) == {"row", "ball_count", "realism", "nearest_real", "nearest_real_dist"}  # samples.zarr names
    for bad in ("-1", "0"):
        refused = runner.invoke(app, ["worst", out, "--n", bad])
        assert refused.exit_code == 2 and refused.output.startswith("error: --n must be at least 1")
    import shutil

    shutil.rmtree(tmp_path / "out" / "samples.zarr" / "fake" / "realism")
    damaged = runner.invoke(app, ["worst", out])
    assert damaged.exit_code == 2 and damaged.output.startswith("error: samples.zarr lacks fake/realism")
    assert len(damaged.output.strip().splitlines()) == 1


def test_info_lists_only_present_files_and_a_moved_source_can_be_pointed_at(stores, tmp_path):
    import shutil

    real, fake = stores
    moved = tmp_path / "moved.zarr"
    shutil.copytree(real, moved)
    ref = str(tmp_path / "ref")
    largeemb.build_reference(str(moved), ref, k=(3,), prune=False)
    info = json.loads(runner.invoke(app, ["reference", "info", ref]).output)
    assert not any("partition" in held for held in info["holds"]) and info["source"]["status"] == "found"
    elsewhere = tmp_path / "elsewhere.zarr"
    moved.rename(elsewhere)
    info = runner.invoke(app, ["reference", "info", ref])
    assert info.exit_code == 0 and "largeemb reference move" in json.loads(info.output)["source"]["status"]
    refused = runner.invoke(app, ["evaluate", ref, fake, "--out", str(tmp_path / "o"), "--k", "3", "--no-plots"])
    assert refused.exit_code == 2 and refused.output.startswith("error: the reference's source (the real set it was built from)")
    assert "largeemb reference move" in refused.output
    assert runner.invoke(app, ["reference", "move", ref, str(elsewhere)]).exit_code == 0
    again = runner.invoke(app, ["evaluate", ref, fake, "--out", str(tmp_path / "o"), "--k", "3", "--no-plots"])
    assert again.exit_code == 0, again.output


def test_samples_store_matches_result(stores, tmp_path):
    real, fake = stores
    out = tmp_path / "out"
    assert runner.invoke(app, ["evaluate", real, fake, "--out", str(out), "--k", "3", "--no-plots"]).exit_code == 0
    result = largeemb.evaluate(real, fake, k=3)
    group = zarr.open_group(str(out / "samples.zarr"), mode="r")
    np.testing.assert_array_equal(group["fake/realism"][...], result.fake_realism)
    np.testing.assert_array_equal(group["real/nearest_fake_dist"][...], result.real_nearest_dist)
    np.testing.assert_array_equal(group["fake/ball_count"][...], result.fake_counts)
