"""Thread policy, in one place: parallelism comes from task slots (worker
processes x task threads, by default as many as the cores); inside a task
faiss, BLAS and OpenMP use one thread, so the two never multiply beyond the cores.

- a task: :func:`one_thread` (faiss's and oneDNN's OpenMP, per calling thread);
- a pass's task threads, or a worker process: :func:`pools_at_one_thread`
  (BLAS and OpenMP pools of the process; :mod:`largeemb.run.executor`,
  :mod:`largeemb.run.cluster`);
- the dim × dim eigenproblems between passes: :func:`one_blas_thread`, applied
  by the layers that call those kernels (the kernels themselves take arrays
  and set nothing).

(Measured on 2 cores: giving idle cores to BLAS inside fewer task slots was
slower than one BLAS thread, even for 4096-row tiles, so there is no such mode.)
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

logger = logging.getLogger("largeemb")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def warn_if_oversubscribed(slots: int, where: str) -> None:
    if slots > cores():
        logger.warning("%s has %d task slots for %d cores: tasks will compete for cores", where, slots, cores())


def pools_at_one_thread():
    """Every BLAS and OpenMP pool of this process at one thread, until the returned limiter is
    restored (it is a context manager too): where task threads provide the parallelism."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


@contextmanager
def one_blas_thread():
    """BLAS on one thread inside (a context manager, or a decorator: ``@one_blas_thread()``).

    The dim × dim eigenproblems (FD, FD∞, Vendi, PCA axes, pruning groups) are
    a chain of small level-2 steps that two threads only slow down: at dim 512,
    eigvalsh took 0.49 s on 2 threads and 0.06 s on 1, and the 16 leading axes
    0.55 s and 0.024 s (2-core machine, shared). The limit is the process's:
    around a pool of threads (FD∞'s), it is set once for the whole pool (a limit
    set and restored by each thread left the other's BLAS at 1 or 2 threads by
    turns, and its sums in another order).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


def one_thread() -> None:
    """Keep a task on one core. faiss's OpenMP setting is per calling thread, so each task
    sets it, and that of oneDNN's OpenMP runtime where the bf16 extra is loaded."""
    import faiss

    from largeemb.io import onednn

    faiss.omp_set_num_threads(1)
    onednn.limit_task_threads()


def thread_probe_task() -> dict:
    """What a task sees of threads once it has set them up as the tile tasks do."""
    import faiss
    from threadpoolctl import threadpool_info

    one_thread()
    return {
        "faiss": faiss.omp_get_max_threads(),
        "blas": {info["filepath"]: info["num_threads"] for info in threadpool_info()},
        "pid": os.getpid(),
    }

