"""Errors a user can act on.

Every problem with the user's input is raised as :class:`InputError`, which
renders as one line ``<what>, <where>, <what to do>``; the CLI prints it as
``error: …`` and exits with status 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input or usage: says what is wrong, where, and what to do."""

    def __init__(self, what: str, where: str, todo: str):
        self.what, self.where, self.todo = what, where, todo
        super().__init__(f"{what}, {where}, {todo}")


class OutputExistsError(InputError):
    """The output directory already holds a result and --force was not given."""
