"""Errors a user can act on.

Every problem with the user's input is raised as :class:`InputError`, which
renders as one line ``<what>, <where>, <what to do>``; the CLI prints it as
``error: …`` and exits with the error's ``exit_code`` (2 for bad input or
usage, 3 when a store could not be read even after retries). Exit status 4
(:data:`GATE_FAILED`) is no error: the run or comparison finished and a gate
failed (a threshold, or a regression beyond Z standard errors).
"""

from __future__ import annotations

#: Exit status when a gate failed: the numbers are there, and they are worse than allowed.
GATE_FAILED = 4


class LargeembWarning(UserWarning):
    """Something odd in the input but not wrong (e.g. zero radii from duplicate rows): the run went on.

    Raised as a Python warning by :func:`largeemb.evaluate` (so notebooks and
    scripts see it), and kept in ``result.warnings`` and ``metrics.json``.
    """


class InputError(ValueError):
    """Bad input or usage: says what is wrong, where, and what to do."""

    exit_code = 2

    def __init__(self, what: str, where: str, todo: str):
        self.what, self.where, self.todo = what, where, todo
        super().__init__(f"{what}, {where}, {todo}")

    def __reduce__(self):
        # Tasks may raise these on a dask.distributed worker: they must pickle.
        return (type(self), (self.what, self.where, self.todo))


class OutputExistsError(InputError):
    """The output directory already holds a result and --force was not given."""


class OutputLockedError(InputError):
    """Another run is writing to the same output directory."""


class StoreReadError(InputError):
    """A store stayed unreadable after bounded retries (network, throttling).

    Not the input's fault, so it has its own exit status: rerunning later may
    succeed, which a scheduler can act on.
    """

    exit_code = 3


class ResumeMismatchError(InputError):
    """Unfinished work does not belong to these inputs: refused, and kept (the old data may come back)."""


class WorkersLostError(StoreReadError):
    """dask workers were lost again and again before any further unit finished: like a store
    that could not be read, not the input's fault (exit 3); the finished units stay for --resume."""
