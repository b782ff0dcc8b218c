"""How task graphs run: in-process threads (the default), a LocalCluster of
worker processes, or a running dask.distributed cluster.

A *run* (:func:`open_run`) holds the executor, the optional checkpoint store
and the names of the tasks built for it. Graph builders name their units of
work through :class:`Tasks`: a named task is counted for the progress display
and, when the run keeps checkpoints, saved when it finishes and loaded instead
of computed when a resumed run finds it on disk (which also prunes everything
it depended on from the graph).

Threads: parallelism comes from task slots (worker processes x task threads,
by default as many as the cores); inside a task faiss and BLAS use one thread,
so the two never multiply beyond the cores. (Measured on 2 cores: giving idle
cores to BLAS inside fewer task slots was slower than one BLAS thread, even for
4096-row tiles, so there is no such mode.)
"""

from __future__ import annotations

import contextvars
import logging
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

import dask

from . import checkpoint
from .errors import InputError
from .progress import Progress

logger = logging.getLogger("largeemb")
_current_run: contextvars.ContextVar["Run | None"] = contextvars.ContextVar("largeemb_run", default=None)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def warn_if_oversubscribed(slots: int, where: str) -> None:
    if slots > cores():
        logger.warning("%s has %d task slots for %d cores: tasks will compete for cores", where, slots, cores())


# -- executors ---------------------------------------------------------------


class InProcess:
    """dask's threaded scheduler in this process: ``threads`` tasks at a time."""

    remote = False

    def __init__(self, threads: int | None = None):
        self.threads = threads or cores()
        warn_if_oversubscribed(self.threads, "this process")

    def describe(self) -> str:
        return f"in-process, {self.threads} task threads of one faiss/BLAS thread each"

    def share(self, values: list) -> list:
        return list(values)

    def compute(self, graphs: tuple, tracked: set, progress: Progress):
        from dask.callbacks import Callback
        from threadpoolctl import threadpool_limits

        def posttask(key, result, dsk, state, worker_id):
            if key in tracked:
                progress.advance()

        with threadpool_limits(1), Callback(posttask=posttask):
            return dask.compute(*graphs, scheduler="threads", num_workers=self.threads)


# -- runs and named tasks ------------------------------------------------------


@dataclass
class Run:
    """One evaluation's execution state."""

    executor: object
    store: checkpoint.CheckpointStore | None = None
    computing: set = field(default_factory=set)  # keys of named tasks that compute
    loading: set = field(default_factory=set)  # keys of named tasks read from the store
    computed: int = 0
    loaded: int = 0

    def summary(self) -> str:
        where = f" in {self.store.path}" if self.store else ""
        return f"{self.computed} tasks computed, {self.loaded} loaded from checkpoints{where}"


def current_run() -> Run | None:
    return _current_run.get()


@contextmanager
def open_run(config, client=None, store: checkpoint.CheckpointStore | None = None):
    """Start the executor the config asks for and make it the current run.

    ``client`` (a ``dask.distributed.Client``) wins over the config; then
    ``config.scheduler`` (connect), then ``config.workers`` (start a
    LocalCluster of that many processes), else in-process threads
    (``config.threads_per_worker`` of them, default all cores).
    """
    if runs_on_cluster(config, client):
        from . import cluster

        opened = cluster.open_executor(client, config.scheduler, config.workers, config.threads_per_worker)
    else:
        opened = _in_process(config.threads_per_worker)
    with opened as executor:
        run = Run(executor, store)
        reset = _current_run.set(run)
        try:
            yield run
        finally:
            _current_run.reset(reset)


@contextmanager
def _in_process(threads):
    yield InProcess(threads)


def runs_on_cluster(config, client=None) -> bool:
    return client is not None or bool(config.scheduler or config.workers)


def check_sources(config, client, *sources) -> None:
    """Workers in other processes open the stores themselves: in-memory inputs cannot reach them."""
    if not runs_on_cluster(config, client):
        return
    for src in sources:
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


def same(value):
    """Pass a value through: gives a merge tree's root a name of its own."""
    return value


def _computed_and_kept(path: str, func, *args):
    value = func(*args)
    checkpoint.save(path, value)
    return value


class Tasks:
    """Names the units of work of one pass (``scope``, e.g. ``radii-real``)."""

    def __init__(self, scope: str, run: Run | None = None):
        self.scope = scope
        self.run = run if run is not None else current_run()
        self.token = uuid.uuid4().hex[:8]  # keys never collide, even for two builds of one scope

    def add(self, tasks: dict, name: str, func, *args):
        """Add ``func(*args)`` named ``{scope}-{name}`` to a plain task graph (see
        ``taskgraph.Graph``); returns its key. The run counts it for progress and,
        when it keeps checkpoints, saves it or loads it instead of computing it.
        """
        full = f"{self.scope}-{name}"
        group = f"{self.scope}-{name.split('-')[0]}-{self.token}"  # one dashboard group per kind
        store = self.run.store if self.run else None
        if store is not None and store.has(full):
            key = (group, full, "loaded")
            tasks[key] = (checkpoint.load, store.file(full))
            if self.run:
                self.run.loading.add(key)
            return key
        key = (group, full)
        tasks[key] = (_computed_and_kept, store.file(full), func, *args) if store is not None else (func, *args)
        if self.run:
            self.run.computing.add(key)
        return key

    def share(self, values: list) -> list:
        """Values many tasks need (radii, centres): sent to the cluster once, not per task."""
        return self.run.executor.share(values) if self.run else list(values)


def compute(*graphs, label: str = "tasks", threads: int | None = None):
    """Compute delayed graphs with the current run's executor, showing progress.

    Outside a run they go to in-process threads (``threads`` of them, default all cores).
    """
    run = current_run()
    if run is None:
        run = Run(InProcess(threads))
    reachable = set()
    for graph in graphs:
        for obj in graph if isinstance(graph, (list, tuple)) else [graph]:
            if hasattr(obj, "__dask_graph__"):
                reachable.update(obj.__dask_graph__().keys())
    tracked = reachable & run.computing
    loaded = len(reachable & run.loading)
    run.computed += len(tracked)
    run.loaded += loaded
    with Progress(label, len(tracked), loaded=loaded) as progress:
        return run.executor.compute(graphs, tracked, progress)
