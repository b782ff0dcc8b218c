"""Thread policy, in one place: parallelism comes from task slots (worker
processes x task threads, by default as many as the cores); inside a task
faiss and BLAS use one thread, so the two never multiply beyond the cores.

(Measured on 2 cores: giving idle cores to BLAS inside fewer task slots was
slower than one BLAS thread, even for 4096-row tiles, so there is no such mode.)
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("largeemb")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def warn_if_oversubscribed(slots: int, where: str) -> None:
    if slots > cores():
        logger.warning("%s has %d task slots for %d cores: tasks will compete for cores", where, slots, cores())


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

