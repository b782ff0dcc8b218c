"""README "Failures and resume", "nothing you made is lost": a result in --out is replaced only with --force
and only by a run that finished; a rerun that fails (refused, bad input, crashed) leaves it as it was; and
no input is ever deleted or written, whether it lies inside --out or --out inside it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import QUICK_PLOTS, cli_evaluate, failing_units, mixture, one_error_line, snapshot, unit_hook, zarr_store
from largeemb.api import RESULT_FILES
from largeemb.io.output import METRICS_FILE


def _entries(out: Path) -> list[str]:
    return sorted(os.listdir(out))


@pytest.mark.slow
def test_existing_result_survives_failed_reruns_and_force_replaces_only_on_success(stores, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert cli_evaluate(stores["real"], stores["fake"], out, *QUICK_PLOTS, "--k", "3").exit_code == 0
    (out / "notes.txt").write_text("mine")  # something the user put there
    (out / "k_sweep.png").write_bytes(b"plot of the same earlier run")
    before = snapshot(out)

    def unchanged():
        assert snapshot(out) == before

    # Without --force: refused before any work.
    refused = cli_evaluate(stores["real"], stores["fake"], out, *QUICK_PLOTS, "--k", "5")
    assert refused.exit_code == 2 and "already holds a result" in refused.stderr and "--force" in refused.stderr
    unchanged()
    # --force, but the new input is bad (found in the streaming pass, after the run claimed --out).
    bad = cli_evaluate(stores["real"], stores["nan"], out, *QUICK_PLOTS, "--k", "5", "--force")
    assert bad.exit_code == 2 and "first at row 1234" in bad.stderr
    unchanged()
    # --force, and the job crashes half way (an unexpected error in the cross pass).
    with unit_hook(failing_units("cross-tile-", message="worker lost")):
        crashed = cli_evaluate(stores["real"], stores["fake"], out, *QUICK_PLOTS, "--k", "5", "--force")
    assert crashed.exit_code != 0 and isinstance(crashed.exception, RuntimeError)
    unchanged()
    # --force and success: replaced; the old run's other result files go, the user's file stays.
    assert cli_evaluate(stores["real"], stores["fake"], out, *QUICK_PLOTS, "--k", "5", "--force").exit_code == 0
    assert json.loads((out / METRICS_FILE).read_text())["params"]["k"] == [5]
    assert "k_sweep.png" not in _entries(out)  # the old run's figure went with it
    assert set(_entries(out)) <= set(RESULT_FILES) | {"notes.txt"}
    assert (out / "notes.txt").read_text() == "mine"


def test_a_partial_result_without_metrics_json_still_needs_force(tmp_path, stores):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pca.png").write_bytes(b"someone's plot")
    result = cli_evaluate(stores["real"], stores["fake"], out, *QUICK_PLOTS)
    assert result.exit_code == 2 and "pca.png" in result.stderr
    assert _entries(out) == ["pca.png"]


def test_failed_run_removes_the_out_directory_it_created(tmp_path, stores):
    out = tmp_path / "deep" / "out"
    assert cli_evaluate(stores["real"], stores["nan"], out, *QUICK_PLOTS).exit_code == 2
    assert not out.exists()


# -- inputs are never deleted or written ---------------------------------------------------


def test_an_input_where_the_result_goes_is_refused_not_replaced(stores, tmp_path):
    out = tmp_path / "out"
    fake = Path(zarr_store(out / "samples.zarr", mixture(800, 6, 2), (300, 6)))
    before = snapshot(fake)
    line = one_error_line(cli_evaluate(stores["real"], fake, out, "--no-plots", "--force"))
    assert "samples.zarr" in line and "inside --out" in line
    assert snapshot(fake) == before


def test_out_inside_an_input_store_is_refused(stores, tmp_path):
    real = Path(zarr_store(tmp_path / "real.zarr", mixture(900, 6, 1), (300, 6)))
    before = snapshot(real)
    for out in (real, real / "results"):
        line = one_error_line(cli_evaluate(real, stores["fake"], out, "--no-plots", "--force"))
        assert "inside the input" in line
    assert snapshot(real) == before


def test_an_unrelated_input_inside_out_is_fine(stores, tmp_path):
    out = tmp_path / "out"
    fake = zarr_store(out / "inputs" / "fake.zarr", mixture(800, 6, 2), (300, 6))
    assert cli_evaluate(stores["real"], fake, out, "--no-plots").exit_code == 0
