"""jobs/nightly/nightly-evaluate.sh run for real: the backlog of generator outputs
evaluated in one call, the history appended once per output, the trend redrawn,
exit 4 when a gate fails, and a killed reference build resumed rather than stuck."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import zarr_store
from largeemb.series.history import read_history

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "jobs" / "nightly" / "nightly-evaluate.sh"


@pytest.fixture
def nightly(tmp_path, write_zarr):
    """The script's environment: a real store, an empty GENERATED, and `largeemb` on PATH running this checkout."""
    rng = np.random.default_rng(3)
    real = write_zarr("real", rng.standard_normal((800, 6)).astype(np.float32))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "largeemb").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m largeemb "$@"\n')
    (bin_dir / "largeemb").chmod(0o755)
    env = {
        **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "REAL_SOURCE": real,
        "REFERENCE": str(tmp_path / "ref"), "GENERATED": str(tmp_path / "generated"),
        "RESULTS": str(tmp_path / "results"), "K": "5", "WORKERS": "0",
        "EVALUATE_OPTIONS": "--tsne-samples 200",  # quick figures: the job, not the t-SNE, is tested here
    }
    os.makedirs(env["GENERATED"])

    def output(name: str, shift: float, age_s: float = 0.0):
        path = zarr_store(
            os.path.join(env["GENERATED"], f"{name}.zarr"), (rng.standard_normal((700, 6)) + shift).astype(np.float32)
        )
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))

    def run(**extra):
        return subprocess.run(["bash", str(SCRIPT)], env={**env, **extra}, capture_output=True, text=True, timeout=300)

    return env, output, run


def test_three_outputs_arriving_at_once_are_all_evaluated_oldest_first(nightly):
    env, output, run = nightly
    output("step-1000", 0.0, age_s=30)
    output("step-3000", 0.1, age_s=10)
    output("step-2000", 0.05, age_s=20)
    first = run()
    assert first.returncode == 0, first.stderr
    results = Path(env["RESULTS"])
    assert all((results / name / "metrics.json").is_file() for name in ("step-1000", "step-2000", "step-3000"))
    assert [line["run"]["label"] for line in read_history(str(results / "history.jsonl"))] == [
        "step-1000", "step-2000", "step-3000",
    ]
    assert (results / "trend" / "trend.png").is_file() and (results / "trend" / "history.html").is_file()
    again = run()  # nothing new: nothing evaluated, nothing appended
    assert again.returncode == 0 and "nothing to evaluate" in again.stderr
    assert len(read_history(str(results / "history.jsonl"))) == 3


def test_a_regression_exits_4_after_every_output_is_published(nightly):
    env, output, run = nightly
    output("good", 0.0, age_s=20)
    assert run().returncode == 0
    output("worse", 1.5, age_s=10)
    output("fine", 0.0)
    gated = run(FAIL_ON_REGRESSION="3", EVALUATE_OPTIONS="--no-plots --precision float32")
    assert gated.returncode == 4, gated.stderr
    assert "worse: regression:" in gated.stdout
    results = Path(env["RESULTS"])
    assert (results / "worse" / "metrics.json").is_file() and (results / "fine" / "metrics.json").is_file()
    assert (results / "good" / "tsne.png").is_file() and not (results / "fine" / "tsne.png").exists()  # the options
    with open(results / "fine" / "metrics.json") as fh:
        assert json.load(fh)["params"]["precision"] == "float32"
    assert len(read_history(str(results / "history.jsonl"))) == 3
    with open(results / "trend" / "history.html") as fh:
        assert "worse" in fh.read()


def test_a_killed_reference_build_does_not_leave_the_nightly_stuck(nightly, tmp_path):
    env, output, run = nightly
    env["REAL_SOURCE"] = zarr_store(
        str(tmp_path / "big.zarr"), np.random.default_rng(4).standard_normal((8_000, 6)).astype(np.float32)
    )
    output("step-1", 0.0)
    # The nightly's own build, killed as soon as its work directory exists (SIGKILL: nothing cleaned up).
    build = subprocess.Popen(
        [
            sys.executable, "-m", "largeemb", "reference", "build", env["REAL_SOURCE"], "--out", env["REFERENCE"],
            "--k", env["K"],
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    work = Path(env["REFERENCE"]) / ".work"
    deadline = time.time() + 120
    while build.poll() is None and time.time() < deadline and not work.is_dir():
        time.sleep(0.01)
    build.send_signal(signal.SIGKILL)
    build.wait()
    assert not (Path(env["REFERENCE"]) / "reference.json").exists()
    for _ in range(2):  # the first night finishes the build and evaluates; the second has nothing to do
        night = run()
        assert night.returncode == 0, night.stderr
    assert (Path(env["RESULTS"]) / "step-1" / "metrics.json").is_file()
    with open(Path(env["REFERENCE"]) / "reference.json") as fh:
        assert json.load(fh)["k"]
