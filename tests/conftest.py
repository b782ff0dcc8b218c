import os
import re
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zarr

from largeemb.run import graph

#: The closing line of a run that kept checkpoints.
SUMMARY = re.compile(r"(\d+) tasks computed, (\d+) loaded from checkpoints")


def mixture(rows, dim, seed, modes=8, keep=None, shift=0.0, spread=3.0, dtype=np.float32):
    """Gaussian mixture; ``keep`` limits the modes used (mode collapse)."""
    centres = np.random.default_rng(1234 + dim).normal(0, spread, (modes, dim))
    rng = np.random.default_rng(seed)
    which = rng.integers(0, keep or modes, rows)
    return (centres[which] + rng.standard_normal((rows, dim)) + shift).astype(dtype)


def zarr_store(path, data, chunks=None, zarr_format=3, **options) -> str:
    """Write ``data`` as a zarr array at ``path`` (one chunk unless told) and return the path.

    ``options`` go to ``zarr.create_array`` (shards, compressors, …).
    """
    arr = zarr.create_array(
        str(path), shape=data.shape, dtype=data.dtype, chunks=chunks or data.shape, zarr_format=zarr_format, **options
    )
    if data.size:
        arr[:] = data
    return str(path)


def is_tile(name: str) -> bool:
    """A self-pass or cross-pass tile unit."""
    return "-between-" in name or name.startswith("cross-tile-")


def slow_tiles(seconds: float, log: str | None = None, where: bool = False) -> str:
    """Source that slows the self and cross tile tasks down, so that a run can be killed part-way.

    Exec it where the graph is built (a child process before the CLI starts,
    or this process with :func:`slowed_tiles`): it adds a hook to
    ``largeemb.run.graph.unit_hooks``. Its functions are defined by exec, so
    cloudpickle sends them by value to dask workers. With ``log``, each tile
    appends its name to that file once computed (with ``where``, followed by
    the SLURM job it ran in, if any, and the process id).
    """
    return f"""
import functools, os, time
from largeemb.run import graph
def _slowed(seconds, log, name, func, *args):
    time.sleep(seconds)
    value = func(*args)
    if log:
        with open(log, "a") as fh:
            fh.write(name + (f" {{os.environ.get('SLURM_JOB_ID', '-')}} {{os.getpid()}}" if {where!r} else "") + "\\n")
    return value
def slow_tiles_hook(name, func):
    tile = "-between-" in name or name.startswith("cross-tile-")
    return functools.partial(_slowed, {seconds}, {log!r}, name, func) if tile else func
graph.unit_hooks.append(slow_tiles_hook)
"""


def recording(names: list):
    """A unit hook that records the name of every unit that computes (not those loaded from checkpoints)."""

    def hook(name, func):
        def run(*args):
            names.append(name)
            return func(*args)

        return run

    return hook


def failing_units(prefix: str, after: int = 0, message: str = "node lost"):
    """A unit hook: units whose name starts with ``prefix`` raise RuntimeError(message)
    once more than ``after`` of them have started (a node lost part-way through a pass)."""
    calls = []

    def hook(name, func):
        def failing(*args):
            calls.append(name)
            if len(calls) > after:
                raise RuntimeError(message)
            return func(*args)

        return failing if name.startswith(prefix) else func

    return hook


@contextmanager
def unit_hook(hook):
    """Apply ``hook(name, func) -> func`` to every named unit built inside the block (the graph's test seam)."""
    graph.unit_hooks.append(hook)
    try:
        yield
    finally:
        graph.unit_hooks.remove(hook)


@contextmanager
def slowed_tiles(seconds: float):
    """Tile tasks built inside the block sleep ``seconds`` first (also on dask workers)."""
    namespace = {}
    exec(slow_tiles(seconds), namespace)
    try:
        yield
    finally:
        graph.unit_hooks.remove(namespace["slow_tiles_hook"])


def finished_checkpoints(work) -> int:
    """Finished checkpoint files in a work directory (not the temporary ones being written)."""
    return sum(1 for name in os.listdir(work) if name.endswith(".npz") and ".tmp-" not in name)


@pytest.fixture(scope="session")
def stores(tmp_path_factory) -> dict[str, str]:
    """A small real/fake pair as zarr stores ("real": 900 rows, "fake": 800, dim 6, chunks of 300 rows) and
    a set with a NaN at row 1234 ("nan": 1,500 rows), for the tests of what happens around a run (errors,
    publishing, locks, resume), not of its numbers. Shared by the whole session: copy one before changing it."""
    base = tmp_path_factory.mktemp("stores")
    nan = mixture(1500, 6, 3)
    nan[1234, 5] = np.nan
    return {
        "real": zarr_store(base / "real.zarr", mixture(900, 6, 1), (300, 6)),
        "fake": zarr_store(base / "fake.zarr", mixture(800, 6, 2, shift=0.3), (300, 6)),
        "nan": zarr_store(base / "nan.zarr", nan, (300, 6)),
    }


#: Options of a CLI run with its plots on and a quick t-SNE (200 samples): it writes every result file.
QUICK_PLOTS = ("--tsne-samples", "200")


def cli_evaluate(real, fake, out, *options: str):
    """``largeemb evaluate REAL FAKE --out OUT OPTIONS…`` through the CLI, in this process; typer's result
    (``exit_code``, ``stdout``, ``stderr``, ``output``, ``exception``). It asserts nothing: the test does."""
    from typer.testing import CliRunner

    from largeemb.cli import app

    return CliRunner().invoke(app, ["evaluate", str(real), str(fake), "--out", str(out), *options])


