"""The command line: help everywhere, demo end to end, errors as one line."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from largeemb.cli import app

runner = CliRunner()
COMMANDS = [c.name or c.callback.__name__ for c in app.registered_commands]


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from largeemb.cli import main; sys.argv = ['largeemb', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('faiss', 'matplotlib', 'sklearn', 'dask', 'zarr') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_commands_are_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in COMMANDS:
        assert f"largeemb {name}" in readme


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--rows", "2000", "--dim", "16"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    companions = {"f1", "f8", "f1_8", "authenticity", "vendi_real", "vendi_fake", "fd_infinity", "p_precision", "p_recall"}
    assert set(metrics["metrics"]) == {"precision", "recall", "density", "coverage", "fd"} | companions
    assert metrics["schema_version"] == 2
    for key in ("real", "fake", "params", "warnings", "timings_s", "versions", "by_k"):
        assert key in metrics


def test_synth_then_evaluate_then_refuse_to_overwrite(tmp_path):
    real, fake, out = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr"), str(tmp_path / "out")
    assert runner.invoke(app, ["synth", real, "--rows", "1500", "--dim", "8"]).exit_code == 0
    assert runner.invoke(app, ["synth", fake, "--rows", "1200", "--dim", "8", "--seed", "3", "--shift", "0.2"]).exit_code == 0
    first = runner.invoke(app, ["evaluate", real, fake, "--out", out, "--k", "3", "--tsne-samples", "200"])
    assert first.exit_code == 0, first.output
    before = (tmp_path / "out" / "metrics.json").read_bytes()
    again = runner.invoke(app, ["evaluate", real, fake, "--out", out, "--k", "5"])
    assert again.exit_code == 2
    assert "error:" in again.output and "--force" in again.output
    assert (tmp_path / "out" / "metrics.json").read_bytes() == before
    forced = runner.invoke(app, ["evaluate", real, fake, "--out", out, "--k", "5", "--force", "--no-plots"])
    assert forced.exit_code == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["params"]["k"] == [5]


def test_synth_is_reproducible(tmp_path):
    import numpy as np
    import zarr

    for name in ("a.zarr", "b.zarr"):
        assert runner.invoke(app, ["synth", str(tmp_path / name), "--rows", "9000", "--dim", "4", "--seed", "7"]).exit_code == 0
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a.zarr"))[:], zarr.open_array(str(tmp_path / "b.zarr"))[:])


def test_convert_npy_round_trip(tmp_path):
    import numpy as np
    import zarr

    data = np.random.default_rng(0).standard_normal((5000, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    result = runner.invoke(app, ["convert", str(tmp_path / "x.npy"), str(tmp_path / "x.zarr")])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "x.zarr"))[:], data)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    refused = runner.invoke(app, ["convert", str(tmp_path / "obj.npy"), str(tmp_path / "obj.zarr")])
    assert refused.exit_code == 2 and "error:" in refused.output


def test_dim_mismatch_is_one_line_error(tmp_path):
    real, fake = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr")
    runner.invoke(app, ["synth", real, "--rows", "100", "--dim", "8"])
    runner.invoke(app, ["synth", fake, "--rows", "100", "--dim", "9"])
    result = runner.invoke(app, ["evaluate", real, fake, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and "dim" in result.output
    assert not (tmp_path / "o" / "metrics.json").exists()
