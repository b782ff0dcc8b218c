"""The command line's process plumbing: every failure becomes one ``error:`` line
and its exit status, SIGTERM unwinds like Ctrl-C, and log lines go to stderr.

:mod:`largeemb.cli` runs each command's action through :func:`run_action`.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

import typer

from largeemb.errors import InputError

#: The exit status of a command whose reader closed its output pipe (128 + SIGPIPE, as ``ls | head`` gives).
CLOSED_PIPE = 141


def closed_pipe():
    """The reader of stdout went away (``largeemb worst DIR | head``): stop quietly, like other tools."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        os.close(devnull)
    except (OSError, ValueError):
        pass
    raise typer.Exit(CLOSED_PIPE)


def run_action(debug: bool, action):
    """Run ``action``; any failure becomes one ``error:`` line and its exit status.

    2: bad input or usage (also a full disk or a permission problem while
    writing); 3: a store that could not be read; 130 on Ctrl-C, 143 on SIGTERM
    (what SLURM and Kubernetes send first), both unwound like an error, so the
    lock and staging go and the previous result stays.
    """
    with interrupts_unwind():
        try:
            return action()
        except InputError as exc:
            if debug:
                raise
            fail(f"error: {exc}", exc.exit_code)
        except BrokenPipeError:
            closed_pipe()
        except OSError as exc:
            if debug:
                raise
            from largeemb.io.output import write_failure

            fail(f"error: {write_failure(exc)}", 2)
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            fail(
                f"error: {'terminated (SIGTERM)' if terminated else 'interrupted'}, nothing was published",
                143 if terminated else 130,
            )


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound exactly like Ctrl-C."""


@contextmanager
def interrupts_unwind():
    """Inside, Ctrl-C raises KeyboardInterrupt and SIGTERM :class:`Terminated` (main thread only), even where
    Python drops what a handler raises.

    Python runs a signal handler wherever the main thread is, also inside an object's ``__del__`` or a gc
    callback (dask's scheduler adds one to this process), where what it raises is only printed ("Exception
    ignored in ...") and dropped: the run went on to the end and exited 0. Such an interrupt reaches the
    unraisable hook instead, unprinted, and a helper thread signals the main thread again: it is raised at the
    next line of ordinary code (a handler that finds itself inside the hook, where it would be dropped too, asks again).
    """
    import queue
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    again: queue.SimpleQueue = queue.SimpleQueue()  # interrupts to raise again; None: stop
    over = threading.Event()  # the command has returned: one still on its way came too late, as after the end

    def interrupt(signum, frame):
        if _called_from(frame, dropped.__code__):
            again.put(signum)
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def dropped(unraisable):
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            again.put(signal.SIGTERM if issubclass(unraisable.exc_type, Terminated) else signal.SIGINT)
        else:
            hook(unraisable)

    def raise_again():  # a signal, not interrupt_main(): it also ends a wait the main thread is blocked in
        for signum in iter(again.get, None):
            if not over.is_set():
                signal.pthread_kill(threading.main_thread().ident, signum)

    handlers = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    hook, sys.unraisablehook = sys.unraisablehook, dropped
    helper = threading.Thread(target=raise_again, name="largeemb-interrupts", daemon=True)
    helper.start()
    try:
        yield
    finally:
        over.set()
        again.put(None)
        sys.unraisablehook = hook
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def _called_from(frame, code) -> bool:
    while frame is not None and frame.f_code is not code:
        frame = frame.f_back
    return frame is not None


def fail(line: str, code: int):
    """Print the one error line, then keep anything else (destructors of clients and
    sessions, dying worker processes) off the terminal: the line is the whole story."""
    typer.echo(line, err=True)
    if sys.stderr is sys.__stderr__:  # not under a test runner that captures stderr
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    raise typer.Exit(code)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


class _LogFormatter(logging.Formatter):
    """``largeemb: ...`` on a terminal; with a timestamp in batch logs (stderr not a terminal)."""

    def format(self, record):
        line = f"largeemb: {record.getMessage()}"
        if sys.stderr.isatty():
            return line
        return f"{self.formatTime(record, '%Y-%m-%d %H:%M:%S')} {line}"


def stop_logging_to_stderr() -> None:
    """Undo :func:`log_to_stderr`."""
    logger = logging.getLogger("largeemb")
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)


def log_to_stderr() -> None:
    """Progress and run notes go to stderr as ``largeemb: ...`` lines."""
    logger = logging.getLogger("largeemb")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_LogFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
