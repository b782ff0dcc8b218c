"""Worker jobs from the site's batch system (``--cluster slurm|pbs|lsf|sge``), through dask-jobqueue.

The scheduler runs in this process; workers are batch jobs that it submits
as the graph needs them and gives back when they idle (adaptive scaling, 0 to
``max_jobs`` jobs), so a long serial stretch (the end of a pass, the plots)
holds no allocation. Every finished unit is saved to the checkpoint
directory, so a worker job that is preempted or cancelled costs only the
units it had in flight or in memory; the run goes on on the others (and on
the job that replaces it) and its result is exact all the same.

Jobs are configured from the site's dask config (``jobqueue.<kind>.*`` in
``~/.config/dask/jobqueue.yaml``: queue, account, cores, memory, walltime,
interface, job-script-prologue, ...), overridden by ``job_cores``,
``job_memory`` and ``job_walltime``. Each worker retires itself before its
walltime (``--lifetime``, staggered so that they do not all go at once):
it stops taking tasks and hands over what it holds, and the adaptive loop
submits a replacement, instead of the batch system killing it mid-unit.

With TLS (``--tls``) the scheduler and workers speak only TLS; throw-away
certificates are copied for the workers into a private directory (under
``jobqueue.<kind>.shared-temp-directory``, else the current directory, which
the compute nodes must see) that goes when the run ends.

A submission the batch system refuses (a wrong queue or account) ends the run
with one error line where it waits for its first worker.

Sites that forbid connections from compute nodes to the login node need the
single-allocation pattern instead: jobs/slurm/evaluate.sbatch.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from contextlib import contextmanager

import dask

from largeemb.errors import InputError

logger = logging.getLogger("largeemb")

#: --cluster value -> dask-jobqueue's cluster class.
KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster", "sge": "SGECluster"}
#: Seconds between log lines while no worker job has started yet (they may queue for long).
QUEUE_NOTE_S = 60
#: Seconds the cluster gets to cancel its jobs at the end.
CLOSE_TIMEOUT_S = 30


def dask_jobqueue():
    """The dask_jobqueue module, or a one-line error naming the extra that installs it.

    Importing it replaces this process's Ctrl-C handler with ``sys.exit()``
    (dask_jobqueue.runner, for its own runner processes): an interrupted run
    would then end with exit status 0 and no error line. The handler is put back.
    """
    import signal

    handler = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue
    except ImportError:
        raise InputError(
            "--cluster needs dask-jobqueue, which is not installed",
            "in this Python environment",
            "pip install 'largeemb[jobqueue]'",
        ) from None
    finally:
        if threading.current_thread() is threading.main_thread() and handler is not None:
            signal.signal(signal.SIGINT, handler)
    return dask_jobqueue


def walltime_seconds(walltime: str, kind: str) -> int:
    """Seconds in a batch walltime: [D-]HH:MM:SS, HH:MM:SS, MM:SS (HH:MM for LSF), or minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(walltime).strip())
    if not match:
        raise InputError(
            f"walltime {walltime!r} is not a batch walltime", "in the job options", "pass e.g. --job-walltime 04:00:00"
        )
    days, *parts = match.groups()
    parts = [int(p) for p in parts if p is not None]
    if len(parts) == 1:
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 3600 + parts[1] * 60 if kind == "lsf" else parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return int(days or 0) * 86400 + seconds


