"""The lock that gives one run at a time its output directory.

:class:`OutputLock` holds ``LOCK_FILE`` in ``--out`` while a run writes
there (:mod:`largeemb.io.output` takes it for the whole of a publish).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time

from largeemb.errors import OutputLockedError

LOCK_FILE = ".largeemb.lock"


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
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(_me()).encode(), 0)
                os.fsync(fd)
            except OSError:  # a full disk: leave no lock file behind
                os.unlink(self.path)
                os.close(fd)
                raise
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
                try:
                    os.unlink(self.path)
                except FileNotFoundError:  # another run took it away first
                    pass
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
        who = (
            f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
            if holder
            else "another run"
        )
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
