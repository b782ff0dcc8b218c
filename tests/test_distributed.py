"""dask.distributed execution: same metrics in-process, on a LocalCluster and on a
separately started scheduler + workers; no data in the graph; no thread
oversubscription; a killed worker changes nothing. Everything on 127.0.0.1."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager

import dask
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster
from typer.testing import CliRunner

import largeemb
from conftest import SUMMARY, finished_checkpoints, mixture, slowed_tiles, zarr_store
from largeemb.cli import app
from largeemb.config import EvaluateConfig
from largeemb.run import cluster, graph, session
from largeemb.run import threads as thread_policy

runner = CliRunner()
ARGS = ["--k", "3,5", "--block-rows", "512", "--no-plots"]  # the numbers are the point, not the figures
LARGE_GRAPH = "distributed.admin.large-graph-warning-threshold"


@pytest.fixture(scope="module")
def sets():
    return mixture(3000, 32, 1), mixture(2500, 32, 2, keep=6, shift=0.1)


@pytest.fixture(scope="module")
def stores(sets, tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed-data")
    return [zarr_store(root / f"{name}.zarr", data, (700, 32)) for name, data in zip(("real", "fake"), sets)]


@pytest.fixture(scope="module")
def in_process(stores, tmp_path_factory):
    return _cli_metrics(stores, tmp_path_factory.mktemp("in-process") / "out")


def _cli_metrics(stores, out, *extra):
    result = runner.invoke(app, ["evaluate", *stores, "--out", str(out), *ARGS, *extra])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "metrics.json").read_text())
    return {"metrics": written["metrics"], "by_k": written["by_k"]}


@contextmanager
def separate_cluster(tmp_path, workers=2):
    """`dask scheduler` and `dask worker` processes on loopback, stopped afterwards."""
    scheduler_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "cluster.log", "wb")
    procs = []

    def start(*args):
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=log))

    try:
        start(
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)
        )
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, (tmp_path / "cluster.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go, but give it a moment to be complete
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(workers):
            # Without a nanny: a single process each, and no OMP/BLAS=1 environment,
            # so largeemb itself must keep BLAS at one thread per task there.
            start(
                "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1", "--no-dashboard", "--name",
                f"w{i}",
            )
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        if procs and procs[0].poll() is None and scheduler_file.exists():
            with Client(json.loads(scheduler_file.read_text())["address"], timeout=10, set_as_default=False) as client:
                client.shutdown()  # closes workers, then the scheduler (quicker than signals)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


@pytest.mark.slow
def test_same_metrics_in_process_on_local_cluster_and_on_separate_scheduler(stores, in_process, tmp_path):
    assert _cli_metrics(stores, tmp_path / "local", "--workers", "2") == in_process
    with separate_cluster(tmp_path) as address:
        assert address.startswith("tcp://127.0.0.1:")
        assert _cli_metrics(stores, tmp_path / "remote", "--scheduler", address) == in_process


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as local,
        Client(local, set_as_default=False) as c,
    ):
        yield c


@pytest.mark.slow
def test_graph_carries_no_embedding_data(sets, stores, in_process, client):
    threshold = sets[1].nbytes // 8  # far below one input's size
    with dask.config.set({LARGE_GRAPH: f"{threshold}B"}), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = largeemb.evaluate(*stores, k=(3, 5), block_rows=512, client=client)
    assert not [w for w in caught if "large graph" in str(w.message)], [str(w.message) for w in caught]
    assert {"metrics": result.metrics, "by_k": {str(k): v for k, v in result.by_k.items()}} == in_process

    # The check is live: a graph that does embed one set trips it at this threshold.
    with dask.config.set({LARGE_GRAPH: f"{threshold}B"}), pytest.warns(UserWarning, match="large graph"):
        client.compute(dask.delayed(np.sum)(sets[1])).result()


def test_in_memory_inputs_are_refused_on_a_cluster(sets, client):
    with pytest.raises(largeemb.InputError, match="in-memory array.*cannot read"):
        largeemb.evaluate(*sets, k=3, client=client)
    arr = zarr.create_array("memory://largeemb-distributed/real.zarr", shape=sets[0].shape, dtype="f4", overwrite=True)
    arr[:] = sets[0]
    with pytest.raises(largeemb.InputError, match="memory://"):
        largeemb.evaluate("memory://largeemb-distributed/real.zarr", sets[1], k=3, workers=2)


def test_paths_workers_cannot_see_are_refused(client, tmp_path):
    executor = cluster.OnCluster(client, "test cluster")
    assert executor.workers_missing(str(tmp_path)) == []
    assert len(executor.workers_missing(str(tmp_path / "elsewhere"))) == 2
    with pytest.raises(largeemb.InputError, match="2 dask worker.*cannot see the checkpoint directory"):
        session.check_reachable(session.Run(executor), [], str(tmp_path / "elsewhere"))


@pytest.mark.parametrize("workers, threads", [(2, 1), (1, 2), (None, None)])
def test_tasks_use_one_blas_thread_so_slots_never_exceed_the_cores(workers, threads):
    """processes x task threads x faiss/BLAS threads per task <= cores."""
    # Without the nanny's OMP/BLAS=1 environment (as for workers started without
    # a nanny), a worker's BLAS would use every core; largeemb must hold it at one.
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}):
        with session.open_run(EvaluateConfig(workers=workers, threads_per_worker=threads)) as run:
            g = graph.Graph("probe")
            reports = graph.run(g, [g.unit(f"probe-{i}", thread_policy.thread_probe_task) for i in range(6)], "probe")
    slots = (workers or 1) * (threads or run.executor.threads)
    assert slots <= thread_policy.cores()
    if workers:
        assert {report["pid"] for report in reports} - {os.getpid()}  # ran in worker processes
    for report in reports:
        assert report["faiss"] == 1
        assert report["blas"] and set(report["blas"].values()) == {1}, report


@pytest.mark.slow
def test_a_killed_worker_changes_nothing(stores, in_process, tmp_path, caplog):
    work = tmp_path / "work"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as local,
        Client(local, set_as_default=False) as client,
    ):
        victim = next(iter(client.run(os.getpid).values()))
        killed = threading.Event()

        def kill_when_under_way():
            # Units finished so far, by name: consumed ones leave the disk as the run goes,
            # so the files present at one moment stay few.
            seen = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if work.is_dir():
                    seen.update(
                        name.split(".npz")[0] for name in os.listdir(work) if ".npz" in name and ".tmp-" not in name
                    )
                if len(seen) >= 20:
                    os.kill(victim, signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_when_under_way, daemon=True)
        killer.start()
        # so that a worker can be killed mid-run
        with caplog.at_level(logging.INFO, logger="largeemb"), slowed_tiles(0.03):
            result = largeemb.evaluate(*stores, k=(3, 5), block_rows=512, client=client, checkpoint_dir=str(work))
        killer.join(timeout=5)
        assert killed.is_set(), "the run finished before a worker could be killed"
        assert victim not in client.run(os.getpid).values()  # that worker is gone (the nanny started another)
    assert {"metrics": result.metrics, "by_k": {str(k): v for k, v in result.by_k.items()}} == in_process
    # Every named task left at most one finished checkpoint (units consumed by saved
    # ones are removed as the run goes), the rerun ones included, and no half-written one.
    (summary,) = [SUMMARY.search(r.getMessage()) for r in caplog.records if "tasks computed" in r.getMessage()]
    assert 0 < finished_checkpoints(work) <= int(summary.group(1))
    # The killed worker may leave a temporary file it was writing; every finished one is whole.
    from largeemb.run import checkpoint

    for name in os.listdir(work):
        if name.endswith(".npz") and ".tmp-" not in name:
            checkpoint.load(str(work / name))


def test_unreachable_scheduler_is_a_one_line_error(stores, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 2)
    result = runner.invoke(app, ["evaluate", *stores, "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: cannot reach the dask scheduler")
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_scheduler_and_workers_together_are_refused(stores, tmp_path):
    result = runner.invoke(
        app, ["evaluate", *stores, "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9", "--workers", "2"]
    )
    assert result.exit_code == 2 and "error:" in result.output


@pytest.mark.slow
def test_local_npy_files_with_worker_processes_equal_in_process_and_remote_clusters_name_the_convert(tmp_path):
    """--workers N maps .npy files by path in each worker process on this host; a remote cluster cannot, and the
    error names the file and the exact convert command."""
    rng = np.random.default_rng(6)
    real, fake = str(tmp_path / "real.npy"), str(tmp_path / "fake.npy")
    np.save(real, rng.standard_normal((900, 5)).astype(np.float32))
    np.save(fake, (rng.standard_normal((800, 5)) + 0.2).astype(np.float32))
    alone = largeemb.evaluate(real, fake, k=3, plots=False, block_rows=256)
    on_workers = largeemb.evaluate(real, fake, k=3, plots=False, block_rows=256, workers=2, threads_per_worker=1)
    assert on_workers.to_dict()["metrics"] == alone.to_dict()["metrics"]
    refused = r"real.npy is a local numpy file.*largeemb convert .*real.npy real.zarr"
    with pytest.raises(largeemb.InputError, match=refused):
        largeemb.evaluate(real, fake, k=3, plots=False, scheduler="tcp://127.0.0.1:9")
