"""Publishing results: nothing half-written, nothing overwritten unasked.

A run claims ``--out`` with a lock file (:mod:`largeemb.io.lock`), writes every file into a staging
directory inside it, and only when the whole job has succeeded moves the files
into place with ``os.replace``, ``metrics.json`` last: ``metrics.json`` is the
commit mark. A reader (or a run killed at any instant) sees the previous
result, the new one, or, for the instant of a ``--force`` replacement, no
``metrics.json`` at all; never a partial file, and never a ``metrics.json``
beside plots of another run.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager

from largeemb.errors import InputError, OutputExistsError
from largeemb.io.lock import LOCK_FILE, OutputLock

logger = logging.getLogger("largeemb")

METRICS_FILE = "metrics.json"
STAGING_PREFIX = ".staging-"
#: Entries of a replaced result, renamed aside until the new one is in place.
OLD_PREFIX = ".old-"


def _refuse_unwritable(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file", "for the output directory", "give a directory path")


def _refuse_existing(out: str, force: bool, names) -> None:
    if force:
        return
    present = [name for name in names if os.path.lexists(os.path.join(out, name))]
    if present:
        raise OutputExistsError(
            f"output directory already holds a result ({', '.join(present)})",
            f"in {out}",
            "choose another --out or pass --force (force=True in Python) to replace it",
        )


def _probe_writable(out: str) -> bool:
    """Create ``out`` if needed and check that files can be made in it; True if it was created."""
    created = not os.path.exists(out)
    try:
        os.makedirs(out, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise InputError(
            f"cannot write the output directory ({exc.strerror or type(exc).__name__})", f"at {out}",
            "choose a writable --out",
        ) from None
    return created


def refuse_overlap(out: str, inputs, replaced) -> None:
    """Inputs are never written: refuse ``out`` equal to or inside an input, and an
    input inside ``out`` under a name in ``replaced`` (what a run writes or deletes there)."""
    out_real = os.path.realpath(out)
    for location in inputs:
        if location is None or "://" in str(location):
            continue
        given = str(location)
        real = os.path.realpath(given)
        if out_real == real or out_real.startswith(real.rstrip(os.sep) + os.sep):
            raise InputError(
                f"--out {out} is inside the input {given}", "for the output directory",
                "choose an --out outside every input",
            )
        if real.startswith(out_real.rstrip(os.sep) + os.sep):
            first = os.path.relpath(real, out_real).split(os.sep)[0]
            ours = first in replaced or first.startswith((STAGING_PREFIX, OLD_PREFIX))
            if ours:
                raise InputError(
                    f"input {given} is where this run writes its {first}",
                    f"inside --out {out}",
                    "move the input out of that place or choose another --out",
                )


@contextmanager
def result_dir(out: str, force: bool, result_files, inputs=(), also_replaced=()):
    """Claim ``out`` for one run and yield a :class:`Staging` to write into.

    ``result_files`` names every file a result may consist of, its commit
    mark (``metrics.json``, ``reference.json``) first.
    Refuses before any work if ``out`` is unwritable, holds a result (without
    ``force``) or is claimed by another live run. The staged files are
    published only if the ``with`` body finishes without an exception;
    otherwise they are discarded, the previous result stays as it was, and an
    ``out`` directory this call created is removed again. ``inputs`` (local
    paths) are never touched: see :func:`refuse_overlap`; ``also_replaced``
    names what else the run writes or deletes in ``out`` (``.work``).
    """
    refuse_overlap(out, inputs, (*result_files, *also_replaced))
    _refuse_unwritable(out)
    _refuse_existing(out, force, result_files)
    created = _probe_writable(out)
    try:
        with OutputLock(out):
            _remove_stale_staging(out)
            recover_interrupted_publish(out, result_files)
            _refuse_existing(out, force, result_files)  # a run that held the lock may have just published
            with Staging(out, result_files) as staging:
                yield staging
                staging.publish(force, last=result_files[0])
    finally:
        if created:
            try:
                os.rmdir(out)  # only succeeds when the failed run left it empty
            except OSError:
                pass


def _remove_stale_staging(out: str) -> None:
    """Staging directories of runs that were killed (we hold the lock, so none is live)."""
    for name in os.listdir(out):
        if name.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)


class Staging:
    """A staging directory inside ``out``; ``publish()`` moves its files into ``out``.

    ``result_files``: the names of a whole result; publishing one removes the
    earlier result's files that it does not replace.
    """

    def __init__(self, out: str, result_files=()):
        self.out = out
        self.result_files = tuple(result_files)
        os.makedirs(out, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write_json(self, name: str, payload: dict) -> None:
        with open(self.file(name), "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())

    def publish(self, force: bool = False, last: str = METRICS_FILE) -> None:
        """Move every staged entry into ``out``, ``last`` (the commit mark) at the end: all or nothing.

        The previous result's entries are first renamed aside inside ``out``
        (``.old-<token>.<name>``; the commit mark first, so at no instant does
        a ``metrics.json`` sit beside files of another run), then the new ones
        are moved in, and only once the new commit mark is in place are the old
        ones deleted. Any error on the way puts every old entry back and raises
        an :class:`InputError`; a kill on the way is undone by the next run
        that claims ``out`` (:func:`recover_interrupted_publish`). An old entry
        that cannot be deleted at the end (another user's files, a busy mount)
        costs nothing: it is left under its ``.old-`` name and reported.
        """
        staged = sorted(os.listdir(self.path), key=lambda n: n == last)
        _refuse_existing(self.out, force, names=set(staged) | {last})
        replaced = [last] + [n for n in dict.fromkeys([*staged, *self.result_files]) if n != last]
        token = uuid.uuid4().hex[:8]
        aside: list[str] = []
        moved_in: list[str] = []
        try:
            for name in replaced:
                if os.path.lexists(os.path.join(self.out, name)):
                    os.replace(os.path.join(self.out, name), os.path.join(self.out, f"{OLD_PREFIX}{token}.{name}"))
                    aside.append(name)
            _fsync_dir(self.out)
            for name in staged:
                os.replace(os.path.join(self.path, name), os.path.join(self.out, name))
                moved_in.append(name)
            _fsync_dir(self.out)
        except BaseException as exc:
            _roll_back(self.out, self.path, token, moved_in, aside)
            if isinstance(exc, OSError):
                raise _publish_failed(self.out, exc) from None
            raise
        _delete_old(self.out, token, aside)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.discard()
        return False


def remove_entry(path: str) -> None:
    """A file, link or directory tree gone (nothing to do if absent)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _roll_back(out: str, staging: str, token: str, moved_in: list[str], aside: list[str]) -> None:
    """Undo a publish that failed part-way: new entries back into staging, old ones back in place (commit mark last)."""
    for name in reversed(moved_in):
        try:
            os.replace(os.path.join(out, name), os.path.join(staging, name))
        except OSError:
            pass
    for name in reversed(aside):
        try:
            os.replace(os.path.join(out, f"{OLD_PREFIX}{token}.{name}"), os.path.join(out, name))
        except OSError:
            pass
    _fsync_dir(out)


def _delete_old(out: str, token: str, aside: list[str]) -> None:
    """Delete the replaced entries; one that cannot be deleted stays under its ``.old-`` name, with a warning."""
    for name in aside:
        path = os.path.join(out, f"{OLD_PREFIX}{token}.{name}")
        try:
            remove_entry(path)
        except OSError as exc:
            logger.warning("could not delete the replaced %s (%s); it is kept as %s", name, exc.strerror or exc, path)


def _publish_failed(out: str, exc: OSError) -> InputError:
    return InputError(
        f"could not publish the result ({exc.strerror or type(exc).__name__}: {exc.filename or out}); "
        "the previous result was put back unchanged",
        f"in {out}",
        "fix the cause (space, permissions, a busy mount) and rerun",
    )


def write_failure(exc: OSError) -> InputError:
    """A write that failed (full disk, quota, read-only or forbidden place) as one line naming what needed the space."""
    path = str(exc.filename or "")
    parts = path.split(os.sep)
    if LOCK_FILE in parts[-1:]:
        what = "the lock file"
    elif ".work" in parts:
        what = "the checkpoints of finished tasks"
    elif any(part.startswith(STAGING_PREFIX) for part in parts):
        what = "the result being staged"
    else:
        what = "a file"
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return InputError(
        f"could not write {what} ({exc.strerror or type(exc).__name__})",
        f"at {path}" if path else "while writing",
        "free space there (or choose an --out with room) and rerun; a previous result is unchanged"
        if full
        else "check the permissions and mounts there and rerun; a previous result is unchanged",
    )


def recover_interrupted_publish(out: str, result_files) -> None:
    """Finish or undo a publish that was killed part-way (we hold the lock, so none is live).

    If the new commit mark made it in (``metrics.json`` exists), the old
    entries are garbage; otherwise the old result is put back whole and any
    new entry beside it goes.
    """
    old = [name for name in os.listdir(out) if name.startswith(OLD_PREFIX)]
    if not old:
        return
    committed = os.path.lexists(os.path.join(out, result_files[0]))
    originals = {name.split(".", 2)[2] for name in old if name.count(".") >= 2}
    for name in old:
        original = name.split(".", 2)[2] if name.count(".") >= 2 else None
        path = os.path.join(out, name)
        try:
            if committed or original is None:
                remove_entry(path)
            else:
                remove_entry(os.path.join(out, original))
                os.replace(path, os.path.join(out, original))
        except OSError:
            pass
    if not committed:
        for name in result_files:
            if name not in originals and os.path.lexists(os.path.join(out, name)):
                try:
                    remove_entry(os.path.join(out, name))
                except OSError:
                    pass


def _fsync_dir(path: str) -> None:
    """Make renames in ``path`` durable (a crash of the machine, not just the process)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
