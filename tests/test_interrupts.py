"""Ctrl-C and SIGTERM: the run unwinds to one error line and exit 130 or 143, publishes nothing, removes its
lock and staging directory, keeps its finished tasks for --resume and leaves no worker process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from largeemb.io import lock, output


def test_sigterm_unwinds_like_ctrl_c(stores, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import finished_checkpoints, slow_tiles

    out = tmp_path / "out"
    job = subprocess.Popen(
        [
            sys.executable, "-c",
            slow_tiles(0.2)
            + "from largeemb.cli import main\nimport sys\nsys.argv = ['largeemb'] + sys.argv[1:]\nmain()", "evaluate",
            stores["real"], stores["fake"], "--out", str(out), "--no-plots", "--block-rows", "128",
            "--threads-per-worker", "1",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
    )
    deadline = time.monotonic() + 60
    while not ((out / ".work").is_dir() and finished_checkpoints(out / ".work") >= 2):
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 143
    assert [line for line in err.splitlines() if "largeemb: " not in line] == [
        "error: terminated (SIGTERM), nothing was published"
    ]
    left = set(os.listdir(out))
    assert lock.LOCK_FILE not in left and not [n for n in left if n.startswith(output.STAGING_PREFIX)]
    assert ".work" in left  # finished tasks kept for --resume


@pytest.mark.slow
@pytest.mark.parametrize("name, to_group", [("SIGINT", True), ("SIGTERM", False), ("SIGTERM", True)])
def test_an_interrupt_with_worker_processes_is_one_line(name, to_group, stores, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it), SIGTERM to the CLI alone
    (Kubernetes) or to every process (SLURM) with --workers 2: the interrupted line is the only one after the
    progress lines (the workers' tracebacks and dask's logs said 74 lines more), exit 130 / 143, lock and
    staging removed, no worker process left behind."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import finished_checkpoints, slow_tiles

    out = tmp_path / "out"
    job = subprocess.Popen(
        [
            sys.executable, "-c",
            slow_tiles(0.2)
            + "from largeemb.cli import main\nimport sys\nsys.argv = ['largeemb'] + sys.argv[1:]\nmain()", "evaluate",
            stores["real"], stores["fake"], "--out", str(out), "--no-plots", "--block-rows", "128", "--workers", "2",
            "--threads-per-worker", "1",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((out / ".work").is_dir() and finished_checkpoints(out / ".work") >= 2):
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()
            time.sleep(0.02)
        children = subprocess.run(
            ["pgrep", "-P", str(job.pid), "-f", "spawn_main"], capture_output=True, text=True
        ).stdout
        workers = [int(pid) for pid in children.split()]
        sig = getattr(signal, name)
        os.killpg(job.pid, sig) if to_group else job.send_signal(sig)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == (130 if name == "SIGINT" else 143), err
    line = (
        "error: interrupted, nothing was published"
        if name == "SIGINT"
        else "error: terminated (SIGTERM), nothing was published"
    )
    assert [text for text in err.splitlines() if text.strip() and "largeemb: " not in text] == [line], err
    left = set(os.listdir(out))
    assert lock.LOCK_FILE not in left and not [n for n in left if n.startswith(output.STAGING_PREFIX)]
    assert ".work" in left  # finished tasks kept for --resume
    assert len(workers) == 2
    deadline = time.monotonic() + 10
    while [pid for pid in workers if _alive(pid)]:  # closed by the CLI, or gone with it
        assert time.monotonic() < deadline, [pid for pid in workers if _alive(pid)]
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "zombie" not in next(line for line in fh if line.startswith("State:"))
    except OSError:
        return False
