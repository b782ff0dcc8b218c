"""Issue 16, under adversarial use: inputs never touched, publishing all or
nothing, resume only on the same data, every writer locked, clean errors."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import mixture, zarr_store
from largeemb.cli import app
from largeemb.io import lock, output
from largeemb.io.output import METRICS_FILE

runner = CliRunner()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("stores")
    return {
        "real": zarr_store(base / "real.zarr", mixture(900, 6, 1), (300, 6)),
        "fake": zarr_store(base / "fake.zarr", mixture(800, 6, 2, shift=0.3), (300, 6)),
    }


def _evaluate(real, fake, out, *extra):
    return runner.invoke(app, ["evaluate", str(real), str(fake), "--out", str(out), "--no-plots", *extra])


def _tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` but a run's kept work (``.work``, for --resume)."""
    files = (p for p in sorted(path.rglob("*")) if p.is_file() and p.relative_to(path).parts[0] != ".work")
    return {str(p.relative_to(path)): p.read_bytes() for p in files}


def _one_error_line(result, code=2):
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    # Batch-log lines (timestamped "largeemb:") and the run's warnings may precede it; the error is one line, the last.
    lines = [line for line in result.stderr.splitlines() if "largeemb: " not in line and not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stderr.strip().splitlines()[-1] == lines[0]
    return lines[0]


# -- 1. inputs are never deleted or written ---------------------------------------


def test_an_input_where_the_result_goes_is_refused_not_replaced(stores, tmp_path):
    out = tmp_path / "out"
    fake = Path(zarr_store(out / "samples.zarr", mixture(800, 6, 2), (300, 6)))
    before = _tree(fake)
    line = _one_error_line(_evaluate(stores["real"], fake, out, "--force"))
    assert "samples.zarr" in line and "inside --out" in line
    assert _tree(fake) == before


def test_out_inside_an_input_store_is_refused(stores, tmp_path):
    real = Path(zarr_store(tmp_path / "real.zarr", mixture(900, 6, 1), (300, 6)))
    before = _tree(real)
    for out in (real, real / "results"):
        line = _one_error_line(_evaluate(real, stores["fake"], out, "--force"))
        assert "inside the input" in line
    assert _tree(real) == before


def test_an_unrelated_input_inside_out_is_fine(stores, tmp_path):
    out = tmp_path / "out"
    fake = zarr_store(out / "inputs" / "fake.zarr", mixture(800, 6, 2), (300, 6))
    assert _evaluate(stores["real"], fake, out).exit_code == 0


# -- 2. publishing is all or nothing ----------------------------------------------


def _rmtree_failing_in(monkeypatch, directory: Path, suffix: str, err=errno.EBUSY):
    """shutil.rmtree fails (as on another user's files, a busy mount, NFS) for ``directory/*suffix``."""
    real = shutil.rmtree

    def failing(path, *args, **kwargs):
        if Path(path).parent == directory and str(path).endswith(suffix):
            raise OSError(err, os.strerror(err), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", failing)


def test_old_result_that_cannot_be_deleted_does_not_cost_the_new_one(stores, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _evaluate(stores["real"], stores["fake"], out, "--k", "3").exit_code == 0
    _rmtree_failing_in(monkeypatch, out, "samples.zarr")
    result = _evaluate(stores["real"], stores["fake"], out, "--k", "4", "--force")
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / METRICS_FILE).read_text())["params"]["k"] == [4]
    assert "could not delete the replaced samples.zarr" in result.stderr
    monkeypatch.undo()
    # The next run that claims --out clears what was left.
    assert _evaluate(stores["real"], stores["fake"], out, "--k", "5", "--force").exit_code == 0
    assert not [n for n in os.listdir(out) if n.startswith(output.OLD_PREFIX)]


def test_a_publish_that_fails_puts_the_old_result_back(stores, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _evaluate(stores["real"], stores["fake"], out, "--k", "3").exit_code == 0
    before = _tree(out)
    real_replace = output.os.replace

    def failing(src, dst):  # moving the new samples.zarr in fails, after the old result went aside
        if str(src).endswith("samples.zarr") and output.STAGING_PREFIX in str(src):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(output.os, "replace", failing)
    line = _one_error_line(_evaluate(stores["real"], stores["fake"], out, "--k", "4", "--force"))
    assert "previous result was put back" in line
    assert _tree(out) == before
    assert sorted(os.listdir(out)) == [".work", "metrics.json", "report.html", "samples.zarr"]  # .work: to --resume


def test_a_killed_publish_is_undone_by_the_next_claim(tmp_path):
    out = tmp_path / "out"
    with output.result_dir(str(out), False, ("metrics.json", "samples.zarr", "pca.png")) as staging:
        staging.write_json("metrics.json", {"version": 1})
        Path(staging.file("pca.png")).write_text("1")
    # As a kill after the old entries went aside and the new pca.png came in:
    os.replace(out / "metrics.json", out / ".old-abcd1234.metrics.json")
    os.replace(out / "pca.png", out / ".old-abcd1234.pca.png")
    (out / "pca.png").write_text("2")
    (out / "samples.zarr").mkdir()
    with pytest.raises(KeyError):
        with output.result_dir(str(out), True, ("metrics.json", "samples.zarr", "pca.png")):
            raise KeyError("the next run fails before publishing")
    assert sorted(os.listdir(out)) == ["metrics.json", "pca.png"]
    assert (out / "pca.png").read_text() == "1"


# -- 3. a resume computes on the data it started with --------------------------------


def test_resume_after_the_middle_rows_changed_is_refused(tmp_path, stores):
    import largeemb
    import zarr
    from conftest import failing_units, unit_hook
    from largeemb.run import checkpoint

    data = mixture(1200, 6, 2, shift=0.3)
    fake = zarr_store(tmp_path / "fake.zarr", data, (300, 6))
    out = tmp_path / "out"
    with unit_hook(failing_units("cross-tile-", after=5)), pytest.raises(RuntimeError, match="node lost"):
        largeemb.evaluate(stores["real"], fake, k=(3,), block_rows=128, threads_per_worker=1, checkpoint_dir=str(out / checkpoint.WORK_DIR))
    changed = data.copy()
    changed[500:700] = mixture(200, 6, 7, shift=5.0)  # first and last rows as they were
    zarr.open_array(fake, mode="r+")[:] = changed
    line = _one_error_line(runner.invoke(app, ["evaluate", stores["real"], fake, "--out", str(out), "--k", "3", "--block-rows", "128", "--no-plots", "--resume"]))
    assert "fake input changed since the interrupted run" in line and "rows 0:" in line and "--force" in line
    assert not (out / METRICS_FILE).exists()


# -- 4. every writer of a result directory takes the lock -----------------------------


def test_plot_refuses_while_a_run_holds_the_directory(stores, tmp_path):
    out = tmp_path / "out"
    done = runner.invoke(app, ["evaluate", stores["real"], stores["fake"], "--out", str(out), "--tsne-samples", "0", "--plot-samples", "100"])
    assert done.exit_code == 0, done.stderr
    before = _tree(out)
    with lock.OutputLock(str(out)):  # an `evaluate --force --out OUT` in progress
        line = _one_error_line(runner.invoke(app, ["plot", str(out)]))
        assert "another largeemb run" in line
    assert _tree(out) == before
    assert runner.invoke(app, ["plot", str(out)]).exit_code == 0


# -- 5, 16, 17. remote and odd stores: timeouts, refused listings, unreadable directories ---


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
        result = _within(20, lambda: _evaluate(stores["real"], f"{url}/fake.zarr", tmp_path / "out"))
    line = _one_error_line(result, code=3)
    assert "Timeout" in line and "missing" not in line


def test_a_static_http_store_without_listings_is_read(stores, tmp_path, quick_timeouts):
    from httpstores import served

    expected = _evaluate(stores["real"], stores["fake"], tmp_path / "local")
    assert expected.exit_code == 0
    with served(str(Path(stores["fake"]).parent), listing=False) as url:
        result = _within(60, lambda: _evaluate(stores["real"], f"{url}/fake.zarr", tmp_path / "http"))
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
    result = _evaluate(stores["real"], fake, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert f"the directory {unreadable} cannot be listed (permission denied" in result.stderr


# -- 6, 11, 12. references: built whole, --out checked first, damage refused ------------


def _build(real, out, *extra):
    return runner.invoke(app, ["reference", "build", str(real), "--out", str(out), "--k", "3", *extra])


def test_a_failed_reference_build_leaves_no_empty_out_and_keeps_the_old_one(stores, tmp_path):
    from conftest import failing_units, unit_hook

    crash = failing_units("radii-")
    out = tmp_path / "ref"
    with unit_hook(crash):
        assert _build(stores["real"], out).exit_code != 0
    assert not out.exists()  # the nightly script's test could not mistake it for a reference
    assert _build(stores["real"], out).exit_code == 0
    before = _tree(out)
    with unit_hook(crash):
        assert _build(stores["real"], out, "--force").exit_code != 0
    assert _tree(out) == before


def test_nightly_script_rebuilds_a_reference_directory_without_reference_json(tmp_path):
    import subprocess

    script = Path(__file__).parents[1] / "jobs" / "nightly" / "nightly-evaluate.sh"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    stub = bin_dir / "largeemb"
    stub.write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    stub.chmod(0o755)
    (tmp_path / "ref").mkdir()  # what a killed build used to leave
    (tmp_path / "gen" / "run1.zarr").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "REAL_SOURCE": "real.zarr", "REFERENCE": str(tmp_path / "ref"),
           "GENERATED": str(tmp_path / "gen"), "RESULTS": str(tmp_path / "results"), "WORKERS": "1"}
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=30)
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("reference build real.zarr --out") and lines[1].startswith("evaluate ")


def test_reference_build_checks_out_before_any_work(stores, tmp_path):
    from conftest import unit_hook

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    units = []
    with unit_hook(lambda name, func: units.append(name) or func):
        line = _one_error_line(_build(stores["real"], blocker / "ref"))
    assert "cannot write the output directory" in line and not units


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_reference_build_refuses_a_read_only_out_before_any_work(stores, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    line = _one_error_line(_build(stores["real"], out))
    assert "cannot write" in line


@pytest.fixture(scope="module")
def reference(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref"
    assert _build(stores["real"], out).exit_code == 0
    return out


def _damage_moments_missing(ref):
    (ref / "moments.npz").unlink()


def _damage_moments_garbage(ref):
    (ref / "moments.npz").write_bytes(b"garbage" * 10)


def _damage_radii_missing(ref):
    shutil.rmtree(ref / "radii.zarr")


def _damage_radii_garbage(ref):
    (ref / "radii.zarr" / "zarr.json").write_text("{not json")


def _damage_no_source(ref):
    meta = json.loads((ref / "reference.json").read_text())
    del meta["source"]
    (ref / "reference.json").write_text(json.dumps(meta))


def _damage_short_radii(ref):
    import zarr

    radii = zarr.open_array(ref / "radii.zarr", mode="r")[:-10]
    shutil.rmtree(ref / "radii.zarr")
    zarr.create_array(ref / "radii.zarr", shape=radii.shape, dtype=radii.dtype)[:] = radii


DAMAGE = [_damage_moments_missing, _damage_moments_garbage, _damage_radii_missing, _damage_radii_garbage, _damage_no_source, _damage_short_radii]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__[8:] for d in DAMAGE])
def test_a_damaged_reference_is_one_line_and_leaves_nothing(damage, reference, stores, tmp_path):
    ref = tmp_path / "ref"
    shutil.copytree(reference, ref)
    damage(ref)
    out = tmp_path / "out"
    line = _one_error_line(_evaluate(ref, stores["fake"], out, "--k", "3"))
    assert "damaged reference" in line and "rebuild" in line
    assert not out.exists()


# -- 8, 14, 15. options refused before they cost anything -------------------------------


def test_an_absurd_task_count_is_refused_and_explained(stores, tmp_path):
    big = zarr_store(tmp_path / "big.zarr", mixture(20_000, 6, 3), (10_000, 6))
    line = _one_error_line(_evaluate(big, stores["fake"], tmp_path / "out", "--block-rows", "64"))
    assert "313 blocks" in line and "tasks" in line and "--block-rows 79" in line
    assert not (tmp_path / "out").exists()


def test_a_scheduler_that_is_not_an_address_is_refused_at_once(stores, tmp_path):
    import time

    start = time.monotonic()
    line = _one_error_line(_evaluate(stores["real"], stores["fake"], tmp_path / "out", "--scheduler", "not an address"))
    assert "not a dask scheduler address" in line and time.monotonic() - start < 10


def test_a_run_that_cannot_reach_its_scheduler_leaves_no_unfinished_work(stores, tmp_path, monkeypatch):
    import socket

    from largeemb.run import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there
    out = tmp_path / "out"
    line = _one_error_line(_evaluate(stores["real"], stores["fake"], out, "--scheduler", f"tcp://127.0.0.1:{port}"))
    assert "cannot reach the dask scheduler" in line
    assert not (out / ".work").exists()
    assert _evaluate(stores["real"], stores["fake"], out).exit_code == 0  # the corrected rerun, without --resume


# -- 9. errors on dask workers come back as one line with the right code ---------------

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
        result = _evaluate(stores["real"], stores["fake"], tmp_path / "out", "--workers", "1", "--threads-per-worker", "1")
    finally:
        graph.unit_hooks.remove(namespace["broken_reads_hook"])
    line = _one_error_line(result, code=3)
    assert "Server disconnected" in line and "dask worker" in line


# -- 13. odd array names ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "./embeddings", "a/../b"])
def test_an_array_name_with_dot_segments_is_one_line(stores, tmp_path, name):
    import zarr

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("embeddings", shape=(800, 6), dtype="f4")[:] = mixture(800, 6, 2)
    line = _one_error_line(_evaluate(stores["real"], tmp_path / "g.zarr", tmp_path / "out", "--fake-array", name))
    assert "has no array named" in line and "embeddings" in line


# -- 10. a full disk: one line naming what needed the space, the old result intact -------


def _enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _full_at_lock(monkeypatch):
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: (_ for _ in ()).throw(_enospc(".largeemb.lock")) if b"pid" in data else real(fd, data, offset))
    return "the lock file"


