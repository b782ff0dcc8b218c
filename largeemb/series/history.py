"""The history file: one JSON line per evaluated fake set, appended by many runs.

A line keeps what a later comparison needs, under the names ``metrics.json``
uses (``run``, ``metrics``, ``by_k``, both sets of standard errors, ``real``
and ``fake`` with fingerprints and sources, ``params``), plus the result
directory and the largeemb version. Runs sharing one file (nightly jobs,
checkpoints evaluated in parallel) append under ``flock`` on the file itself,
waiting their turn. A run killed mid-write leaves a torn last line: readers
skip it with a warning, and the next append starts on a line of its own.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
import warnings

from largeemb.errors import InputError
from largeemb.io.output import METRICS_FILE

logger = logging.getLogger("largeemb")

HISTORY_VERSION = 1
#: How long an append waits for the lock before giving up (other appends take milliseconds).
LOCK_WAIT_S = 60.0
#: Fields of a set kept in a line (those present in metrics.json).
SET_FIELDS = ("name", "location", "source", "rows", "dim", "dtype", "fingerprint", "reference")
#: Fields a line must hold to be read back.
REQUIRED = ("by_k", "params", "real", "fake", "metrics")


class HistoryWarning(UserWarning):
    """A history line that could not be read (skipped)."""


def history_line(metrics_doc: dict, result_dir: str) -> dict:
    """The history line of one result: its ``metrics.json`` document and directory."""
    run = dict(metrics_doc.get("run") or {})
    if not run.get("finished_utc"):  # a result written before "run" existed: when it was published
        try:
            stamp = os.path.getmtime(os.path.join(result_dir, METRICS_FILE))
        except OSError:
            stamp = time.time()
        run["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
    return {
        "history_version": HISTORY_VERSION,
        "run": run,
        "result_dir": result_dir if "://" in str(result_dir) else os.path.abspath(result_dir),  # a URL as it is
        "metrics": metrics_doc["metrics"],
        "by_k": metrics_doc["by_k"],
        "standard_errors": metrics_doc.get("standard_errors", {}),
        "standard_errors_given_real": metrics_doc.get("standard_errors_given_real", {}),
        "real": {key: metrics_doc["real"][key] for key in SET_FIELDS if key in metrics_doc["real"]},
        "fake": {key: metrics_doc["fake"][key] for key in SET_FIELDS if key in metrics_doc["fake"]},
        "params": metrics_doc["params"],
        "version": metrics_doc.get("versions", {}).get("largeemb"),
    }


def append_history(path: str, line: dict, wait_s: float = LOCK_WAIT_S) -> None:
    """Append ``line`` to the history file at ``path`` (created with its folder if absent).

    Holds ``flock`` on the file while it looks at the last byte and writes, so
    concurrent appends never interleave. A last line without its newline (a
    writer killed mid-line) gets one first, so this line stays whole.
    """
    if os.path.isdir(path):
        raise InputError(
            f"the history file {path} is a directory", "for --history", "give a file path, e.g. runs/history.jsonl"
        )
    payload = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _lock(fd, path, wait_s)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def _lock(fd: int, path: str, wait_s: float, exclusive: bool = True) -> None:
    import fcntl

    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise InputError(
                    f"the history file stayed locked by another run for {wait_s:.0f} s", f"at {path}",
                    "check for a hung largeemb process holding it, then rerun",
                ) from None
            time.sleep(0.02)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            # No flock here: O_APPEND still puts each write at the end; only a torn line can slip in.
            logger.warning(f"{path}: file locks are not supported there; appending without one")
            return


def read_history(path: str) -> list[dict]:
    """Every whole line of the history file, in file order; unreadable lines are skipped with a warning."""
    try:
        with open(path, "rb") as fh:
            _lock(fh.fileno(), path, LOCK_WAIT_S, exclusive=False)  # no live append is half-way through
            raw = fh.read()
    except FileNotFoundError:
        raise InputError(
            "no history file", f"at {path}", "pass the file that `largeemb evaluate --history` appends to"
        ) from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory", "for the history file", "pass the history file itself") from None
    lines = []
    pieces = raw.split(b"\n")
    for number, text in enumerate(pieces, 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            # Appends hold the lock, so a line is torn only where a writer died inside it.
            why = (
                "torn (a run killed while writing it?)"
                if number == len(pieces)
                else "not valid JSON (a torn line of a killed run?)"
            )
            warnings.warn(f"{path} line {number} is {why}; skipped", HistoryWarning, stacklevel=2)
            continue
        missing = [key for key in REQUIRED if not isinstance(line, dict) or key not in line]
        if missing:
            warnings.warn(f"{path} line {number} lacks {', '.join(missing)}; skipped", HistoryWarning, stacklevel=2)
            continue
        lines.append(line)
    return lines
