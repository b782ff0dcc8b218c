"""The worker processes this job starts stay off its stderr: the job's signals (Ctrl-C,
SIGTERM) are kept from them (this process closes them itself, and each would otherwise
print its own traceback), and a task's error is not logged by the worker as well (it
reaches this process, which says it in its one error line)."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from distributed.diagnostics.plugin import WorkerPlugin

#: Signals of the job (Ctrl-C, SIGTERM from SLURM or Kubernetes) that this process handles for the worker
#: processes it starts: it closes them. Ctrl-C signals the whole process group, and each worker
#: would otherwise print its own KeyboardInterrupt traceback (74 lines with two workers).
JOB_SIGNALS = ("SIGINT", "SIGTERM")


@contextmanager
def signals_for_this_process_only():
    """Start what is started inside deaf to the job's signals; in this process they are held meanwhile, not lost.

    They are blocked in this thread: the threads started inside (the cluster's event loop, and the threads it
    starts worker processes from, restarts included) inherit that mask, and so do those processes, across exec.
    multiprocessing's resource tracker is started first: starting it unblocks them in the thread that does.
    Never ``SIG_IGN`` here: that is for the whole process, and a Ctrl-C that the kernel gave meanwhile to
    another thread (any thread not blocking it) was dropped; the run went on to the end and exited 0. A signal
    that reaches Python meanwhile is only noted, so that what starts is not cut half-way, and raised on the way out.
    """
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    signals = [getattr(signal, name) for name in JOB_SIGNALS]
    held: list[int] = []
    try:
        with ExitStack() as put_back:  # every one put back, even if a handler raises as soon as it is back
            for sig in signals:
                put_back.callback(signal.signal, sig, signal.signal(sig, lambda signum, _: held.append(signum)))
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
            put_back.callback(signal.pthread_sigmask, signal.SIG_SETMASK, blocked)  # first: one pending is held too
            yield
    finally:
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)


class DeafToJobSignals(WorkerPlugin):
    """The same, ignored by each worker process itself, also one the nanny restarts later (only on a LocalCluster
    this job started): born with them blocked, it stays deaf should anything unblock them there."""

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