def one_error_line(result, code: int = 2) -> str:
    """The run's one ``error:`` line, after checking that it exited with ``code`` and printed nothing else
    but batch-log lines (timestamped ``largeemb:``) and the run's warnings, which may precede it."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = [
        line for line in result.stderr.splitlines() if "largeemb: " not in line and not line.startswith("warning: ")
    ]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stderr.strip().splitlines()[-1] == lines[0]
    return lines[0]


def snapshot(path) -> dict[str, bytes]:
    """Every file under ``path`` and its bytes (stores like samples.zarr are directories), but a run's kept
    work (``.work``): a run that fails keeps its finished tasks there on purpose, for ``--resume``."""
    from pathlib import Path

    path = Path(path)
    files = (p for p in sorted(path.rglob("*")) if p.is_file() and p.relative_to(path).parts[0] != ".work")
    return {str(p.relative_to(path)): p.read_bytes() for p in files}


@pytest.fixture
def write_zarr(tmp_path):
    """Write an array to a zarr store under tmp_path and return its path."""

    def write(name, data, chunks=None, zarr_format=3):
        return zarr_store(tmp_path / name, data, chunks, zarr_format)

    return write


#: Metrics whose value may move in the last digits with the tiling: P-precision
#: and P-recall take log(d/R) from float32 tiles (README: equal to 1e-8).
TILING_SENSITIVE = ("p_precision", "p_recall")


def same_metrics(a: dict, b: dict) -> bool:
    """Identical metrics, except TILING_SENSITIVE ones, which agree to 1e-8."""
    if set(a) != set(b):
        return False
    return all(
        _both_nan(a[key], b[key])
        or (abs(a[key] - b[key]) <= 1e-8 * max(abs(a[key]), 1e-12) if key in TILING_SENSITIVE else a[key] == b[key])
        for key in a
    )


def _both_nan(x, y) -> bool:
    """A metric with no value on both sides (rarity_mean when no fake row lies in a real ball) agrees."""
    return isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y)


def nightly_result(out, real, fake, label=None, **options) -> dict:
    """Evaluate with the real ``largeemb.evaluate_to`` into ``out`` and return its metrics.json document,
    with ``label`` as its run's label (written back)."""
    import json

    import largeemb

    largeemb.evaluate_to(real, fake, str(out), **options)
    path = os.path.join(str(out), "metrics.json")
    with open(path) as fh:
        doc = json.load(fh)
    doc["run"]["label"] = label or doc["run"].get("label") or os.path.basename(str(out))
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2)
    return doc
SLURM_SCRIPTS = Path(__file__).parent / "slurm"


class Slurm:
    """The test session's SLURM cluster (tests/slurm/slurm-up.sh): submit, watch and cancel jobs."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = str(folder / "slurm.conf")

    def _call(self, *args, env=None) -> str:
        return subprocess.run(args, capture_output=True, text=True, check=True, env=env, timeout=30).stdout.strip()

    def sbatch(self, *args, env=None) -> str:
        """Submit; the job id."""
        return self._call("sbatch", "--parsable", *args, env=env).split(";")[0]

    def jobs(self) -> list[str]:
        """Ids of the jobs queued or running."""
        return self._call("squeue", "-h", "-o", "%i").split()

    def state(self, job: str) -> str:
        """RUNNING, COMPLETED, CANCELLED, FAILED, ... (kept for MinJobAge after the job ends)."""
        found = re.search(r"JobState=(\w+)", self._call("scontrol", "show", "job", job))
        return found.group(1) if found else "UNKNOWN"

    def cancel(self, job: str) -> None:
        self._call("scancel", job)

    def wait_gone(self, job: str, timeout: float = 120) -> str:
        """Wait until the job has left the queue; its final state."""
        deadline = time.monotonic() + timeout
        while job in self.jobs():
            assert time.monotonic() < deadline, f"SLURM job {job} still in the queue after {timeout} s"
            time.sleep(0.2)
        return self.state(job)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node SLURM cluster on this machine for the session (munged, slurmctld, slurmd),
    stopped afterwards. Skips, saying why, where SLURM is not installed or cannot start (not root)."""
    folder = tmp_path_factory.mktemp("slurm")
    env = {
        **os.environ, "SLURM_DIR": str(folder), "SLURM_CPUS": "4", "CTLD_PORT": str(_free_port()),
        "SLURMD_PORT": str(_free_port()),
    }
    up = subprocess.run(
        ["bash", str(SLURM_SCRIPTS / "slurm-up.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    if up.returncode:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "slurm-down.sh")], env=env, capture_output=True, timeout=120)
        reason = (up.stdout + up.stderr).strip().splitlines()
        pytest.skip(
            f"SLURM cannot run here: {reason[0] if up.returncode == 77 and reason else ' | '.join(reason[-3:])}"
        )
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield Slurm(folder)
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "slurm-down.sh")], env=env, capture_output=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n 3``; ``--dist loadgroup`` is in pyproject's addopts) each module's tests run on
    one process, so that its module-scoped fixtures (stores, reference runs) are computed once, and every test
    that uses the session's SLURM cluster runs on one process (the `slurm` fixture starts a cluster per process)."""
    for item in items:
        group = "slurm" if item.get_closest_marker("slurm") else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
