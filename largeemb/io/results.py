"""Reading a finished result directory's ``metrics.json``, with one-line errors."""

from __future__ import annotations

import json
import os

from largeemb.errors import InputError
from largeemb.io.objectstore import is_remote, read_json_at
from largeemb.io.output import METRICS_FILE


def read_metrics(directory: str) -> dict:
    """The ``metrics.json`` document of the result in ``directory`` (or an object-store prefix)."""
    if is_remote(directory):
        return _checked(_read_remote(directory), directory)
    if not os.path.isdir(directory):
        raise InputError(
            f"{directory} is not a directory", "for a result", "pass the --out directory of a `largeemb evaluate` run"
        )
    path = os.path.join(directory, METRICS_FILE)
    if not os.path.isfile(path):
        raise InputError(
            "no largeemb result found (no metrics.json)", f"in {directory}",
            "pass the --out directory of a finished `largeemb evaluate` run",
        )
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read metrics.json ({type(exc).__name__}: {exc})", f"in {directory}",
            "rerun `largeemb evaluate` there",
        ) from None
    return _checked(doc, directory)


def _read_remote(prefix: str) -> dict:
    try:
        return read_json_at(prefix, METRICS_FILE)
    except FileNotFoundError:
        raise InputError(
            "no largeemb result found (no metrics.json)", f"at {prefix}",
            "pass the --out prefix of a finished `largeemb evaluate` run",
        ) from None
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read metrics.json ({type(exc).__name__}: {exc})", f"at {prefix}", "check it, and the credentials"
        ) from None


def _checked(doc, directory: str) -> dict:
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(key), dict) for key in ("by_k", "params", "metrics", "real", "fake")
    ):
        raise InputError(
            "metrics.json lacks by_k, params, metrics, real or fake", f"in {directory}",
            "rerun `largeemb evaluate` with this largeemb",
        )
    return doc


def set_source(side: dict) -> str | None:
    """Where a set of a result was read from (``source``; ``location`` where a schema names it so)."""
    return side.get("location") or side.get("source")


def set_name(side: dict) -> str:
    """A short name for a set of a result: its ``name``, else the last part of its source."""
    if side.get("name"):
        return str(side["name"])
    where = str(set_source(side) or "?")
    return os.path.basename(where.rstrip("/").split("::")[0]) or where
