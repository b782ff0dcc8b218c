"""Stores that fail while being read: transient errors are retried and change nothing, then reported in one
line with exit 3 (on dask workers too); a server that never answers times out instead of hanging; a static
HTTP server that refuses listings is still read; a chunk directory that cannot be listed is named as such,
not called missing."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from conftest import cli_evaluate, mixture, one_error_line, zarr_store
from largeemb import api
from largeemb.config import ReadRetry
from largeemb.io import faults, store
from largeemb.io.output import METRICS_FILE


class FlakyArray:
    """A zarr array whose first ``failures`` reads raise a transient error."""

    def __init__(self, array, failures: int, error=ConnectionError):
        self.array, self.failures, self.error = array, failures, error
        self.calls = 0
        self.lock = threading.Lock()

    def _maybe_fail(self):
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise self.error("connection reset by peer")

    def __getitem__(self, key):
        self._maybe_fail()
        return self.array[key]

    def get_orthogonal_selection(self, key):
        self._maybe_fail()
        return self.array.get_orthogonal_selection(key)

    def __getattr__(self, name):
        return getattr(self.array, name)


@pytest.fixture
def fast_retry(monkeypatch):
    monkeypatch.setattr(faults, "READ_RETRY", ReadRetry(attempts=3, first_delay_s=0.001, max_delay_s=0.002))


def _flaky_open(monkeypatch, failures, error=ConnectionError):
    flaky = {}
    real_open = store.open_array

    def open_flaky(location, array_path, token):
        key = (location, array_path)
        if key not in flaky:
            flaky[key] = FlakyArray(real_open(location, array_path, token), failures, error)
        return flaky[key]

    monkeypatch.setattr(store, "open_array", open_flaky)
    return flaky


def test_transient_read_errors_are_retried_and_change_nothing(monkeypatch, fast_retry, stores):
    expected = api.evaluate(stores["real"], stores["fake"], k=3, block_rows=64).to_dict()["by_k"]
    flaky = _flaky_open(monkeypatch, failures=2)
    got = api.evaluate(stores["real"], stores["fake"], k=3, block_rows=64).to_dict()["by_k"]
    assert got == expected
    assert all(arr.calls > arr.failures for arr in flaky.values())


def test_persistent_read_errors_name_the_rows_and_exit_3(monkeypatch, fast_retry, stores, tmp_path):
    _flaky_open(monkeypatch, failures=10**9, error=TimeoutError)
    result = cli_evaluate(stores["real"], stores["fake"], tmp_path / "out")
    assert result.exit_code == 3, result.output
    line = result.stderr.strip()
    assert line.startswith("error: could not read rows ") and "after 3 attempts (TimeoutError" in line
    assert stores["real"] in line or stores["fake"] in line
    assert "\n" not in line
    assert not (tmp_path / "out").exists()


# -- remote and odd stores: timeouts, refused listings, unreadable directories ---------------


@pytest.fixture
def quick_timeouts(monkeypatch):
    from largeemb.config import ReadRetry
    from largeemb.io import faults

    monkeypatch.setattr(faults, "READ_RETRY", ReadRetry(attempts=2, first_delay_s=0.01, max_delay_s=0.01))
    monkeypatch.setenv("LARGEEMB_READ_TIMEOUT", "0.3")


def _within(seconds, action):
    """``action()``'s value, or a test failure if it runs longer (a hang must not hang the suite)."""
    import threading

    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", action()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert "value" in box, f"still running after {seconds} s"
    return box["value"]


def test_a_server_that_never_answers_is_a_transient_error_not_a_hang(stores, tmp_path, quick_timeouts):
    from httpstores import silent

    with silent() as url:
        result = _within(20, lambda: cli_evaluate(stores["real"], f"{url}/fake.zarr", tmp_path / "out", "--no-plots"))
    line = one_error_line(result, code=3)
    assert "Timeout" in line and "missing" not in line


