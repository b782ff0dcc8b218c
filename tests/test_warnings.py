"""Warnings: what is odd in the input but not wrong (duplicate rows, an integer dtype, small sets, a large dim)
is said once, in metrics.json and on stderr, naming what it applies to, and the run goes on."""

from __future__ import annotations

import json

import numpy as np
import pytest

import largeemb
from conftest import cli_evaluate, zarr_store
from largeemb import api
from largeemb.config import EvaluateConfig
from largeemb.io import checks
from largeemb.io.store import Source

DIM = 4


@pytest.mark.slow
def test_warnings_reach_metrics_json_and_stderr(tmp_path):
    rng = np.random.default_rng(0)
    unique = rng.integers(-50, 50, (100, DIM))
    real = zarr_store(tmp_path / "dup.zarr", np.repeat(unique, 3, axis=0).astype(np.int32))  # each row 3 times
    fake = zarr_store(tmp_path / "fake.zarr", rng.standard_normal((400, DIM)).astype(np.float32) * 20)
    out = tmp_path / "out"
    result = cli_evaluate(real, fake, out, "--k", "2")
    assert result.exit_code == 0, result.output
    warnings = json.loads((out / "metrics.json").read_text())["warnings"]
    expected = {
        "zero radii": "real rows have a zero k-NN radius from duplicate rows (300 at k=2)",
        "integer cast": "real array has integer dtype int32: cast to float",
        "small real set": "real set has only 300 rows",
        "small fake set": "fake set has only 400 rows",
    }
    for name, text in expected.items():
        assert any(text in w for w in warnings), (name, warnings)
        assert f"warning: {text}" in result.stderr, (name, result.stderr)
    assert not any("radius" in w and "fake" in w for w in warnings)  # fake rows are distinct


def test_zero_radius_warning_names_every_k_it_applies_to():
    rng = np.random.default_rng(0)
    real = np.repeat(rng.standard_normal((100, DIM)), 3, axis=0)  # two exact twins per row: radius 0 for k = 1, 2
    result = api.evaluate(real, rng.standard_normal((300, DIM)), k=(1, 2, 5), plots=False, samples=False)
    (warning,) = [w for w in result.warnings if "zero k-NN radius" in w]
    assert "300 at k=1, 300 at k=2)" in warning and "k=5" not in warning


def test_large_dim_warning():
    cfg = EvaluateConfig(k=(5,))
    small, large = (Source("r", "", 2000, d, "float32") for d in (checks.LARGE_DIM, checks.LARGE_DIM + 1))
    assert not any("dim" in w for w in checks.check_pair(small, small, cfg.max_k))
    (warning,) = [w for w in checks.check_pair(large, large, cfg.max_k) if "dim" in w]
    assert f"dim {checks.LARGE_DIM + 1} > {checks.LARGE_DIM}" in warning and "MiB" in warning


def test_a_set_evaluated_against_itself_is_named_and_fd_infinity_is_not_negative():
    rng = np.random.default_rng(8)
    rows = rng.standard_normal((1200, 6)).astype(np.float32)
    result = largeemb.evaluate(rows, rows.copy(), k=5, plots=False, samples=False)
    assert any("same content as the real set" in w for w in result.warnings)
    intercept = result.details["fd_infinity"]["intercept"]
    assert result.metrics["fd_infinity"] == max(intercept, 0.0) >= 0.0
    if intercept < 0:
        assert any("FD∞ extrapolated to" in w for w in result.warnings)
    other = largeemb.evaluate(rows, rows[::-1].copy() + 0.5, k=5, plots=False, samples=False)
    assert not any("same content" in w for w in other.warnings)


def test_a_references_zero_radii_are_said_in_full_at_build_and_shortly_on_each_evaluate(tmp_path):
    from typer.testing import CliRunner

    from largeemb.cli import app

    rng = np.random.default_rng(12)
    base = rng.standard_normal((400, 4)).astype(np.float32)
    real = zarr_store(tmp_path / "real.zarr", np.concatenate([base[:20]] * 7 + [base[20:]]))  # zero radii at k = 5
    np.save(tmp_path / "fake.npy", rng.standard_normal((400, 4)).astype(np.float32))
    runner = CliRunner()
    built = runner.invoke(app, ["reference", "build", real, "--out", str(tmp_path / "ref"), "--k", "5"])
    assert built.exit_code == 0 and built.output.count("real rows have a zero k-NN radius (") == 0
    assert built.output.count("real rows have a zero k-NN radius from duplicate rows (140 at k=5)") == 1
    for night in ("a", "b"):
        result = runner.invoke(app, ["evaluate", str(tmp_path / "ref"), str(tmp_path / "fake.npy"), "--out",
                                     str(tmp_path / night), "--no-plots"])
        assert result.exit_code == 0, result.output
        assert "the reference's zero radii (140 at k=5)" in result.output
        assert "real rows have a zero k-NN radius" not in result.output


def test_fake_rows_that_carry_density_are_named_with_their_ball_counts():
    """Near-empty inputs among unit-vector embeddings (as text-lsa's near-empty texts) sit at about the same
    distance from every row, inside every real ball larger than that: density rests on them. The counts in the
    warning are checked against a float64 brute force; ordinary rows raise no such warning."""
    rng = np.random.default_rng(21)

    def unit(rows):
        x = rng.standard_normal((rows, 64))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    real, fake = unit(600), unit(600)
    fake[[17, 400]] *= [[0.05], [0.4]]  # two near-empty inputs
    result = api.evaluate(real, fake, k=(3, 5), plots=False, samples=False, companions=())
    (warning,) = [w for w in result.warnings if "density rests on" in w]
    between = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    radius = np.sort(between, axis=1)[:, 3]  # the 3rd neighbour, the row itself first
    inside = (np.sqrt(((fake[:, None] - real[None]) ** 2).sum(-1)) < radius[None]).sum(1)
    low, high = sorted(inside[[17, 400]])
    assert low < high and np.sort(inside)[-3] < 600 / 10  # two hubs, in different numbers of balls
    assert f"density rests on 2 of 600 fake rows (row 17, 400): they lie in {low}-{high} of the 600 real" in warning
    assert "at k=3 (the median row: " + f"{int(np.median(inside))})" in warning
    ordinary = api.evaluate(real, unit(600), k=(3, 5), plots=False, samples=False, companions=())
    assert not any("density rests on" in w for w in ordinary.warnings)
