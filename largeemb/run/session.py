"""A run: the executor one evaluation uses, its optional checkpoint store,
and the counts of its named units of work.

:func:`open_run` starts the executor the config asks for (in-process threads,
a LocalCluster of worker processes, or a running dask.distributed cluster)
and makes the run current, so that graphs built inside it
(:class:`largeemb.run.graph.Graph`) are counted, checkpointed and executed by it.
"""

from __future__ import annotations

import contextvars
import functools
import os
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from largeemb.errors import InputError
from largeemb.run.checkpoint import CheckpointStore
from largeemb.run.executor import Executor, InProcess

_current_run: contextvars.ContextVar[Run | None] = contextvars.ContextVar("largeemb_run", default=None)
#: The executor :func:`one_executor` keeps open for the runs inside it.
_lent_executor: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("largeemb_executor", default=None)


@dataclass
class Run:
    """One evaluation's execution state."""

    executor: Executor
    store: CheckpointStore | None = None
    computing: set = field(default_factory=set)  # keys of named tasks that compute
    loading: set = field(default_factory=set)  # keys of named tasks read from the store
    computed: int = 0
    loaded: int = 0
    noted: Counter = field(default_factory=Counter)  # (unit kind, name) -> what its units noted (run/tally.py)

    def summary(self) -> str:
        where = f" in {self.store.path}" if self.store else ""
        return f"{self.computed} tasks computed, {self.loaded} loaded from checkpoints{where}"


def current_run() -> Run:
    """The run graphs execute in: the open one, else in-process threads without checkpoints."""
    return _current_run.get() or Run(InProcess())


@contextmanager
def open_run(config, client=None, store: CheckpointStore | None = None):
    """Start the executor the config asks for and make it the current run.

    ``client`` (a ``dask.distributed.Client``) wins over the config; then
    ``config.scheduler`` (connect), ``config.cluster`` (submit worker jobs), or
    ``config.workers`` (start a LocalCluster of that many processes), else in-process threads
    (``config.threads_per_worker`` of them, default all cores). Inside :func:`one_executor`, that block's.
    """
    lent = _lent_executor.get()
    opened = nullcontext(lent) if lent is not None else _executor(config, client)
    with opened as executor, activated(Run(executor, store)) as run:
        yield run


@contextmanager
def one_executor(config, client=None):
    """Every run opened inside the block (:func:`open_run`) uses one executor, started here where the config
    asks for a cluster of its own (a LocalCluster, worker jobs): per-class evaluation starts it once for the
    whole sets and every class, not once for each. A client given, or in-process threads, cost nothing to open."""
    if _lent_executor.get() is not None or client is not None or not runs_on_cluster(config):
        yield
        return
    with _executor(config, client) as executor:
        reset = _lent_executor.set(executor)
        try:
            yield
        finally:
            _lent_executor.reset(reset)


def _executor(config, client):
    if runs_on_cluster(config, client):
        from largeemb.run import cluster

        return cluster.open_executor(client, config.scheduler, config.workers, config.threads_per_worker, config)
    return _in_process(config.threads_per_worker)


def in_one_run(func):
    """Run ``func`` in the current run, made current for all of it even where none was open (a fresh
    in-process one then): every graph it builds shares one run, and so its counts (:attr:`Run.noted`)."""

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        with activated(current_run()):
            return func(*args, **kwargs)

    return wrapped


@contextmanager
def activated(run: Run):
    """Make ``run`` the current run inside the block (graphs built there use its executor and store)."""
    reset = _current_run.set(run)
    try:
        yield run
    finally:
        _current_run.reset(reset)


@contextmanager
def _in_process(threads):
    yield InProcess(threads)


def runs_on_cluster(config, client=None) -> bool:
    return client is not None or bool(config.scheduler or config.workers or config.cluster)


def check_sources(config, client, *sources) -> None:
    """Workers in other processes open the stores themselves: in-memory inputs cannot reach them."""
    if not runs_on_cluster(config, client):
        return
    same_host = client is None and not config.scheduler and not config.cluster  # --workers N: a LocalCluster here
    for src in sources:
        if src.from_numpy_file and same_host:
            continue  # worker processes on this host map the file by path
        if src.from_numpy_file:
            stem = os.path.splitext(os.path.basename(src.location))[0]
            raise InputError(
                f"{src.location} is a local numpy file, which dask workers on other machines cannot read",
                "when running on a dask cluster",
                f"convert it once with `largeemb convert {src.location} {stem}.zarr` to storage every worker "
                f"can reach, and pass that path",
            )
        if src.data is not None or src.location.startswith("memory://"):
            raise InputError(
                f"{src.name if src.data is None else 'an in-memory array'} lives in this process, "
                "which dask workers in other processes cannot read",
                "when running on a dask cluster",
                "write it to a zarr store every worker can reach (largeemb convert) and pass its path or URL",
            )


def check_reachable(run: Run, sources, checkpoint_dir: str | None) -> None:
    """On a cluster, every worker must see the local stores and the checkpoint directory."""
    if not run.executor.remote:
        return
    wanted = {src.location: f"{src.name}" for src in sources if "://" not in src.location}
    if checkpoint_dir is not None:
        wanted[os.path.abspath(checkpoint_dir)] = f"the checkpoint directory {checkpoint_dir}"
    for path, what in wanted.items():
        blind = run.executor.workers_missing(os.path.abspath(path))
        if blind:
            raise InputError(
                f"{len(blind)} dask worker(s) cannot see {what} (e.g. {blind[0]})",
                f"at {os.path.abspath(path)}",
                "put inputs and --out on a filesystem every worker mounts at the same path, or use URLs (s3://...)",
            )
