"""On a real SLURM cluster (the session's `slurm` fixture: munged, slurmctld and slurmd on this
machine): the single-allocation template jobs/slurm/evaluate.sbatch, and `--cluster slurm`
(dask-jobqueue worker jobs). Every result is compared with the in-process run of the same
stores; lost jobs may cost time, never exactness. Skipped where SLURM cannot run."""

import json
import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import dask
import pytest
from typer.testing import CliRunner

from conftest import SUMMARY, slow_tiles
from largeemb.cli import app

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

runner = CliRunner()
REPO = Path(__file__).parents[1]
TEMPLATE = REPO / "jobs" / "slurm" / "evaluate.sbatch"
#: Small blocks: many units a pass, so that a job can be cancelled part-way.
OPTIONS = ["--k", "3,5", "--block-rows", "128", "--no-plots"]
ROWS = 1000
#: What one worker job asks for (the node advertises 4 CPUs).
JOB = ["--job-cores", "1", "--job-memory", "1GB", "--job-walltime", "00:10:00"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A real and a fake set written by `largeemb synth`, as a user would."""
    root = tmp_path_factory.mktemp("slurm-data")
    paths = []
    for name, extra in (("real", []), ("fake", ["--seed", "1", "--shift", "0.1", "--drop-modes", "3"])):
        result = runner.invoke(app, ["synth", str(root / f"{name}.zarr"), "--rows", str(ROWS), "--dim", "16", *extra])
        assert result.exit_code == 0, result.output
        paths.append(str(root / f"{name}.zarr"))
    return paths


@pytest.fixture(scope="module")
def in_process(stores, tmp_path_factory):
    """The in-process result and the units a fresh run computes."""
    return _evaluate(stores, tmp_path_factory.mktemp("in-process") / "out")


def _evaluate(stores, out, *extra):
    """Run the CLI here; (metrics.json's numbers, tasks computed, tasks loaded)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("largeemb").addHandler(handler)
    try:
        result = runner.invoke(app, ["evaluate", *stores, "--out", str(out), *OPTIONS, *extra])
    finally:
        logging.getLogger("largeemb").removeHandler(handler)
    assert result.exit_code == 0, result.output
    (summary,) = [SUMMARY.search(r.getMessage()) for r in records if SUMMARY.search(r.getMessage())]
    return _numbers(out), int(summary.group(1)), int(summary.group(2))


def _numbers(out: Path) -> dict:
    written = json.loads((out / "metrics.json").read_text())
    return {"metrics": written["metrics"], "by_k": written["by_k"]}


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- the single-allocation template -------------------------------------------------------------


def _largeemb_on_path(bin_dir: Path, slow_s: float = 0.0, log: Path | None = None) -> None:
    """A `largeemb` command for the job (as a module or container would provide), its tiles slowed
    down when asked (the graph-building process's unit hooks reach the workers by value)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "largeemb-main.py"
    hook = slow_tiles(slow_s, str(log) if log else None) if slow_s else ""
    script.write_text(hook + "import sys\nfrom largeemb.cli import main\nsys.argv[0] = 'largeemb'\nmain()\n")
    command = bin_dir / "largeemb"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    command.chmod(0o755)


def _certificates(folder: Path) -> Path:
    """ca.pem, cert.pem, key.pem of a new CA, as the template's TLS_DIR wants them."""
    pytest.importorskip("cryptography")
    from distributed.security import Security

    made = Security.temporary()
    folder.mkdir(mode=0o700)
    for name, text in (("ca", made.tls_ca_file), ("cert", made.tls_client_cert), ("key", made.tls_client_key)):
        (folder / f"{name}.pem").write_text(text)
    (folder / "key.pem").chmod(0o600)
    return folder


def _submit(slurm, tmp_path, stores, out, name, tls_dir=None):
    env = {
        **os.environ,
        # largeemb and dask on PATH, no VENV: the template must work either way.
        "PATH": os.pathsep.join([str(tmp_path / "bin"), os.path.dirname(sys.executable), os.environ["PATH"]]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "REAL": stores[0], "FAKE": stores[1], "OUT": str(out), "K": "3,5", "WORKDIR": str(tmp_path / f"dask-{name}"),
        "OPTIONS": " ".join(OPTIONS[2:]),
        "TLS_DIR": str(tls_dir or ""),
    }
    env.pop("VENV", None)
    resources = ["--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=1G", "--time=00:10:00"]
    return slurm.sbatch(*resources, f"--output={tmp_path}/{name}-%j.log", str(TEMPLATE), env=env)


def test_sbatch_template_cancelled_mid_pass_resumes_on_resubmission_over_tls_with_the_same_result(
    slurm, stores, in_process, tmp_path
):
    expected, fresh_computed, _ = in_process
    out, tiles = tmp_path / "out", tmp_path / "tiles.log"

    _largeemb_on_path(tmp_path / "bin", slow_s=0.1, log=tiles)
    first = _submit(slurm, tmp_path, stores, out, "first")
    _wait_for(lambda: len(_lines(tiles)) >= 6 or first not in slurm.jobs(), 90, "6 tiles of the first job")
    slurm.cancel(first)
    assert slurm.wait_gone(first) == "CANCELLED"
    assert not (out / "metrics.json").exists() and (out / ".work").is_dir()

    _largeemb_on_path(tmp_path / "bin")  # the resubmitted job at full speed, and over TLS
    second = _submit(slurm, tmp_path, stores, out, "second", tls_dir=_certificates(tmp_path / "tls"))
    assert slurm.wait_gone(second) == "COMPLETED", (tmp_path / f"second-{second}.log").read_text()
    assert "Scheduler at:      tls://" in (tmp_path / "dask-second" / "scheduler.log").read_text()
    log = (tmp_path / f"second-{second}.log").read_text()
    computed, loaded = map(int, SUMMARY.search(log).groups())
    print(f"fresh run: {fresh_computed} units computed; cancelled after {len(_lines(tiles))} tiles; "
          f"resumed: {computed} computed, {loaded} loaded")
    assert loaded > 0 and computed < fresh_computed
    assert _numbers(out) == expected


# --- worker jobs: --cluster slurm ---------------------------------------------------------------


@pytest.fixture
def jobqueue_config(tmp_path):
    """The site's dask config for these tests: the scheduler on loopback, job logs in tmp_path."""
    pytest.importorskip("dask_jobqueue")
    settings = {
        # Quicker than a site's defaults (1 s, 5 s of queued work per worker, 15 s): the runs here are short.
        "distributed.adaptive.interval": "500ms",
        "distributed.adaptive.target-duration": "200ms",
        "distributed.deploy.lost-worker-timeout": "2s",  # when a job that ended is given up
        "jobqueue.slurm.scheduler-options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"},
        "jobqueue.slurm.log-directory": str(tmp_path / "job-logs"),
        "jobqueue.slurm.local-directory": str(tmp_path / "worker-space"),
    }
    with dask.config.set(settings):
        yield


class QueueWatch:
    """Samples `squeue` every 0.2 s: (seconds since start, jobs queued or running)."""

    def __init__(self, slurm):
        self.slurm, self.samples, self._stop = slurm, [], threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.start = time.monotonic()

    def _watch(self):
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.start, len(self.slurm.jobs())))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def _serial_tail(seconds: float, blocks: int):
    """Source of a unit hook that makes the root of the cross pass's merge tree over the fake
    blocks (the last of its blocks - 1 merges) slow: a stretch where one unit runs alone."""
    return f"""
import functools, time
from largeemb.run import graph
def _slow_merge(seconds, func, *args):
    time.sleep(seconds)
    return func(*args)
def serial_tail_hook(name, func):
    return functools.partial(_slow_merge, {seconds}, func) if name == "cross-merge-all-{blocks - 2}" else func
graph.unit_hooks.append(serial_tail_hook)
"""


