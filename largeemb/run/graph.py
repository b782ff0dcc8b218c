"""Plain dask task graphs, built in linear time, run on the current run's executor.

A pass builds one :class:`Graph`: ``task()`` adds an anonymous step (a merge,
a digest), ``unit()`` a named unit of work (a tile, a block's result) that the
run counts for progress and, when it keeps checkpoints, saves when it
finishes or loads instead of computing it. ``run()`` hands the graph to the
executor, culled to what the outputs need (so a loaded merge also skips
everything below it).

Disk: a unit's checkpoint is needed only until every unit that consumes its
result has saved its own (a resumed run then loads those and never reaches
it). So each unit, once saved, removes the files of the units it consumed
whose consumers are all saved; units whose result reaches the pass's output
other than through a unit are kept to the end. A consumer counts as saved
also once its own file was released in turn (an empty marker stays, see
:func:`largeemb.run.checkpoint.release`): without that, a unit whose first
consumer left the disk before its second was saved would stay to the end.
The work directory then holds about one pass's frontier of results, not
every tile the run computed.

A unit's wrapper also collects what its task noted about itself
(:mod:`largeemb.run.tally`, e.g. screened tile entries) and reports it; the
executor brings it to the pass's progress as the unit finishes, and
:func:`run` adds it to the run's counts (:attr:`largeemb.run.session.Run.noted`).

Seam: :data:`unit_hooks` (for tests and instrumentation) holds callables
``hook(name, func) -> func`` applied to every named unit's function as graphs
are built; ``name`` is the unit's full name (e.g. ``radii-real-between-0-1``,
``cross-tile-2-3``). A hook's function runs wherever the task runs, so on a
cluster it must be picklable.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import defaultdict

from largeemb.errors import WorkersLostError
from largeemb.kernels.plan import tree
from largeemb.run import checkpoint
from largeemb.run.executor import LostWork
from largeemb.run.progress import Progress
from largeemb.run.session import current_run
from largeemb.run.tally import collecting, report

unit_hooks: list = []
#: Worker losses in a row, with no unit saved between them, that end a pass.
LOST_IN_A_ROW = 3
logger = logging.getLogger("largeemb")


def same(value):
    """Pass a value through: gives a merge tree's root a name of its own."""
    return value


def _unit(kind: str, path: str | None, releases, func, *args):
    """Compute a unit and report what it noted (under its ``kind``); when the run keeps
    checkpoints (``path``), save it, then remove the inputs' files whose every consumer is saved.

    ``releases``: (input unit's file, its consumers' files) pairs.
    """
    with collecting() as counts:
        value = func(*args)
    if path is not None:
        checkpoint.save(path, value)
        for done, consumers in releases:
            if all(checkpoint.saved(c) for c in consumers):
                checkpoint.release(done)
    report({(kind, name): count for name, count in counts.items()})
    return value


class Graph:
    """A plain dask task graph of one pass (``scope``, e.g. ``radii``), built task by task.

    Each ``dask.delayed`` call merges the whole graph upstream of its
    arguments, which is quadratic in the task count when tasks chain (the
    banded self pass of a million rows has tens of thousands). Here a task is
    one dict entry: ``task()`` returns its key, and keys passed as arguments
    (also inside lists) become the results of those tasks.
    """

    def __init__(self, scope: str = "tasks"):
        self.scope = scope
        self.tasks: dict = {}
        self.run = current_run()
        self.token = uuid.uuid4().hex[:8]  # keys never collide, even for two builds of one scope
        self.shared: list[tuple[list, list]] = []  # (values, what the executor made of them)

    def task(self, label: str, func, *args):
        key = (f"{label}-{self.token}", len(self.tasks))
        self.tasks[key] = (func, *args)
        return key

    def unit(self, name: str, func, *args):
        """Add ``func(*args)`` named ``{scope}-{name}``: counted, and checkpointed when the run keeps checkpoints."""
        full = f"{self.scope}-{name}"
        kind = f"{self.scope}-{name.split('-')[0]}"
        group = f"{kind}-{self.token}"  # one dashboard group per kind
        for hook in unit_hooks:
            func = hook(full, func)
        store = self.run.store
        if store is not None and store.has(full):
            key = (group, full, "loaded")
            self.tasks[key] = (checkpoint.load, store.file(full))
            self.run.loading.add(key)
            return key
        key = (group, full)
        self.tasks[key] = (_unit, kind, store.file(full) if store is not None else None, (), func, *args)
        self.run.computing.add(key)
        return key

    def share(self, values: list) -> list:
        """Values many tasks need (radii, centre): on a cluster, sent once, not per task."""
        handles = self.run.executor.share(values)
        self.shared.append((list(values), list(handles)))
        return handles

    def shared_again(self) -> dict:
        """Share every shared value anew (a lost worker may have taken them along): old handle key -> new handle."""
        renamed = {}
        for values, handles in self.shared:
            for old, new in zip(handles, self.run.executor.share(values)):
                if hasattr(old, "key"):
                    renamed[old.key] = new
        return renamed

    def tree(self, keys: list, combine, label: str, units: str | None = None):
        """Combine ``keys`` pairwise in a fixed binary tree (deterministic order).

        ``units``: name the merges as units ``{units}-{i}`` (counted and
        checkpointed), so that merged parts leave the disk as the tree grows.
        """
        if units is None:
            return tree(keys, lambda a, b: self.task(label, combine, a, b))
        count = iter(range(len(keys)))
        return tree(keys, lambda a, b: self.unit(f"{units}-{next(count)}", combine, a, b))


