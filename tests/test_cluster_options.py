"""`--cluster` and its job options without a batch system: how the worker jobs are described
(walltime, lifetime before it, the site's config), the one-line errors, and that evaluate and
reference build both hand the options to the batch cluster. Runs on SLURM itself: test_slurm.py."""

import sys
from contextlib import contextmanager

import dask
import pytest
from typer.testing import CliRunner

from largeemb.cli import app
from largeemb.config import EvaluateConfig
from largeemb.errors import InputError
from largeemb.run import jobqueue

runner = CliRunner()
JOB = ["--job-cores", "4", "--job-memory", "16GB", "--job-walltime", "01:00:00"]


@pytest.mark.parametrize(
    "walltime, kind, seconds",
    [("04:00:00", "slurm", 14400), ("1-02:00:00", "slurm", 93600), ("30", "slurm", 1800), ("10:30", "slurm", 630),
     ("10:30", "lsf", 37800), ("00:30:00", "pbs", 1800), ("2:00:00", "sge", 7200)],
)
def test_walltimes_of_each_batch_system(walltime, kind, seconds):
    assert jobqueue.walltime_seconds(walltime, kind) == seconds


def test_a_walltime_that_is_not_one_is_refused():
    with pytest.raises(InputError, match="not a batch walltime"):
        jobqueue.walltime_seconds("four hours", "slurm")


@pytest.mark.parametrize("walltime_s", [120, 600, 3600, 4 * 3600, 48 * 3600])
def test_workers_retire_before_their_walltime_with_a_margin(walltime_s):
    args = jobqueue.lifetime_args(walltime_s)
    lifetime, stagger = (int(args[args.index(flag) + 1].rstrip("s")) for flag in ("--lifetime", "--lifetime-stagger"))
    margin = walltime_s - (lifetime + stagger)  # the latest a worker retires, before the batch system kills it
    assert margin >= min(60, walltime_s // 2) and lifetime - stagger >= walltime_s // 3


@contextmanager
def site_config(**jobqueue_slurm):
    """The site's dask config for SLURM (as ~/.config/dask/jobqueue.yaml would set it)."""
    with dask.config.set({f"jobqueue.slurm.{key.replace('_', '-')}": value for key, value in jobqueue_slurm.items()}):
        yield


def _job_script(config: EvaluateConfig) -> str:
    from dask_jobqueue.slurm import SLURMJob

    return SLURMJob(scheduler="tcp://127.0.0.1:8786", name="w", **jobqueue.job_options(config, None)).job_script()


def test_the_worker_job_script_has_the_options_and_a_lifetime():
    pytest.importorskip("dask_jobqueue")
    with site_config(queue="gpu", cores=None, memory=None, worker_extra_args=[]):
        script = _job_script(EvaluateConfig(cluster="slurm", job_cores=4, job_memory="16GB", job_walltime="01:00:00"))
    assert "#SBATCH -p gpu" in script and "#SBATCH --cpus-per-task=4" in script and "#SBATCH -t 01:00:00" in script
    assert "--lifetime 3060s --lifetime-stagger 180s" in script  # retires between 48 and 54 minutes
    assert sys.executable in script  # the same environment on the compute nodes


def test_the_sites_own_lifetime_and_walltime_are_kept():
    pytest.importorskip("dask_jobqueue")
    with site_config(cores=8, memory="32GB", walltime="02:00:00", worker_extra_args=["--lifetime", "100m"]):
        script = _job_script(EvaluateConfig(cluster="slurm"))
    assert "#SBATCH -t 02:00:00" in script and "--cpus-per-task=8" in script
    assert "--lifetime 100m" in script and "--lifetime-stagger" not in script


def _error(args) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[-1]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from conftest import mixture, zarr_store

    root = tmp_path_factory.mktemp("options-data")
    return [zarr_store(root / f"{name}.zarr", mixture(300, 4, seed)) for name, seed in (("r", 1), ("f", 2))]


def test_without_dask_jobqueue_the_error_names_the_extra(stores, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed
    line = _error(["evaluate", *stores, "--out", str(tmp_path / "o"), "--cluster", "slurm"])
    assert "dask-jobqueue" in line and "pip install 'largeemb[jobqueue]'" in line


def test_jobs_without_cores_or_memory_are_a_one_line_error(stores, tmp_path):
    pytest.importorskip("dask_jobqueue")
    with site_config(cores=None, memory=None):
        line = _error(["evaluate", *stores, "--out", str(tmp_path / "o"), "--cluster", "slurm", "--no-plots"])
    assert "cannot describe the worker jobs" in line and "--job-cores and --job-memory" in line


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cluster": "condor"}, "unknown --cluster 'condor'"),
        ({"cluster": "slurm", "workers": 2}, "--cluster and --workers both given"),
        ({"cluster": "slurm", "scheduler": "tcp://h:8786"}, "--cluster and --scheduler both given"),
        ({"max_jobs": 4}, "--max-jobs applies to worker jobs only"),
        ({"job_walltime": "01:00:00"}, "--job-walltime applies to worker jobs only"),
        ({"cluster": "slurm", "max_jobs": 0}, "max_jobs must be a whole number >= 1"),
    ],
)
def test_batch_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        EvaluateConfig(**options)


def test_where_it_runs_never_enters_the_result_or_the_resume_check():
    batch = EvaluateConfig(cluster="lsf", max_jobs=9, job_cores=2, job_memory="8GB", job_walltime="10:00", tls=True)
    assert batch.params() == EvaluateConfig().params() and batch.result_params() == EvaluateConfig().result_params()


@pytest.mark.parametrize("command", [["evaluate", "REAL", "FAKE"], ["reference", "build", "REAL"]])
def test_evaluate_and_reference_build_hand_the_options_to_the_batch_cluster(command, stores, tmp_path, monkeypatch):
    command = [{"REAL": stores[0], "FAKE": stores[1]}.get(arg, arg) for arg in command]
    seen = []

    @contextmanager
    def reached(config, security):
        seen.append(config)
        raise InputError("reached the batch cluster", "in the test", "nothing to do")
        yield

    monkeypatch.setattr(jobqueue, "job_cluster", reached)
    line = _error([*command, "--out", str(tmp_path / "o"), "--cluster", "pbs", "--max-jobs", "3", *JOB])
    assert line.startswith("error: reached the batch cluster")
    (config,) = seen
    assert (config.cluster, config.max_jobs, config.job_cores, config.job_memory, config.job_walltime) == (
        "pbs", 3, 4, "16GB", "01:00:00",
    )
