"""Progress of long passes: tasks done, rate, ETA.

On a terminal a rich progress bar is drawn on stderr; otherwise (a batch job's
log) plain lines go to the ``largeemb`` logger: one when a pass starts (with
what it takes from checkpoints), one every ``LOG_EVERY_S`` seconds while it
runs, and one when it ends, so a log shows where the time went. Passes count
tasks; the plot stage counts t-SNE iterations and figures (``unit``). A long
step without tasks (an O(dim³) eigenproblem) is announced instead, with an
estimate of its time (:func:`cubic_seconds`).
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections import Counter

import numpy as np

from largeemb.run.threads import one_blas_thread

logger = logging.getLogger("largeemb")

#: Seconds between progress lines in a log (not a terminal).
LOG_EVERY_S = 30.0
#: A single long step without tasks to count (an O(dim³) eigenproblem) estimated
#: to take at least this many seconds is announced, with its estimate, before it starts.
LONG_STEP_S = 30.0
#: The dim of the eigenproblem timed once per process to estimate the O(dim³) steps.
REFERENCE_DIM = 384


def announce_long_step(what: str, seconds: float) -> None:
    """One ``warning:`` line before a step that will take long, so that no one waits in silence."""
    if seconds >= LONG_STEP_S:
        logger.warning("warning: %s: about %s (estimated), starting now", what, _duration(seconds))


@functools.lru_cache(maxsize=1)
def _reference_seconds() -> float:
    """Seconds of one eigvalsh at REFERENCE_DIM on one BLAS thread here (best of 3)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((REFERENCE_DIM, REFERENCE_DIM))
    matrix = a @ a.T

    @one_blas_thread()
    def timed() -> float:
        start = time.perf_counter()
        np.linalg.eigvalsh(matrix)
        return time.perf_counter() - start

    return min(timed() for _ in range(3))


def cubic_seconds(dim: int, solves: float = 1.0) -> float:
    """Estimated seconds of ``solves`` dim × dim symmetric eigenproblems on this machine.

    From one measured at REFERENCE_DIM, scaled by dim³. At a large dim the
    matrix leaves the caches and the real time is longer (dim 10,000: 1.4×), so
    the estimate is a lower bound.
    """
    return solves * _reference_seconds() * (dim / REFERENCE_DIM) ** 3


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Counts finished tasks of one pass.

    ``terminal`` decides between a bar and log lines (default: whether stderr
    is a TTY). ``noted``: what the finished units noted about themselves
    (:mod:`largeemb.run.tally`), summed (:meth:`note`, from any thread).
    """

    def __init__(
        self, label: str, total: int, loaded: int = 0, terminal: bool | None = None, stream=None, unit: str = "tasks"
    ):
        self.label, self.total, self.done, self.unit = label, total, 0, unit
        self.noted: Counter = Counter()
        self._noting = threading.Lock()
        self.started = self.last_line = time.monotonic()
        self._bar = None
        if total == 0:
            return
        stream = stream or sys.stderr
        if terminal is None:
            terminal = hasattr(stream, "isatty") and stream.isatty()
        if terminal:
            self._bar = _rich_bar(label, total, stream, unit)
        else:
            taken = f" ({loaded} more taken from checkpoints)" if loaded else ""
            logger.info("%s: started, %d %s to compute%s", label, total, unit, taken)

    def note(self, counts: dict) -> None:
        """Add what a finished unit reported."""
        with self._noting:
            self.noted.update(counts)

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar[0].advance(self._bar[1], count)
        elif time.monotonic() - self.last_line >= LOG_EVERY_S and self.done < self.total:
            self.last_line = time.monotonic()
            logger.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        share = 100 * self.done / self.total if self.total else 100
        return f"{self.label}: {self.done}/{self.total} {self.unit} ({share:.0f}%), {rate:.1f} {self.unit}/s, ETA {eta}"

    def close(self, failed: bool = False) -> None:
        if self.total == 0:
            return
        if self._bar is not None:
            self._bar[0].stop()
            self._bar = None
            return
        elapsed = time.monotonic() - self.started
        if failed:
            logger.info("%s: stopped after %d/%d %s", self.label, self.done, self.total, self.unit)
        else:
            rate = self.done / max(elapsed, 1e-9)
            logger.info(
                "%s: %d/%d %s in %.1f s (%.1f %s/s)", self.label, self.done, self.total, self.unit, elapsed, rate,
                self.unit,
            )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close(failed=exc_type is not None)
        return False


def _rich_bar(label: str, total: int, stream, unit: str):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:.1f} {unit}/s" if task.speed else "")

    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(file=stream, force_terminal=True),
    )
    bar.start()
    return bar, bar.add_task(label, total=total)
