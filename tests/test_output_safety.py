"""README "Failures and resume", "nothing you made is lost": results survive failed reruns, --force replaces
only on success, one run per --out at a time, and a killed run leaves the
previous result or none, never a partial metrics.json."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import failing_units, mixture, unit_hook, zarr_store
from largeemb.api import RESULT_FILES
from largeemb.io import output
from largeemb.cli import app
from largeemb.errors import OutputLockedError
from largeemb.io.lock import LOCK_FILE, OutputLock
from largeemb.io.output import METRICS_FILE, result_dir

runner = CliRunner()
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("stores")
    nan = mixture(1500, 8, 3)
    nan[1234, 5] = np.nan
    return {
        "real": zarr_store(base / "real.zarr", mixture(1200, 8, 1), (500, 8)),
        "fake": zarr_store(base / "fake.zarr", mixture(1100, 8, 2, shift=0.2), (500, 8)),
        "nan": zarr_store(base / "nan.zarr", nan, (500, 8)),
    }


def _evaluate(stores, out, *extra, fake="fake"):
    return runner.invoke(app, ["evaluate", stores["real"], stores[fake], "--out", str(out), "--tsne-samples", "200", *extra])


def _entries(out: Path) -> list[str]:
    return sorted(os.listdir(out))


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every result file under ``out`` (stores like samples.zarr are directories) and its bytes.

    ``.work/`` is left out: a crashed run keeps its finished tasks there on
    purpose, for ``--resume``.
    """
    files = (p for p in sorted(out.rglob("*")) if p.is_file() and p.relative_to(out).parts[0] != ".work")
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@pytest.mark.slow
def test_existing_result_survives_failed_reruns_and_force_replaces_only_on_success(stores, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _evaluate(stores, out, "--k", "3").exit_code == 0
    (out / "notes.txt").write_text("mine")  # something the user put there
    (out / "k_sweep.png").write_bytes(b"plot of the same earlier run")
    before = _snapshot(out)

    def unchanged():
        assert _snapshot(out) == before

    # Without --force: refused before any work.
    refused = _evaluate(stores, out, "--k", "5")
    assert refused.exit_code == 2 and "already holds a result" in refused.stderr and "--force" in refused.stderr
    unchanged()
    # --force, but the new input is bad (found in the streaming pass, after the run claimed --out).
    bad = _evaluate(stores, out, "--k", "5", "--force", fake="nan")
    assert bad.exit_code == 2 and "first at row 1234" in bad.stderr
    unchanged()
    # --force, and the job crashes half way (an unexpected error in the cross pass).
    with unit_hook(failing_units("cross-tile-", message="worker lost")):
        crashed = _evaluate(stores, out, "--k", "5", "--force")
    assert crashed.exit_code != 0 and isinstance(crashed.exception, RuntimeError)
    unchanged()
    # --force and success: replaced; the old run's other result files go, the user's file stays.
    assert _evaluate(stores, out, "--k", "5", "--force").exit_code == 0
    assert json.loads((out / METRICS_FILE).read_text())["params"]["k"] == [5]
    assert "k_sweep.png" not in _entries(out)  # the old run's figure went with it
    assert set(_entries(out)) <= set(RESULT_FILES) | {"notes.txt"}
    assert (out / "notes.txt").read_text() == "mine"


def test_a_partial_result_without_metrics_json_still_needs_force(tmp_path, stores):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pca.png").write_bytes(b"someone's plot")
    result = _evaluate(stores, out)
    assert result.exit_code == 2 and "pca.png" in result.stderr
    assert _entries(out) == ["pca.png"]


def test_failed_run_removes_the_out_directory_it_created(tmp_path, stores):
    out = tmp_path / "deep" / "out"
    assert _evaluate(stores, out, fake="nan").exit_code == 2
    assert not out.exists()


# -- the lock ---------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from largeemb.io.lock import OutputLock
lock = OutputLock(sys.argv[1]); lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _hold_lock(out: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_second_run_on_the_same_out_refuses_while_the_first_is_alive(tmp_path, stores):
    out = tmp_path / "out"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        second = _evaluate(stores, out)
        assert second.exit_code == 2
        assert f"another largeemb run (pid {holder.pid} on {socket.gethostname()}" in second.stderr
        assert not (out / METRICS_FILE).exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock is stale and the next run goes ahead.
    assert (out / LOCK_FILE).exists()
    assert _evaluate(stores, out).exit_code == 0
    assert (out / METRICS_FILE).exists() and not (out / LOCK_FILE).exists()


def test_stale_lock_is_reported_as_such(tmp_path):
    holder = _hold_lock(tmp_path)
    holder.kill()
    holder.wait()
    with OutputLock(str(tmp_path)) as lock:
        assert lock.stale_holder["pid"] == holder.pid
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.fixture
def no_flock(monkeypatch):
    """A file system without flock (some network mounts): the pid/host fallback takes over."""
    import fcntl

    def unsupported(*_):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", unsupported)


def _write_lock(path: Path, **holder):
    (path / LOCK_FILE).write_text(json.dumps({"started": "earlier", "proc_start": None, **holder}))


def test_pid_fallback_takes_over_a_dead_process_lock(tmp_path, no_flock):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path, pid=dead.pid, host=socket.gethostname())
    with OutputLock(str(tmp_path)) as lock:
        assert lock.stale_holder["pid"] == dead.pid
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("host", ["this", "elsewhere"])
def test_pid_fallback_refuses_a_live_or_unknowable_holder(tmp_path, no_flock, host):
    _write_lock(tmp_path, pid=os.getppid(), host=socket.gethostname() if host == "this" else "node-17")
    with pytest.raises(OutputLockedError, match=f"pid {os.getppid()}"):
        OutputLock(str(tmp_path)).acquire()
    assert (tmp_path / LOCK_FILE).exists()  # someone else's lock is left alone


# -- killed runs --------------------------------------------------------------------------


def _valid(path: Path) -> dict | None:
    """Parsed metrics.json, or None if absent; a partial file fails the test here."""
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _cli(stores, out, k):
    return [sys.executable, "-m", "largeemb", "evaluate", stores["real"], stores["fake"], "--out", str(out), "--k", str(k), "--tsne-samples", "200"]


@pytest.fixture(scope="module")
def previous_result(stores, tmp_path_factory):
    """A finished run's --out, and how long a whole CLI run takes here."""
    out = tmp_path_factory.mktemp("previous") / "out"
    start = time.perf_counter()
    subprocess.run(_cli(stores, out, 3), check=True, capture_output=True, cwd=ROOT)
    return out, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_killed_cli_run_leaves_previous_result_or_none(seed, tmp_path, stores, previous_result):
    out = tmp_path / "out"
    shutil.copytree(previous_result[0], out)
    previous = (out / METRICS_FILE).read_bytes()

    # From start-up to past the end of a whole run: any phase may be hit.
    delay = np.random.default_rng(seed).uniform(0.2, 1.0) * previous_result[1]
    rerun = subprocess.Popen([*_cli(stores, out, 5), "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    time.sleep(delay)
    rerun.send_signal(signal.SIGKILL)
    rerun.wait()

    found = _valid(out / METRICS_FILE)
    assert found is None or (out / METRICS_FILE).read_bytes() == previous or found["params"]["k"] == [5]
    # The next run takes over the dead run's lock and clears its staging directory.
    with pytest.raises(KeyError):
        with result_dir(str(out), True, RESULT_FILES):
            raise KeyError("nothing to publish")
    assert not [n for n in os.listdir(out) if n.startswith((".staging-", LOCK_FILE))]
    assert _valid(out / METRICS_FILE) == found


PUBLISH_FOREVER = """
import json, os, sys, time
from largeemb.io import output
from largeemb.api import RESULT_FILES
from largeemb.io.output import result_dir
out = sys.argv[1]

def slowed(step):
    def call(*args, **kwargs):
        step(*args, **kwargs)
        time.sleep(0.003)  # widen the gaps between steps, so that kills land in them
    return call

output.os.replace = slowed(os.replace)
output.os.remove = slowed(os.remove)
for version in range(10**6):
    with result_dir(out, True, RESULT_FILES) as staging:
        staging.write_json("metrics.json", {"version": version, "padding": "x" * 200_000})
        names = ["pca.png", "samples.zarr"] if version % 2 else ["k_sweep.png"]
        for name in names:
            if name.endswith(".zarr"):
                os.makedirs(staging.file(name))
                open(os.path.join(staging.file(name), "zarr.json"), "w").write(str(version))
            else:
                open(staging.file(name), "w").write(str(version))
    if version == 0:
        print("started", flush=True)
"""


@pytest.mark.parametrize("seed", range(5))
def test_killed_publisher_never_leaves_a_mixed_or_partial_result(seed, tmp_path):
    """Kills land inside publish() often here: it is most of what the loop does."""
    out = tmp_path / "out"
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISH_FOREVER, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert publisher.stdout.readline().strip() == "started"
    time.sleep(np.random.default_rng(seed).uniform(0.05, 0.4))
    publisher.send_signal(signal.SIGKILL)
    publisher.wait()

    _assert_one_whole_version_or_none(out)


def _assert_one_whole_version_or_none(out: Path):
    found = _valid(out / METRICS_FILE)
    results = {n for n in os.listdir(out) if n in RESULT_FILES} - {METRICS_FILE}
    if found is not None:
        version = found["version"]
        assert results == ({"pca.png", "samples.zarr"} if version % 2 else {"k_sweep.png"})
        for name in results:
            content = out / name / "zarr.json" if name.endswith(".zarr") else out / name
            assert content.read_text() == str(version)


class Crash(BaseException):
    """Stands in for the process dying at one exact step."""


def _stage(staging, version):
    staging.write_json(METRICS_FILE, {"version": version})
    for name in ["pca.png", "samples.zarr"] if version % 2 else ["k_sweep.png"]:
        if name.endswith(".zarr"):
            os.makedirs(staging.file(name))
            Path(staging.file(name), "zarr.json").write_text(str(version))
        else:
            Path(staging.file(name)).write_text(str(version))


def test_crash_at_every_step_of_publish(tmp_path, monkeypatch):
    """Deterministic companion of the random kills: stop publish() after each file-system step."""
    steps = 0
    for crash_at in range(1, 50):
        out = tmp_path / f"out{crash_at}"
        with result_dir(str(out), False, RESULT_FILES) as staging:
            _stage(staging, 1)
        calls = 0

        def step(real):
            def call(*args, **kwargs):
                nonlocal calls
                calls += 1
                if calls == crash_at:
                    raise Crash
                return real(*args, **kwargs)

            return call

        with monkeypatch.context() as patch:
            for name in ("replace", "remove", "unlink"):
                patch.setattr(output.os, name, step(getattr(os, name)))
            patch.setattr(output.shutil, "rmtree", step(shutil.rmtree))
            try:
                with result_dir(str(out), True, RESULT_FILES) as staging:
                    _stage(staging, 2)
                    calls = 0  # count only what publish() does
            except Crash:
                pass
            else:
                steps = crash_at - 1
                break
        _assert_one_whole_version_or_none(out)
    assert steps >= 4  # remove old metrics, old pca.png, old samples.zarr; move new files