@contextmanager
def hooked(*sources: str):
    """Unit hooks from source: defined by exec, so cloudpickle sends them by value to the
    workers (each source appends its hook to graph.unit_hooks); removed afterwards."""
    from largeemb.run import graph

    before = list(graph.unit_hooks)
    for source in sources:
        exec(source, {})
    try:
        yield
    finally:
        graph.unit_hooks[:] = before


def test_cluster_slurm_over_tls_gives_the_in_process_result_and_gives_jobs_back_in_the_serial_tail(
    slurm, stores, in_process, tmp_path, jobqueue_config, monkeypatch
):
    pytest.importorskip("cryptography")  # throw-away certificates for --tls
    # where dask-jobqueue writes the workers' copies of them (mode 0600, removed at the end)
    monkeypatch.chdir(tmp_path)
    expected = in_process[0]
    blocks = -(-ROWS // int(OPTIONS[OPTIONS.index("--block-rows") + 1]))
    with hooked(slow_tiles(0.01), _serial_tail(2.5, blocks)), QueueWatch(slurm) as watch:
        numbers, _, _ = _evaluate(stores, tmp_path / "out", "--cluster", "slurm", "--max-jobs", "2", *JOB, "--tls")
        finished = time.monotonic() - watch.start
        _wait_for(lambda: not slurm.jobs(), 30, "every job to be given back once the run ended")
    assert numbers == expected
    counts = [count for _, count in watch.samples]
    peak = counts.index(2)  # both jobs were submitted while the passes had work for them
    during_run = [count for t, count in watch.samples[peak:] if t < finished]
    print("squeue entries over time:", [(round(t, 1), c) for t, c in watch.samples])
    assert min(during_run) < 2  # a job was given back before the run ended (the serial tail)
    assert not list(tmp_path.glob(".largeemb-tls-*"))  # the certificates' copies went with the run


def test_a_worker_job_cancelled_mid_pass_costs_only_its_units(slurm, stores, in_process, tmp_path, jobqueue_config):
    expected = in_process[0]
    tiles = tmp_path / "tiles.log"
    cancelled = []

    def cancel_one_job():
        # Once 15 tiles are done, cancel the job that computed the last (as a preemption would).
        # If it is the only one, the run must get a new job to finish.
        _wait_for(lambda: len(_lines(tiles)) >= 15, 90, "15 tiles")
        victim = _lines(tiles)[-1].split()[1]
        slurm.cancel(victim)
        cancelled.append(victim)

    canceller = threading.Thread(target=cancel_one_job, daemon=True)
    canceller.start()
    with hooked(slow_tiles(0.02, str(tiles), where=True)):
        numbers, computed, loaded = _evaluate(stores, tmp_path / "out", "--cluster", "slurm", "--max-jobs", "2", *JOB)
    canceller.join(timeout=5)
    assert cancelled, "the run finished before a worker job could be cancelled"
    assert numbers == expected

    runs = [line.split() for line in _lines(tiles)]
    first_job = {}
    for name, job, _pid in runs:
        first_job.setdefault(name, job)
    again = sorted({name for name, *_ in runs if sum(1 for r in runs if r[0] == name) > 1})
    print(f"{len(runs)} tile computations of {len(first_job)} tiles; job {cancelled[0]} cancelled after computing "
          f"{sum(1 for r in runs if r[1] == cancelled[0])}; "
          f"{len(again)} tiles computed again; run summary: {computed} computed, {loaded} loaded")
    # Only units that the cancelled job had computed (and held in memory) ran again.
    assert all(first_job[name] == cancelled[0] for name in again), [
        (name, [r[1:] for r in runs if r[0] == name]) for name in again
    ]


def test_ctrl_c_gives_every_worker_job_back(slurm, stores, tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) mid-pass: one error line, exit 130, and no
    job of the run left in the queue (they would hold an allocation until their walltime)."""
    import signal
    import subprocess

    pytest.importorskip("dask_jobqueue")
    tiles = tmp_path / "tiles.log"
    env = {
        **os.environ,  # SLURM_CONF from the fixture; the site's dask config through the environment
        "DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS": '{"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}',
        "DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": str(tmp_path / "job-logs"),
        "DASK_DISTRIBUTED__ADAPTIVE__INTERVAL": "500ms",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    main = "import sys\nfrom largeemb.cli import main\nsys.argv = ['largeemb'] + sys.argv[1:]\nmain()\n"
    job = subprocess.Popen(
        [sys.executable, "-c", slow_tiles(0.2, str(tiles)) + main, "evaluate", *stores, "--out", str(tmp_path / "out"),
         *OPTIONS, "--cluster", "slurm", "--max-jobs", "2", *JOB],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        _wait_for(lambda: len(_lines(tiles)) >= 3 or job.poll() is not None, 90, "tiles computed by a worker job")
        assert job.poll() is None and slurm.jobs()
        os.killpg(job.pid, signal.SIGINT)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted, nothing was published", err
    _wait_for(lambda: not slurm.jobs(), 10, "the worker jobs to leave the queue")


def test_a_worker_job_the_batch_system_refuses_is_one_error_line(slurm, stores, tmp_path, jobqueue_config):
    with dask.config.set({"jobqueue.slurm.queue": "no-such-partition"}):
        result = runner.invoke(
            app, ["evaluate", *stores, "--out", str(tmp_path / "o"), *OPTIONS, "--cluster", "slurm", *JOB]
        )
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: the batch system refused the worker job (sbatch: error: "), line
    assert "Traceback" not in result.output and not (tmp_path / "o" / "metrics.json").exists()
    assert not slurm.jobs()