def run(g: Graph, outputs, label: str = "tasks"):
    """Run a pass's graph on its run's executor, showing progress.

    ``outputs`` is a key or a (nested) list of keys; results come back in the
    same shape.
    """
    from dask.optimization import cull

    root = g.task("outputs", same, outputs)
    tasks, _ = cull(g.tasks, [root])
    if g.run.store is not None:
        tasks = _with_releases(tasks, root)
    tracked = g.run.computing & tasks.keys()
    loaded = len(g.run.loading & tasks.keys())
    g.run.computed += len(tracked)
    g.run.loaded += loaded
    if not tracked and not loaded:  # a pass of plain tasks (the projection) still shows its progress
        tracked = set(tasks) - {root}
    units = [task[2] for task in tasks.values() if task[0] is _unit and task[2] is not None]
    with Progress(label, len(tracked), loaded=loaded) as progress:
        out = _despite_lost_workers(g, tasks, root, tracked, progress, label)
    # The pass is complete: each file it still holds reaches its output, so no
    # release will ever ask about its units again.
    checkpoint.forget_released(units)
    g.run.noted.update(progress.noted)
    return out


def _despite_lost_workers(g: Graph, tasks: dict, root, tracked: set, progress: Progress, label: str):
    """Compute the pass; each time a dead worker took results (or shared values) that the cluster
    can no longer recompute, run it again with its shared values sent anew, loading every unit saved
    so far. Workers may go many times in a long run (preemption, lifetimes); only losses in a row
    with no unit saved between them (LOST_IN_A_ROW) end it, keeping the saved units for --resume."""
    from dask.optimization import cull

    barren = 0
    while True:
        try:
            return g.run.executor.compute(tasks, root, tracked, progress)
        except LostWork as exc:
            logger.info(
                "%s: a lost worker took unsaved results with it; running the pass again from its checkpoints", label
            )
            tasks, _ = cull(_reloaded(tasks, g.shared_again()), [root])
            left = {key for key in tracked & tasks.keys() if tasks[key][0] is not checkpoint.load}
            barren = barren + 1 if len(left) >= len(tracked) else 0
            if barren >= LOST_IN_A_ROW:
                raise WorkersLostError(
                    f"dask workers were lost {barren} times in a row before any further unit of work finished ({exc})",
                    f"in the {label} pass",
                    "check the workers' logs (memory, walltime, preemption) and rerun with --resume: "
                    "finished units are kept",
                ) from None
            tracked = left
            progress.done = max(0, progress.total - len(left))  # what is left, not a second count of the rest


def _reloaded(tasks: dict, renamed: dict) -> dict:
    """``tasks`` with every checkpointed unit whose file exists now loaded instead of computed,
    and shared values replaced by their new handles."""

    def fresh(arg):
        if isinstance(arg, list):
            return [fresh(a) for a in arg]
        key = getattr(arg, "key", None)
        return renamed[key] if not isinstance(arg, tuple) and key in renamed else arg

    out = {}
    for key, task in tasks.items():
        if task[0] is _unit and task[2] is not None and os.path.exists(task[2]):
            out[key] = (checkpoint.load, task[2])
        else:
            out[key] = (task[0], *(fresh(a) for a in task[1:]))
    return out


def _inputs(task, tasks: dict) -> list:
    """Keys of ``tasks`` that a task takes as arguments (also inside lists)."""
    found, stack = [], list(task[1:])
    while stack:
        arg = stack.pop()
        if isinstance(arg, list):
            stack.extend(arg)
        elif isinstance(arg, tuple):
            try:
                if arg in tasks:
                    found.append(arg)
            except TypeError:  # a tuple of arrays is a value, not a key
                pass
    return found


def _with_releases(tasks: dict, root) -> dict:
    """Give each computed unit the inputs it may remove once saved (see the module docstring).

    A unit U is released by its consumers: the nearest units above it
    (through plain tasks). U is kept if it also reaches ``root`` through
    plain tasks alone, or has no consumer.
    """
    saved = {
        key for key, task in tasks.items() if (task[0] is _unit and task[2] is not None) or task[0] is checkpoint.load
    }
    path = {key: tasks[key][2 if tasks[key][0] is _unit else 1] for key in saved}
    users = defaultdict(set)
    for key, task in tasks.items():
        for dep in _inputs(task, tasks):
            users[dep].add(key)
    consumers, keep = defaultdict(set), set()
    for unit in saved:
        stack, seen = list(users[unit]), set()
        while stack:
            above = stack.pop()
            if above in seen:
                continue
            seen.add(above)
            if above in saved:
                consumers[unit].add(above)
            elif above == root:
                keep.add(unit)
            else:
                stack.extend(users[above])
    releases = defaultdict(list)
    for unit, above in consumers.items():
        if unit not in keep:
            for consumer in above:
                releases[consumer].append((path[unit], sorted(path[c] for c in above)))
    out = dict(tasks)
    for key, files in releases.items():
        task = tasks[key]
        if task[0] is _unit:
            out[key] = (*task[:3], tuple(files), *task[4:])
    return out
