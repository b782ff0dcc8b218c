"""The executor contract, and the in-process executor (dask's threaded scheduler).

An executor runs one plain dask graph (a dict of tasks) to one output key.
:class:`largeemb.run.cluster.OnCluster` is the other implementation.
"""

from __future__ import annotations

from typing import Protocol

from largeemb.run.progress import Progress
from largeemb.run.tally import reporting_to
from largeemb.run.threads import cores, pools_at_one_thread, warn_if_oversubscribed


class LostWork(Exception):
    """Results an unfinished graph still needed were lost with a worker, and the
    cluster had already forgotten how to recompute them (their inputs were released)."""


class Executor(Protocol):
    #: True when tasks run in other processes (which must open the stores themselves).
    remote: bool

    def describe(self) -> str:
        """Where tasks run, in words (for the log)."""

    def share(self, values: list) -> list:
        """Values many tasks need, made available once (on a cluster: scattered)."""

    def compute(self, tasks: dict, output, tracked: set, progress: Progress):
        """Run ``tasks`` and return the value of key ``output``; advance ``progress`` per tracked key,
        and bring it what each tracked task reports (:mod:`largeemb.run.tally`): ``progress.note``.

        Raises :class:`LostWork` when the graph cannot finish because a worker took needed results with it.
        """


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

    def compute(self, tasks: dict, output, tracked: set, progress: Progress):
        import dask.threaded
        from dask.callbacks import Callback

        def posttask(key, result, dsk, state, worker_id):
            if key in tracked:
                progress.advance()

        # What a tracked task reports goes straight to the progress (from the task threads).
        tasks = {key: (reporting_to, progress.note, *task) if key in tracked else task for key, task in tasks.items()}
        with pools_at_one_thread(), Callback(posttask=posttask):
            return dask.threaded.get(tasks, output, num_workers=self.threads)
