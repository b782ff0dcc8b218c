"""Plain dask task graphs, built in linear time, run on the current executor."""

from __future__ import annotations

from . import execution
from .plan import tree


class Graph:
    """A plain dask task graph, built task by task.

    Each ``dask.delayed`` call merges the whole graph upstream of its
    arguments, which is quadratic in the task count when tasks chain (the
    banded self pass of a million rows has tens of thousands). Here a task is
    one dict entry: ``task()`` returns its key, and keys passed as arguments
    (also inside lists) become the results of those tasks.

    ``unit()`` adds a named unit of work (a tile, a block's result): the
    current run (:mod:`largeemb.execution`) counts it for progress and, when
    it keeps checkpoints, saves it or loads it instead of computing it.
    """

    def __init__(self, scope: str = "tasks"):
        self.tasks: dict = {}
        self.named = execution.Tasks(scope)

    def task(self, label: str, func, *args):
        key = (f"{label}-{self.named.token}", len(self.tasks))
        self.tasks[key] = (func, *args)
        return key

    def unit(self, name: str, func, *args):
        return self.named.add(self.tasks, name, func, *args)

    def share(self, values: list) -> list:
        """Values many tasks need (radii, centre): on a cluster, sent once, not per task."""
        return self.named.share(values)

    def tree(self, keys: list, combine, label: str):
        """Combine ``keys`` pairwise in a fixed binary tree (deterministic order)."""
        return tree(keys, lambda a, b: self.task(label, combine, a, b))


def run(g: Graph, outputs, label: str = "tasks"):
    """Run a task graph on the current run's executor (in-process threads by default).

    ``outputs`` is a key or a (nested) list of keys; results come back in the
    same shape. The graph is handed over as one collection, so the executor
    sees each task once however many outputs there are.
    """
    from dask.delayed import Delayed

    root = g.task("outputs", execution.same, outputs)
    return execution.compute(Delayed(root, g.tasks), label=label)[0]