def _full_at_checkpoints(monkeypatch):
    from largeemb.run import checkpoint

    monkeypatch.setattr(checkpoint, "save", lambda path, value: (_ for _ in ()).throw(_enospc(path)))
    return "the checkpoints"


def _full_at_staging(monkeypatch):
    monkeypatch.setattr(output.Staging, "write_json", lambda self, name, payload: (_ for _ in ()).throw(_enospc(self.file(name))))
    return "the result being staged"


def _full_at_publish(monkeypatch):
    real = os.replace

    def replace(src, dst):
        if Path(src).parent.name.startswith(output.STAGING_PREFIX):  # a staged entry moving into --out
            raise _enospc(dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return "could not publish"


FULL = [_full_at_lock, _full_at_checkpoints, _full_at_staging, _full_at_publish]


@pytest.mark.parametrize("fill", FULL, ids=[f.__name__[9:] for f in FULL])
def test_a_full_disk_is_one_line_naming_what_needed_space(fill, stores, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _evaluate(stores["real"], stores["fake"], out, "--k", "3").exit_code == 0
    before = _tree(out)
    what = fill(monkeypatch)
    line = _one_error_line(_evaluate(stores["real"], stores["fake"], out, "--k", "4", "--force"))
    monkeypatch.undo()
    assert what in line and "No space left on device" in line
    assert _tree(out) == before


# -- 18. one line, always ----------------------------------------------------------------


def test_values_that_overflow_the_sums_give_the_error_line_and_no_warnings(stores, tmp_path):
    import subprocess
    import sys

    data = mixture(900, 6, 1).astype(np.float64)
    data[5] = 1e200
    big = zarr_store(tmp_path / "big.zarr", data, (300, 6))
    done = subprocess.run(
        [sys.executable, "-m", "largeemb", "evaluate", big, stores["fake"], "--out", str(tmp_path / "out"), "--no-plots"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 2
    # Timestamped batch-log lines of the passes that ran may precede it; the error is one line, the last, and no warning.
    lines = [line for line in done.stderr.splitlines() if "largeemb: " not in line]
    assert len(lines) == 1 and lines[0].startswith("error: real row 5 holds a value beyond") and done.stderr.strip().endswith(lines[0])


# -- 19. SIGTERM is handled like Ctrl-C ----------------------------------------------------


def test_sigterm_unwinds_like_ctrl_c(stores, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import finished_checkpoints, slow_tiles

    out = tmp_path / "out"
    job = subprocess.Popen(
        [sys.executable, "-c", slow_tiles(0.2) + "from largeemb.cli import main\nimport sys\nsys.argv = ['largeemb'] + sys.argv[1:]\nmain()",
         "evaluate", stores["real"], stores["fake"], "--out", str(out), "--no-plots", "--block-rows", "128", "--threads-per-worker", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
    )
    deadline = time.monotonic() + 60
    while not ((out / ".work").is_dir() and finished_checkpoints(out / ".work") >= 2):
        assert job.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 143
    assert [line for line in err.splitlines() if "largeemb: " not in line] == ["error: terminated (SIGTERM), nothing was published"]
    left = set(os.listdir(out))
    assert lock.LOCK_FILE not in left and not [n for n in left if n.startswith(output.STAGING_PREFIX)]
    assert ".work" in left  # finished tasks kept for --resume


@pytest.mark.slow
@pytest.mark.parametrize("name, to_group", [("SIGINT", True), ("SIGTERM", False), ("SIGTERM", True)])
def test_an_interrupt_with_worker_processes_is_one_line(name, to_group, stores, tmp_path):
    """Issue 16 item 18: Ctrl-C (SIGINT to the whole process group, as a terminal sends it), SIGTERM to the
    CLI alone (Kubernetes) or to every process (SLURM) with --workers 2: the interrupted line is the only one
    after the progress lines (the workers' tracebacks and dask's logs said 74 lines more), exit 130 / 143,
    lock and staging removed, no worker process left behind."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import finished_checkpoints, slow_tiles

    out = tmp_path / "out"
    job = subprocess.Popen(
        [sys.executable, "-c", slow_tiles(0.2) + "from largeemb.cli import main\nimport sys\nsys.argv = ['largeemb'] + sys.argv[1:]\nmain()",
         "evaluate", stores["real"], stores["fake"], "--out", str(out), "--no-plots", "--block-rows", "128", "--workers", "2", "--threads-per-worker", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1], start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((out / ".work").is_dir() and finished_checkpoints(out / ".work") >= 2):
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()
            time.sleep(0.02)
        children = subprocess.run(["pgrep", "-P", str(job.pid), "-f", "spawn_main"], capture_output=True, text=True).stdout
        workers = [int(pid) for pid in children.split()]
        sig = getattr(signal, name)
        os.killpg(job.pid, sig) if to_group else job.send_signal(sig)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == (130 if name == "SIGINT" else 143), err
    line = "error: interrupted, nothing was published" if name == "SIGINT" else "error: terminated (SIGTERM), nothing was published"
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


# -- 7. the O(dim³) steps are proportionate ---------------------------------------------


@pytest.mark.parametrize("real_rows, fake_rows", [(150, 40), (40, 150), (30, 30)])
def test_fd_of_a_set_with_fewer_rows_than_dims_skips_the_dim_cubed_eigensolve(real_rows, fake_rows, monkeypatch):
    import largeemb
    from largeemb.kernels import moments
    from oracle import frechet

    dim = 200
    real, fake = mixture(real_rows, dim, 1), mixture(fake_rows, dim, 2, shift=0.2)
    real_eigh = np.linalg.eigh

    def small_only(matrix, *args, **kwargs):
        assert matrix.shape[0] < dim, "an eigensolve of the whole dim x dim covariance"
        return real_eigh(matrix, *args, **kwargs)

    monkeypatch.setattr(moments.np.linalg, "eigh", small_only)
    result = largeemb.evaluate(real, fake, k=(3,), plots=False, samples=False, prune=False)
    assert "fd_infinity" not in result.metrics and any("FD∞" in w for w in result.warnings)
    # Independent oracle, exact for singular covariances (where sqrtm loses digits):
    # with Σ = AᵀA, tr((Σr Σf)^½) is the nuclear norm of Ar Afᵀ.
    factors = [(x - x.mean(0)) / np.sqrt(len(x) - 1) for x in (real.astype(np.float64), fake.astype(np.float64))]
    diff = real.astype(np.float64).mean(0) - fake.astype(np.float64).mean(0)
    exact = diff @ diff + sum((a * a).sum() for a in factors) - 2 * np.linalg.svd(factors[0] @ factors[1].T, compute_uv=False).sum()
    assert result.metrics["fd"] == pytest.approx(exact, rel=1e-7)  # the other set's Σ from streamed sums
    assert result.metrics["fd"] == pytest.approx(frechet(real, fake), rel=1e-5)


@pytest.mark.parametrize("real_rows, fake_rows", [(260, 40), (40, 260)])
def test_fd_when_only_one_set_has_fewer_rows_than_dims_goes_through_its_rows(real_rows, fake_rows, monkeypatch):
    """The other set's streamed covariance and the small set's rows: no dim × dim eigenproblem either."""
    import largeemb
    from oracle import frechet

    dim = 200
    real, fake = mixture(real_rows, dim, 1), mixture(fake_rows, dim, 2, shift=0.2)
    _no_dim_by_dim_eigensolve(monkeypatch, dim)
    result = largeemb.evaluate(real, fake, k=(3,), plots=False, samples=False, prune=False, companions=())
    monkeypatch.undo()
    factors = [(x - x.mean(0)) / np.sqrt(len(x) - 1) for x in (real.astype(np.float64), fake.astype(np.float64))]
    diff = real.astype(np.float64).mean(0) - fake.astype(np.float64).mean(0)
    exact = diff @ diff + sum((a * a).sum() for a in factors) - 2 * np.linalg.svd(factors[0] @ factors[1].T, compute_uv=False).sum()
    assert result.metrics["fd"] == pytest.approx(exact, rel=1e-7)
    assert result.metrics["fd"] == pytest.approx(frechet(real, fake), rel=1e-5)


def test_fd_of_a_set_with_itself_is_exactly_zero_through_the_rows():
    import largeemb

    rows = mixture(50, 80, 1)
    assert largeemb.evaluate(rows, rows.copy(), k=(3,), plots=False, samples=False, companions=()).metrics["fd"] == 0.0


def test_pruning_axes_at_a_large_dim_skip_the_dim_cubed_eigensolve(monkeypatch):
    """Issue 16 item 7, the partition's part: above SAMPLE_AXES_DIM the pruning axes come from the sample."""
    import largeemb
    from largeemb.kernels import moments, prune
    from oracle import prdc

    monkeypatch.setattr(prune, "SAMPLE_AXES_DIM", 16)  # a small dim stands in for 10,000
    called = []
    real_axes = moments.leading_axes
    monkeypatch.setattr(prune, "leading_axes", lambda *a, **k: called.append(1) or real_axes(*a, **k))
    real, fake = mixture(2400, 24, 1, modes=10, spread=4.0), mixture(2000, 24, 2, modes=10, keep=7, spread=4.0)
    result = largeemb.evaluate(real, fake, k=3, plots=False, samples=False, companions=(), block_rows=512)
    assert not called
    expected = prdc(real, fake, 3)
    assert all(result.by_k[3][name] == pytest.approx(expected[name], abs=1e-12) for name in expected)


def _no_dim_by_dim_eigensolve(monkeypatch, dim):
    """Every symmetric eigensolver fails on a dim × dim matrix (NumPy's and the kernels' scipy one)."""
    import scipy.linalg

    from largeemb.kernels import moments

    def guarded(solver):
        def small_only(matrix, *args, **kwargs):
            assert np.shape(matrix)[0] < dim, "an eigensolve of a whole dim x dim matrix"
            return solver(matrix, *args, **kwargs)

        return small_only

    for owner, name in [(np.linalg, "eigh"), (np.linalg, "eigvalsh"), (scipy.linalg, "eigh"), (scipy.linalg, "eigvalsh"), (moments, "eigh")]:
        monkeypatch.setattr(owner, name, guarded(getattr(owner, name)))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pca_and_vendi_of_sets_with_fewer_rows_than_dims_come_from_their_rows(metric, monkeypatch):
    """Issue 16 item 7: the plots' PCA axes and Vendi of a set with fewer rows than dims, from its n × n Gram
    matrix, equal the float64 brute force; no dim × dim eigenproblem, no FD∞ shells, no unit moments taken."""
    import largeemb
    from largeemb.passes.projection import PCA_COMPONENTS

    dim = 160
    real, fake = mixture(120, dim, 1) + 1.0, mixture(60, dim, 2, shift=0.2) + 1.0
    _no_dim_by_dim_eigensolve(monkeypatch, dim)
    result = largeemb.evaluate(real, fake, k=(3,), metric=metric, samples=False, prune=False)
    monkeypatch.undo()
    assert result.fake_moments.shell_s2 is None  # FD∞ is skipped here: its 15 dim x dim sums are not taken either
    assert result.real_moments.unit_s2 is None and result.fake_moments.unit_s2 is None

    seen = np.asarray(real, np.float64)
    if metric == "cosine":
        seen = seen / np.linalg.norm(seen, axis=1, keepdims=True)
    centred = seen - seen.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular[:PCA_COMPONENTS] ** 2 / (len(seen) - 1)
    basis = result.projection.basis
    assert basis.components.shape == (PCA_COMPONENTS, dim)
    cosines = np.abs(np.sum(basis.components * axes[:PCA_COMPONENTS], axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-9)  # the same axes, up to sign
    np.testing.assert_allclose(basis.explained_variance, variance, rtol=1e-9)
    np.testing.assert_allclose(basis.explained_variance_ratio, variance / ((singular**2).sum() / (len(seen) - 1)), rtol=1e-9)
    np.testing.assert_allclose(basis.mean, seen.mean(axis=0), rtol=1e-12, atol=1e-12)

    for role, rows in (("real", real), ("fake", fake)):
        unit = np.asarray(rows, np.float64) / np.linalg.norm(np.asarray(rows, np.float64), axis=1, keepdims=True)
        values = np.linalg.eigvalsh(unit @ unit.T / len(unit))
        values = values[values > 0]
        assert result.metrics[f"vendi_{role}"] == pytest.approx(np.exp(-(values * np.log(values)).sum()), rel=1e-9)


def test_gram_route_equals_the_covariance_route():
    """The two exact routes of the plots' PCA agree on the same rows (a set just below its dim)."""
    from largeemb.kernels.moments import Moments
    from largeemb.passes.projection import basis_from_moments, basis_from_rows

    rows = mixture(40, 48, 3).astype(np.float64) * np.linspace(0.5, 3.0, 48)
    moments = Moments.of_rows(rows, rows[0], rows)
    by_cov, by_rows = basis_from_moments(moments), basis_from_rows(rows, moments.mean)
    np.testing.assert_allclose(by_rows.components, by_cov.components, atol=1e-8)  # signs fixed the same way
    np.testing.assert_allclose(by_rows.explained_variance, by_cov.explained_variance, rtol=1e-9)
    np.testing.assert_allclose(by_rows.explained_variance_ratio, by_cov.explained_variance_ratio, rtol=1e-9)


def test_a_long_dim_cubed_step_is_announced_with_its_estimate_before_it_starts(stores, tmp_path, monkeypatch):
    """Each O(dim³) step estimated above LONG_STEP_S gets one warning line with its estimate, before it runs."""
    import logging

    from largeemb.metrics import fd
    from largeemb.run import progress

    events = []

    class Recorder(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                events.append(record.getMessage())

    real_fd = fd.frechet_distance
    monkeypatch.setattr(fd, "frechet_distance", lambda *a, **k: events.append("FD runs") or real_fd(*a, **k))
    handler = Recorder()
    logging.getLogger("largeemb").addHandler(handler)
    try:
        _evaluate(stores["real"], stores["fake"], tmp_path / "quiet", "--no-samples")
        assert events == ["FD runs"]  # dim 6: seconds are far below the threshold, nothing announced
        events.clear()
        monkeypatch.setattr(progress, "LONG_STEP_S", 0.0)  # every step counts as long now
        done = runner.invoke(app, ["evaluate", stores["real"], stores["fake"], "--out", str(tmp_path / "loud"), "--no-samples", "--tsne-samples", "0"])
    finally:
        logging.getLogger("largeemb").removeHandler(handler)
    assert done.exit_code == 0, done.stderr
    announced = [e for e in events if e.startswith("warning: ")]
    steps = ["the plots' PCA axes", "FD, ", "FD∞, ", "vendi_real, ", "vendi_fake, "]
    assert [next(i for i, e in enumerate(announced) if e.startswith("warning: " + s)) for s in steps] == list(range(5))
    assert all(" dim 6" in e and "about " in e and "(estimated)" in e for e in announced) and len(announced) == 5
    assert events.index("FD runs") == events.index(announced[1]) + 1  # FD's line comes right before FD
    stderr = [line for line in done.stderr.splitlines() if "warning: FD, " in line]
    assert len(stderr) == 1  # one line on the terminal too