def lifetime_args(walltime_s: int) -> list[str]:
    """``dask worker`` options that retire a worker before its job's walltime.

    A margin of a tenth of the walltime (1 to 15 minutes) is kept for the
    unit in flight and the handover; lifetimes are staggered by half the
    margin either way, so that workers are not all replaced at once.
    """
    margin = min(max(walltime_s // 10, 60), 900)
    stagger = margin // 2
    lifetime = walltime_s - margin - stagger
    if lifetime < walltime_s // 2:  # very short walltimes: no stagger, retire at half time
        lifetime, stagger = walltime_s // 2, 0
    return ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]


def job_options(config, security, certificates: str | None = None) -> dict:
    """Keyword arguments of the cluster class: the site's config, overridden by the run's options.

    ``certificates``: a directory the workers can read for copies of throw-away certificates.
    """
    kind = config.cluster
    options = {}
    for name, value in (("cores", config.job_cores), ("memory", config.job_memory), ("walltime", config.job_walltime)):
        if value is not None:
            options[name] = value
    walltime = options.get("walltime") or dask.config.get(f"jobqueue.{kind}.walltime", None)
    extra = list(dask.config.get(f"jobqueue.{kind}.worker-extra-args", None) or [])
    if walltime and not any(str(arg).startswith("--lifetime") for arg in extra):  # the site's own lifetime wins
        extra += lifetime_args(walltime_seconds(walltime, kind))
    options["worker_extra_args"] = extra
    if not dask.config.get(f"jobqueue.{kind}.python", None):
        options["python"] = sys.executable  # the same environment on the compute nodes (a shared path)
    if security is not None:
        options.update(security=security, protocol="tls://")
    if certificates is not None:
        options["shared_temp_directory"] = certificates
    return options


@contextmanager
def _certificates_dir(config, security):
    """A private directory for the workers' copies of throw-away certificates (held in memory here),
    under the site's jobqueue shared-temp-directory or else the current directory (which the
    compute nodes must see); removed with the run. None where the certificates are files already."""
    if security is None or "\n" not in (security.tls_worker_cert or ""):
        yield None
        return
    import os
    import shutil
    import tempfile

    shared = dask.config.get(f"jobqueue.{config.cluster}.shared-temp-directory", None)
    path = tempfile.mkdtemp(
        prefix=".largeemb-tls-", dir=os.path.expanduser(os.path.expandvars(shared)) if shared else os.getcwd()
    )
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def job_cluster(config, security):
    """Start the batch cluster, adapting 0..max_jobs jobs; yields (client, description, hold_worker).

    Every job it submitted is cancelled when the block ends, by success,
    error, Ctrl-C or SIGTERM.
    """
    from distributed import Client

    from largeemb.config import DEFAULT_MAX_JOBS

    kind, max_jobs = config.cluster, config.max_jobs or DEFAULT_MAX_JOBS
    cls = getattr(dask_jobqueue(), KINDS[kind])
    refused: list[str] = []  # why the batch system refused worker jobs, newest last
    with _certificates_dir(config, security) as certificates:
        cluster = _new_cluster(cls, config, security, certificates, refused)
        try:
            # How often it looks, how long work must wait to ask for a job, how many idle looks give one back:
            # dask's config (distributed.adaptive.interval, target-duration, wait-count).
            adaptive = cluster.adapt(minimum_jobs=0, maximum_jobs=max_jobs, Adaptive=_replacing())
            job = cluster._dummy_job
            what = (
                f"{kind} worker jobs (0 to {max_jobs} of {job.worker_cores} cores, "
                f"{job.worker_memory / 2**30:.1f} GiB, adaptive)"
            )
            with Client(cluster, set_as_default=False) as client:
                yield client, what, _holder(client, adaptive, job.worker_processes, refused, kind)
        finally:
            cluster.close(timeout=CLOSE_TIMEOUT_S)  # cancels every job it submitted
            _close_certificate_copies(cluster)


def _close_certificate_copies(cluster) -> None:
    """Close (and so delete) the temporary files dask-jobqueue wrote the workers' certificates to:
    it keeps them open on the cluster (``_job_<part>``) until the cluster is garbage-collected,
    which would find their directory gone and complain."""
    for name, handle in list(vars(cluster).items()):
        if name.startswith("_job_") and hasattr(handle, "close"):
            try:
                handle.close()
            except OSError:
                pass


def _new_cluster(cls, config, security, certificates, refused: list):
    try:
        return cls(job_cls=_reporting(cls.job_cls, refused), **job_options(config, security, certificates))
    except ValueError as exc:  # e.g. no cores or memory per job in the options or the config
        raise InputError(
            f"cannot describe the worker jobs ({str(exc).splitlines()[0]})",
            f"for --cluster {config.cluster}",
            f"pass --job-cores and --job-memory, or set them under jobqueue.{config.cluster} "
            "in the dask config (jobqueue.yaml)",
        ) from None


def _replacing():
    """dask's Adaptive, which also forgets jobs that ended on their own (preempted, cancelled, past their lifetime).

    dask's cluster drops such a job's worker only after
    ``distributed.deploy.lost-worker-timeout`` and keeps it in its plan, so the
    adaptive loop, seeing as many jobs planned as it wants, submits no
    replacement: a run whose only job was preempted would wait forever.
    """
    from distributed.deploy.adaptive import Adaptive

    class Replacing(Adaptive):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._started: set = set()

        async def adapt(self) -> None:
            cluster = self.cluster
            self._started |= set(cluster.workers)
            lost = (self._started - set(cluster.workers)) & set(cluster.worker_spec)
            if lost:
                logger.info("%d worker job(s) ended early (preempted, cancelled or past their lifetime); "
                            "their unsaved units run again elsewhere", len(lost))
                await cluster.scale_down(lost)
                self._started -= lost
            await super().adapt()

    return Replacing


def _reporting(job_cls, refused: list):
    """The cluster's job class, noting (not raising) a submission the batch system refused.

    Raised, dask would print the traceback at every adaptive step, and the
    run would wait for the job forever; noted, the run stops with one line
    where it waits for a worker (see :func:`_holder`), or says it once per
    reason while other workers carry on.
    """

    from distributed.core import Status

    class Reporting(job_cls):
        async def start(self):
            try:
                await super().start()
            except (RuntimeError, ValueError, OSError) as exc:  # the submit command failed, or is missing
                reason = ([line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__])[-1].strip()
                if reason not in refused:
                    logger.warning("a worker job could not be submitted: %s", reason)
                refused.append(reason)
                # No job, so nothing to cancel; dask's cluster asserts that every started one runs.
                self.status = Status.running

    return Reporting


def _holder(client, adaptive, per_job: int, refused: list, kind: str):
    """A context that keeps at least one worker job while it is open (nested openings count)."""
    lock, held = threading.Lock(), [0]

    @contextmanager
    def hold():
        with lock:
            held[0] += 1
            adaptive.minimum = per_job
        try:
            _wait_for_a_worker(client, refused, kind)
            yield
        finally:
            with lock:
                held[0] -= 1
                if not held[0]:
                    adaptive.minimum = 0

    return hold


def _wait_for_a_worker(client, refused: list, kind: str) -> None:
    """Wait for a worker, without a limit (a job may queue for hours; said every QUEUE_NOTE_S),
    unless the batch system refuses the jobs: then one error line."""
    waited = 0
    while True:
        try:
            return client.wait_for_workers(1, timeout=1)
        except TimeoutError:
            waited += 1
        if refused and not client.scheduler_info(n_workers=1)["workers"]:
            raise InputError(
                f"the batch system refused the worker job ({refused[-1]})",
                f"for --cluster {kind}",
                f"check queue, account and resources under jobqueue.{kind} in the dask config (jobqueue.yaml) "
                "and the --job-* options",
            )
        if waited % QUEUE_NOTE_S == 0:
            logger.info("waiting for a worker job to start (queued in the batch system)")
