"""The worker processes this job starts stay off its stderr: the job's signals (Ctrl-C,
SIGTERM) are kept from them (this process closes them itself, and each would otherwise
print its own traceback), and a task's error is not logged by the worker as well (it
reaches this process, which says it in its one error line)."""

from __future__ import annotations

from contextlib import contextmanager

from distributed.diagnostics.plugin import WorkerPlugin

#: Signals of the job (Ctrl-C, SIGTERM from SLURM or Kubernetes) that this process handles for the worker
#: processes it starts: it closes them. Ctrl-C signals the whole process group, and each worker
#: would otherwise print its own KeyboardInterrupt traceback (74 lines with two workers).
JOB_SIGNALS = ("SIGINT", "SIGTERM")


@contextmanager
def signals_for_this_process_only():
    """Start what is started inside with the job's signals ignored: spawned processes inherit that (across exec).

    In this process they are blocked meanwhile, not lost: one that arrives
    is delivered to its handler on the way out.
    """
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [getattr(signal, name) for name in JOB_SIGNALS]
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class DeafToJobSignals(WorkerPlugin):
    """The same for a worker process that the nanny restarts later (only on a LocalCluster this job started)."""

    def setup(self, worker):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in JOB_SIGNALS:
                signal.signal(getattr(signal, name), signal.SIG_IGN)


class _NotTaskErrors:
    """A logging filter: drops dask's "Compute Failed" records (the error comes back to the client)."""

    @staticmethod
    def filter(record) -> bool:
        return not str(record.msg).startswith("Compute Failed")


class QuietTaskErrors(WorkerPlugin):
    """On a worker process this job started: a failed task is reported once, by this job, not by the worker too."""

    def setup(self, worker):
        import logging

        logging.getLogger("distributed.worker").addFilter(_NotTaskErrors())
