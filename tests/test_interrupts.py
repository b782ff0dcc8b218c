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


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("where", ["__del__", "gc callback", "unraisable hook"])
def test_an_interrupt_that_python_swallows_still_ends_the_run(where, name, monkeypatch):
    """Python runs a signal handler wherever the main thread is, also in an object's __del__ or a gc callback
    (dask's scheduler adds one to the CLI's process), where the KeyboardInterrupt it raises is only printed
    ("Exception ignored in ...") and dropped: the run went on to the end and exited 0. Also while the
    unraisable hook reports another error (there, it is raised again once the hook has returned)."""
    import gc
    import signal
    import sys
    import time

    import typer

    from largeemb.cli_process import run_action

    sig = getattr(signal, name)

    class Dropped:
        def __del__(self):
            signal.raise_signal(sig)  # its handler runs here, in __del__

    def in_gc_callback(phase, info):
        gc.callbacks.remove(in_gc_callback)
        signal.raise_signal(sig)  # its handler runs here, in the gc callback

    class Failing:
        def __del__(self):
            raise ValueError("not an interrupt")

    def reporting(unraisable):
        signal.raise_signal(sig)  # its handler runs here, in the hook
        time.sleep(0.05)

    def action():
        if where == "__del__":
            Dropped()
        elif where == "unraisable hook":
            Failing()
        else:
            gc.callbacks.append(in_gc_callback)
            gc.collect()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the run goes on
            time.sleep(0.01)
        return "ran to the end"

    if where == "unraisable hook":
        monkeypatch.setattr(sys, "unraisablehook", reporting)  # the one that the CLI's hook passes other errors to
    try:
        with pytest.raises(typer.Exit) as stopped:
            run_action(False, action)
    finally:
        if in_gc_callback in gc.callbacks:
            gc.callbacks.remove(in_gc_callback)
    assert stopped.value.exit_code == (130 if name == "SIGINT" else 143)


def test_a_signal_while_processes_start_is_held_then_raised():
    """While the cluster starts (signals_for_this_process_only), a Ctrl-C that the kernel gives to another thread
    (one that does not block it, as any thread started before) waits until the cluster has started, then
    interrupts: it was lost while the job's signals were ignored (SIG_IGN) meanwhile."""
    import signal
    import threading
    import time

    from largeemb.run.job_signals import signals_for_this_process_only

    go, sent = threading.Event(), threading.Event()

    def another_thread():
        go.wait(10)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # the kernel's choice of thread, made here
        sent.set()

    threading.Thread(target=another_thread, daemon=True).start()
    held = False
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # an earlier test's import may have replaced it
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_for_this_process_only():
                go.set()
                assert sent.wait(10)
                time.sleep(0.05)  # Python code runs meanwhile: the handler too, which only notes the signal
                held = True
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    assert held  # not cut half-way
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_processes_started_while_the_cluster_starts_are_deaf_to_the_job_signals():
    """As dask's nanny starts a worker: from a thread started inside, after a spawn context's first lock (which
    starts multiprocessing's resource tracker, and that unblocks the signals in the thread that starts it). The
    process is born with them blocked: a Ctrl-C to the process group while it starts leaves it quiet."""
    import subprocess
    import sys

    script = """
import multiprocessing, signal, subprocess, sys, threading
from largeemb.run.job_signals import signals_for_this_process_only

def start():
    multiprocessing.get_context("spawn").Lock()
    deaf = "import signal; print([s in signal.pthread_sigmask(signal.SIG_BLOCK, []) or signal.getsignal(s) is "
    deaf += "signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)])"  # blocked (now) or ignored (before)
    print(subprocess.run([sys.executable, "-c", deaf], capture_output=True, text=True, check=True).stdout)

with signals_for_this_process_only():
    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
"""
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1]
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["[True,", "True]"]
