"""Reference cache: same results as a plain evaluate, refused when the source changed; `reference build`
builds whole (a failed build leaves the old reference or nothing) and checks --out before any work; a
damaged reference is one error line and no result."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import largeemb
from conftest import cli_evaluate, mixture, one_error_line, snapshot
from largeemb.cli import app
from largeemb.io.reference import PARTITION_FILE, load_reference

runner = CliRunner()


@pytest.fixture
def fresh_stores(write_zarr):
    """A real/fake pair written anew for each test, which may change it: 1,800 and 1,300 rows of dim 12,
    clustered enough to keep pruning groups, chunked differently (500 and 400 rows)."""
    real = write_zarr("real.zarr", mixture(1800, 12, 1), chunks=(500, 12))
    fake = write_zarr("fake.zarr", mixture(1300, 12, 2, keep=5, shift=0.1), chunks=(400, 12))
    return real, fake


def test_reference_equals_plain_evaluate_for_every_k(fresh_stores, tmp_path):
    real, fake = fresh_stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(3, 5, 10), block_rows=700)
    for ks in ((5,), (10, 3), (3, 5, 10)):
        plain = largeemb.evaluate(real, fake, k=ks)
        cached = largeemb.evaluate(ref.path, fake, k=ks)
        assert cached.to_dict()["metrics"] == plain.to_dict()["metrics"]
        assert cached.to_dict()["by_k"] == plain.to_dict()["by_k"]
        np.testing.assert_array_equal(cached.fake_realism, plain.fake_realism)
        np.testing.assert_array_equal(cached.real_radii, plain.real_radii)
        assert cached.real["reference"] == ref.path


def test_reference_evaluate_runs_no_real_self_pass(fresh_stores, tmp_path, monkeypatch):
    """Every row of a set whose self pass runs goes through faiss once, in its own block's part."""
    from largeemb.kernels import knn

    real, fake = fresh_stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(5,))
    rows = []
    original = knn.diagonal
    monkeypatch.setattr(knn, "diagonal", lambda block, *args: rows.append(block.rows) or original(block, *args))
    largeemb.evaluate(real, fake, k=5, plots=False)
    assert sum(rows) == 1800 + 1300
    rows.clear()
    largeemb.evaluate(ref.path, fake, k=5, plots=False)
    assert sum(rows) == 1300


def test_reference_keeps_its_pruning_groups_and_works_without_them(fresh_stores, tmp_path):
    """Same results with the stored groups and without them (a reference built before they existed)."""
    real, fake = fresh_stores
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


def test_changed_source_is_refused(fresh_stores, tmp_path):
    real, fake = fresh_stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(3,))
    arr = zarr.open_array(real, mode="r+")
    arr[1234, 5] = arr[1234, 5] + 1.0
    result = cli_evaluate(ref.path, fake, tmp_path / "out", "--k", "3")
    assert result.exit_code == 2
    assert "fingerprint" in result.output and real in result.output
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_cosine_reference_gives_the_same_plot_basis_and_metrics(fresh_stores, tmp_path):
    """The reference keeps the moments of unit rows, so the plots need no extra pass over the real store."""
    real, fake = fresh_stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(5,), metric="cosine")
    plain = largeemb.evaluate(real, fake, k=5, metric="cosine", tsne_samples=0)
    cached = largeemb.evaluate(ref.path, fake, k=5, metric="cosine", tsne_samples=0)
    assert cached.to_dict()["by_k"] == plain.to_dict()["by_k"]
    np.testing.assert_array_equal(cached.projection.basis.components, plain.projection.basis.components)
    np.testing.assert_array_equal(cached.projection.real.plot_coords, plain.projection.real.plot_coords)


def test_k_not_in_reference_and_wrong_metric_are_refused(fresh_stores, tmp_path):
    real, fake = fresh_stores
    ref = largeemb.build_reference(real, str(tmp_path / "ref"), k=(3, 5))
    with pytest.raises(largeemb.InputError, match="k=7"):
        largeemb.evaluate(ref.path, fake, k=7)
    with pytest.raises(largeemb.InputError, match="metric"):
        largeemb.evaluate(ref.path, fake, k=3, metric="cosine")


def test_cli_build_info_evaluate(fresh_stores, tmp_path):
    real, fake = fresh_stores
    ref, out = str(tmp_path / "ref"), str(tmp_path / "out")
    built = runner.invoke(app, ["reference", "build", real, "--out", ref, "--k", "3,5"])
    assert built.exit_code == 0, built.output
    again = runner.invoke(app, ["reference", "build", real, "--out", ref])
    assert again.exit_code == 2 and "--force" in again.output
    info = runner.invoke(app, ["reference", "info", ref])
    shown = json.loads(info.output)
    assert info.exit_code == 0 and shown["k"] == [1, 3, 4, 5, 9] and shown["k_for_companions"] == [1, 4, 9]  # kept
    evaluated = cli_evaluate(ref, fake, out, "--k", "5,3", "--no-plots")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["by_k"]) == {"5", "3"}
    worst = runner.invoke(app, ["worst", out, "--n", "3"])
    assert worst.exit_code == 0 and "least covered" in worst.output
    # The sort key is shown:
    assert "sorted by ball_count" in worst.output and "nearest_fake_dist/radius" in worst.output
    as_json = json.loads(runner.invoke(app, ["worst", out, "--n", "2", "--json"]).output)
    assert len(as_json["fake"]) == len(as_json["real"]) == 2 and as_json["k"] == 5
    # samples.zarr's names:
    assert set(as_json["fake"][0]) == {"row", "ball_count", "realism", "nearest_real", "nearest_real_dist"}
    for bad in ("-1", "0"):
        refused = runner.invoke(app, ["worst", out, "--n", bad])
        assert refused.exit_code == 2 and refused.output.startswith("error: --n must be at least 1")
    import shutil

    shutil.rmtree(tmp_path / "out" / "samples.zarr" / "fake" / "realism")
    damaged = runner.invoke(app, ["worst", out])
    assert damaged.exit_code == 2 and damaged.output.startswith("error: samples.zarr lacks fake/realism")
    assert len(damaged.output.strip().splitlines()) == 1


