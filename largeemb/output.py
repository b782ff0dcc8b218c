"""Publishing results: nothing half-written, nothing overwritten unasked.

Files are written into a staging directory inside ``--out`` and moved into
place one by one with ``os.replace`` at the very end, so a reader sees either
the previous file or the new one, never a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from .errors import InputError, OutputExistsError

METRICS_FILE = "metrics.json"


def check_output_dir(out: str, force: bool) -> None:
    """Refuse early (before any expensive work) if ``out`` cannot take a result."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file", "for the output directory", "give a directory path")
    if os.path.exists(os.path.join(out, METRICS_FILE)) and not force:
        raise OutputExistsError(
            "output directory already holds a result", f"in {out}", "choose another --out or pass --force to replace it"
        )
    try:
        os.makedirs(out, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise InputError(f"cannot write the output directory ({exc.strerror})", f"at {out}", "choose a writable --out") from None


class Staging:
    """A staging directory inside ``out``; ``publish()`` moves its files into ``out``."""

    def __init__(self, out: str):
        self.out = out
        os.makedirs(out, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=".staging-", dir=out)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write_json(self, name: str, payload: dict) -> None:
        with open(self.file(name), "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())

    def publish(self, last: str = METRICS_FILE) -> None:
        """Move every staged entry into ``out``; ``last`` (the commit mark) goes last."""
        names = sorted(os.listdir(self.path), key=lambda n: n == last)
        for name in names:
            target = os.path.join(self.out, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(self.path, name), target)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            self.discard()
        return False


def write_result(result_dict: dict, out: str) -> str:
    """Stage and publish ``metrics.json``; returns its path."""
    with Staging(out) as staging:
        staging.write_json(METRICS_FILE, result_dict)
        staging.publish()
    return os.path.join(out, METRICS_FILE)
