"""What a unit of work notes about itself while it runs (e.g. the tile entries it
screened in bf16), collected by its wrapper and carried back as its progress is.

A task body calls :func:`note`; the unit wrapper (:mod:`largeemb.run.graph`)
collects what its unit noted, under the unit's kind (the unit name's pass and
first word: ``radii-real``, ``cross-tile``), and :func:`report` s it when the
unit is done. Where that goes is the executor's: in this process, straight to
the pass's :class:`~largeemb.run.progress.Progress` (:func:`reporting_to`); on
a cluster, beside the unit's value (:func:`noted_result`), from which a tiny
task takes it back as the unit finishes. The run then sums it
(:attr:`largeemb.run.session.Run.noted`). Only units computed in this run
report anything: a unit loaded from a checkpoint was counted by the run that
computed it.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

#: The counts of the unit running in this thread (None outside a unit).
_noting: ContextVar[Counter | None] = ContextVar("largeemb_noting", default=None)
#: Where the task running in this thread reports a finished unit's counts (None: nowhere).
_sink: ContextVar = ContextVar("largeemb_tally_sink", default=None)


def note(**counts: int) -> None:
    """Add to the counts of the unit running in this thread (outside a unit: nothing)."""
    noted = _noting.get()
    if noted is not None:
        noted.update(counts)


@contextmanager
def collecting():
    """The counts noted inside, by name."""
    counts: Counter = Counter()
    reset = _noting.set(counts)
    try:
        yield counts
    finally:
        _noting.reset(reset)


def report(counts: dict) -> None:
    """Hand a finished unit's counts ({(unit kind, name): count}) to the task's sink."""
    sink = _sink.get()
    if sink is not None and counts:
        sink(counts)


def reporting_to(sink, func, *args):
    """``func(*args)``, its units' counts handed to ``sink(counts)``."""
    reset = _sink.set(sink)
    try:
        return func(*args)
    finally:
        _sink.reset(reset)


@dataclass(frozen=True)
class Noted:
    """A task's value and what its unit reported (for executors whose results travel)."""

    value: object
    counts: dict


def noted_result(func, *args) -> Noted:
    """``func(*args)`` with what its unit reported beside it."""
    counts: Counter = Counter()
    value = reporting_to(counts.update, func, *args)
    return Noted(value, dict(counts))


def value_of(noted: Noted):
    return noted.value


def counts_of(noted: Noted) -> dict:
    return noted.counts