def test_info_lists_only_present_files_and_a_moved_source_can_be_pointed_at(fresh_stores, tmp_path):
    import shutil

    real, fake = fresh_stores
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
    refused = cli_evaluate(ref, fake, tmp_path / "o", "--k", "3", "--no-plots")
    assert refused.exit_code == 2 and refused.output.startswith(
        "error: the reference's source (the real set it was built from)"
    )
    assert "largeemb reference move" in refused.output
    assert runner.invoke(app, ["reference", "move", ref, str(elsewhere)]).exit_code == 0
    again = cli_evaluate(ref, fake, tmp_path / "o", "--k", "3", "--no-plots")
    assert again.exit_code == 0, again.output


def test_samples_store_matches_result(fresh_stores, tmp_path):
    real, fake = fresh_stores
    out = tmp_path / "out"
    assert cli_evaluate(real, fake, out, "--k", "3", "--no-plots").exit_code == 0
    result = largeemb.evaluate(real, fake, k=3)
    group = zarr.open_group(str(out / "samples.zarr"), mode="r")
    np.testing.assert_array_equal(group["fake/realism"][...], result.fake_realism)
    np.testing.assert_array_equal(group["real/nearest_fake_dist"][...], result.real_nearest_dist)
    np.testing.assert_array_equal(group["fake/ball_count"][...], result.fake_counts)


# -- building whole, and damage refused --------------------------------------------------


def _build(real, out, *extra):
    return runner.invoke(app, ["reference", "build", str(real), "--out", str(out), "--k", "3", *extra])


def test_a_failed_reference_build_leaves_no_empty_out_and_keeps_the_old_one(stores, tmp_path):
    from conftest import failing_units, unit_hook

    crash = failing_units("radii-")
    out = tmp_path / "ref"
    with unit_hook(crash):
        assert _build(stores["real"], out).exit_code != 0
    assert not out.exists()  # the nightly script's test could not mistake it for a reference
    assert _build(stores["real"], out).exit_code == 0
    before = snapshot(out)
    with unit_hook(crash):
        assert _build(stores["real"], out, "--force").exit_code != 0
    assert snapshot(out) == before


def test_nightly_script_rebuilds_a_reference_directory_without_reference_json(tmp_path):
    import subprocess

    script = Path(__file__).parents[1] / "jobs" / "nightly" / "nightly-evaluate.sh"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    stub = bin_dir / "largeemb"
    stub.write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    stub.chmod(0o755)
    (tmp_path / "ref").mkdir()  # what a killed build used to leave
    (tmp_path / "gen" / "run1.zarr").mkdir(parents=True)
    env = {
        **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "REAL_SOURCE": "real.zarr",
        "REFERENCE": str(tmp_path / "ref"), "GENERATED": str(tmp_path / "gen"), "RESULTS": str(tmp_path / "results"),
        "WORKERS": "1",
    }
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=30)
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("reference build real.zarr --out") and lines[1].startswith("evaluate ")


def test_reference_build_checks_out_before_any_work(stores, tmp_path):
    from conftest import unit_hook

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    units = []
    with unit_hook(lambda name, func: units.append(name) or func):
        line = one_error_line(_build(stores["real"], blocker / "ref"))
    assert "cannot write the output directory" in line and not units


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_reference_build_refuses_a_read_only_out_before_any_work(stores, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    line = one_error_line(_build(stores["real"], out))
    assert "cannot write" in line


@pytest.fixture(scope="module")
def reference(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref"
    assert _build(stores["real"], out).exit_code == 0
    return out


def _damage_moments_missing(ref):
    (ref / "moments.npz").unlink()


def _damage_moments_garbage(ref):
    (ref / "moments.npz").write_bytes(b"garbage" * 10)


def _damage_radii_missing(ref):
    shutil.rmtree(ref / "radii.zarr")


def _damage_radii_garbage(ref):
    (ref / "radii.zarr" / "zarr.json").write_text("{not json")


def _damage_no_source(ref):
    meta = json.loads((ref / "reference.json").read_text())
    del meta["source"]
    (ref / "reference.json").write_text(json.dumps(meta))


def _damage_short_radii(ref):
    import zarr

    radii = zarr.open_array(ref / "radii.zarr", mode="r")[:-10]
    shutil.rmtree(ref / "radii.zarr")
    zarr.create_array(ref / "radii.zarr", shape=radii.shape, dtype=radii.dtype)[:] = radii


DAMAGE = [
    _damage_moments_missing, _damage_moments_garbage, _damage_radii_missing, _damage_radii_garbage, _damage_no_source,
    _damage_short_radii,
]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__[8:] for d in DAMAGE])
def test_a_damaged_reference_is_one_line_and_leaves_nothing(damage, reference, stores, tmp_path):
    ref = tmp_path / "ref"
    shutil.copytree(reference, ref)
    damage(ref)
    out = tmp_path / "out"
    line = one_error_line(cli_evaluate(ref, stores["fake"], out, "--no-plots", "--k", "3"))
    assert "damaged reference" in line and "rebuild" in line
    assert not out.exists()
