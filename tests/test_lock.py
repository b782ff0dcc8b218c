"""One run per result directory at a time: every writer of --out (evaluate, plot) takes its lock and refuses,
in one line, while another run holds it; a dead holder's lock is taken over, on file systems with flock and,
through the pid/host fallback, on those without."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import QUICK_PLOTS, cli_evaluate, one_error_line, snapshot
from largeemb.cli import app
from largeemb.errors import OutputLockedError
from largeemb.io import lock
from largeemb.io.lock import LOCK_FILE, OutputLock
from largeemb.io.output import METRICS_FILE

runner = CliRunner()
ROOT = Path(__file__).parents[1]


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
        second = cli_evaluate(stores["real"], stores["fake"], out, *QUICK_PLOTS)
        assert second.exit_code == 2
        assert f"another largeemb run (pid {holder.pid} on {socket.gethostname()}" in second.stderr
        assert not (out / METRICS_FILE).exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up: its lock is stale and the next run goes ahead.
    assert (out / LOCK_FILE).exists()
    assert cli_evaluate(stores["real"], stores["fake"], out, *QUICK_PLOTS).exit_code == 0
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


def test_plot_refuses_while_a_run_holds_the_directory(stores, tmp_path):
    out = tmp_path / "out"
    done = cli_evaluate(stores["real"], stores["fake"], out, "--tsne-samples", "0", "--plot-samples", "100")
    assert done.exit_code == 0, done.stderr
    before = snapshot(out)
    with lock.OutputLock(str(out)):  # an `evaluate --force --out OUT` in progress
        line = one_error_line(runner.invoke(app, ["plot", str(out)]))
        assert "another largeemb run" in line
    assert snapshot(out) == before
    assert runner.invoke(app, ["plot", str(out)]).exit_code == 0
