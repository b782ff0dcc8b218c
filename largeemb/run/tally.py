"""What a unit of work notes about itself while it runs (e.g. the tile entries it
screened in bf16), carried back beside its result, as its progress is.

A task body calls :func:`note`; the unit wrapper (:mod:`largeemb.run.graph`)
collects what its unit noted, under the unit's kind (the unit name's pass and
first word: ``radii-real``, ``cross-tile``), and returns it with the value as
:class:`Noted`. The executor hands each unit's counts to the pass's
:class:`~largeemb.run.progress.Progress` as the unit finishes, and the run
sums them (:attr:`largeemb.run.session.Run.noted`). Only units computed in
this run note anything: a unit loaded from a checkpoint was counted by the run
that computed it.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

#: The counts of the unit running in this thread (None outside a unit).
_noting: ContextVar[Counter | None] = ContextVar("largeemb_noting", default=None)


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


@dataclass(frozen=True)
class Noted:
    """A unit's value and what it noted: {(unit kind, name): count}."""

    value: object
    counts: dict


def value_of(noted: Noted):
    """The unit's value, for the tasks that consume it."""
    return noted.value


def counts_of(result) -> dict | None:
    """What a finished task noted (None for a plain task's result)."""
    return result.counts if isinstance(result, Noted) else None