def test_a_static_http_store_without_listings_is_read(stores, tmp_path, quick_timeouts):
    from httpstores import served

    expected = cli_evaluate(stores["real"], stores["fake"], tmp_path / "local", "--no-plots")
    assert expected.exit_code == 0
    with served(str(Path(stores["fake"]).parent), listing=False) as url:
        result = _within(60, lambda: cli_evaluate(stores["real"], f"{url}/fake.zarr", tmp_path / "http", "--no-plots"))
    assert result.exit_code == 0, result.stderr
    assert "refuses listings" in result.stderr
    local, http = (json.loads((tmp_path / d / METRICS_FILE).read_text()) for d in ("local", "http"))
    assert http["by_k"] == local["by_k"] and http["metrics"] == local["metrics"]


def test_a_chunk_directory_that_cannot_be_listed_is_named_not_called_missing(stores, tmp_path, monkeypatch):
    from largeemb.io import chunks

    fake = zarr_store(tmp_path / "fake.zarr", mixture(800, 6, 2), (300, 6))
    unreadable = os.path.join(fake, "c", "1")
    listed = chunks._stored_keys
    # As pathlib's rglob (zarr's LocalStore listing) silently skips a directory it cannot read:
    monkeypatch.setattr(chunks, "_stored_keys", lambda arr: {k for k in listed(arr) if not k.startswith("c/1/")})
    monkeypatch.setattr(chunks.os, "access", lambda path, mode: os.path.abspath(path) != os.path.abspath(unreadable))
    result = cli_evaluate(stores["real"], fake, tmp_path / "out", "--no-plots")
    assert result.exit_code == 0, result.stderr
    assert f"the directory {unreadable} cannot be listed (permission denied" in result.stderr


# -- errors on dask workers come back as one line with the right code ------------------------

UNPICKLABLE_READ_ERROR = """
import threading
from largeemb.run import graph
class FlakyConnection(ConnectionError):
    def __init__(self, message):
        super().__init__(message)
        self.session = threading.Lock()  # as aiohttp's errors hold their session: no pickling
    def __reduce__(self):
        raise TypeError("cannot pickle a session")
def broken(*args):
    raise FlakyConnection("Server disconnected")
def broken_reads_hook(name, func):
    return broken if name.startswith("cross-tile-") else func
graph.unit_hooks.append(broken_reads_hook)
"""


@pytest.mark.slow
def test_a_transient_error_on_a_worker_that_does_not_pickle_is_exit_3(stores, tmp_path):
    from largeemb.run import graph

    namespace = {}
    exec(UNPICKLABLE_READ_ERROR, namespace)
    try:
        result = cli_evaluate(
            stores["real"], stores["fake"], tmp_path / "out", "--no-plots", "--workers", "1", "--threads-per-worker",
            "1",
        )
    finally:
        graph.unit_hooks.remove(namespace["broken_reads_hook"])
    line = one_error_line(result, code=3)
    assert "Server disconnected" in line and "dask worker" in line


TRANSIENT_ON_WORKERS = """
import sys
from largeemb.run import graph
def unavailable(*args):
    raise ConnectionError("503 Service Unavailable")
def unavailable_hook(name, func):
    return unavailable if name.startswith("cross-tile-") else func
graph.unit_hooks.append(unavailable_hook)
if __name__ == "__main__":
    from largeemb.cli import main
    sys.argv = ["largeemb", "evaluate", *sys.argv[1:]]
    main()
"""


@pytest.mark.slow
def test_a_transient_error_with_worker_processes_is_one_line(stores, tmp_path):
    """With --workers, as in-process: exit 3, one error line and the progress lines; no worker or scheduler logs."""
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(TRANSIENT_ON_WORKERS)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), str(tmp_path)])}
    run = subprocess.run(
        [sys.executable, str(script), stores["real"], stores["fake"], "--out", str(out), "--no-plots",
         "--workers", "2"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 3, run.stderr
    others = [line for line in run.stderr.splitlines() if "largeemb: " not in line]
    assert len(others) == 1 and others[0].startswith("error: ") and "503 Service Unavailable" in others[0], run.stderr
    assert not (out / "metrics.json").exists()
