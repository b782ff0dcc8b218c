"""Publishing results: nothing half-written, nothing overwritten unasked.

A run claims ``--out`` with a lock file, writes every file into a staging
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
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager

from largeemb.errors import InputError, OutputExistsError, OutputLockedError

METRICS_FILE = "metrics.json"
LOCK_FILE = ".largeemb.lock"
STAGING_PREFIX = ".staging-"


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
            "choose another --out or pass --force to replace it",
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
            f"cannot write the output directory ({exc.strerror or type(exc).__name__})", f"at {out}", "choose a writable --out"
        ) from None
    return created


@contextmanager
def result_dir(out: str, force: bool, result_files):
    """Claim ``out`` for one run and yield a :class:`Staging` to write into.

    ``result_files`` names every file a result may consist of
    (``metrics.json`` is its commit mark).
    Refuses before any work if ``out`` is unwritable, holds a result (without
    ``force``) or is claimed by another live run. The staged files are
    published only if the ``with`` body finishes without an exception;
    otherwise they are discarded, the previous result stays as it was, and an
    ``out`` directory this call created is removed again.
    """
    _refuse_unwritable(out)
    _refuse_existing(out, force, result_files)
    created = _probe_writable(out)
    try:
        with OutputLock(out):
            _refuse_existing(out, force, result_files)  # a run that held the lock may have just published
            _remove_stale_staging(out)
            with Staging(out, result_files) as staging:
                yield staging
                staging.publish(force)
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
        """Move every staged entry into ``out``, ``last`` (the commit mark) at the end.

        With ``force`` the previous commit mark goes first and, for a run's
        result, the previous run's other result files next, so that at no
        instant does a ``metrics.json`` sit beside files of another run.
        """
        staged = sorted(os.listdir(self.path), key=lambda n: n == last)
        _refuse_existing(self.out, force, names=set(staged) | {last})
        if force:
            _remove(os.path.join(self.out, last))
            _fsync_dir(self.out)
            if last == METRICS_FILE:
                for name in self.result_files:
                    if name not in staged:
                        _remove(os.path.join(self.out, name))
        for name in staged:
            target = os.path.join(self.out, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(self.path, name), target)
        _fsync_dir(self.out)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.discard()
        return False


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


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


# -- the lock ------------------------------------------------------------------


class OutputLock:
    """One run at a time per output directory.

    The lock file holds the owner's host, pid and start time for messages.
    Liveness comes from ``flock`` on that file: the kernel drops it when the
    owner dies however it dies, so a lock left by a killed run is stale at
    once and needs no clean-up by hand. Where the file system has no
    ``flock``, the recorded pid is checked instead (same host only).
    """

    def __init__(self, out: str):
        self.path = os.path.join(out, LOCK_FILE)
        self.fd: int | None = None
        #: Holder recorded in a stale lock that this run took over (None if none).
        self.stale_holder: dict | None = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *_):
        self.release()
        return False

    def acquire(self) -> None:
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise self._locked(holder) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                self._acquire_by_pid()
                return
            # The previous owner may have unlinked the file between our open and
            # flock; then the lock we hold is on a file nobody else will see.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self.stale_holder = _read_holder(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_me()).encode(), 0)
            os.fsync(fd)
            self.fd = fd
            return

    def _acquire_by_pid(self) -> None:
        """Fallback without flock: exclusive create; a dead same-host pid makes a lock stale."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_holder_path(self.path)
                if holder is None or _maybe_alive(holder):
                    raise self._locked(holder) from None
                self.stale_holder = holder
                _remove(self.path)
                continue
            os.write(fd, json.dumps(_me()).encode())
            os.fsync(fd)
            self.fd = fd
            return
        raise self._locked(_read_holder_path(self.path))

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding the flock, so no one is between
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def _locked(self, holder: dict | None) -> OutputLockedError:
        who = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}" if holder else "another run"
        return OutputLockedError(
            f"another largeemb run ({who}) is writing this output directory",
            f"at {os.path.dirname(self.path)}",
            f"wait for it to finish or choose another --out (if that run is gone, delete {self.path})",
        )


def _me() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "proc_start": _proc_start(os.getpid()),
    }


def _read_holder(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 4096, 0)
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def _read_holder_path(path: str) -> dict | None:
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read(4096))
    except (OSError, ValueError):
        return None


def _proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (tells a reused pid apart), Linux only."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _maybe_alive(holder: dict) -> bool:
    """False only when the holder is surely dead: same host, and its pid is gone or reused."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    recorded, current = holder.get("proc_start"), _proc_start(pid)
    return not (recorded and current and recorded != current)
