import os
import re

import numpy as np
import pytest
import zarr

#: The closing line of a run that kept checkpoints.
SUMMARY = re.compile(r"(\d+) tasks computed, (\d+) loaded from checkpoints")


def mixture(rows, dim, seed, modes=8, keep=None, shift=0.0, spread=3.0, dtype=np.float32):
    """Gaussian mixture; ``keep`` limits the modes used (mode collapse)."""
    centres = np.random.default_rng(1234 + dim).normal(0, spread, (modes, dim))
    rng = np.random.default_rng(seed)
    which = rng.integers(0, keep or modes, rows)
    return (centres[which] + rng.standard_normal((rows, dim)) + shift).astype(dtype)


def zarr_store(path, data, chunks=None, zarr_format=3, **options) -> str:
    """Write ``data`` as a zarr array at ``path`` (one chunk unless told) and return the path.

    ``options`` go to ``zarr.create_array`` (shards, compressors, …).
    """
    arr = zarr.create_array(
        str(path), shape=data.shape, dtype=data.dtype, chunks=chunks or data.shape, zarr_format=zarr_format, **options
    )
    if data.size:
        arr[:] = data
    return str(path)


def slow_tiles(seconds: float) -> str:
    """Source that slows the self and cross tile tasks down, so that a run can be killed part-way.

    Exec it where the tasks run: in a dask worker, or in a child process before the CLI starts.
    """
    return f"""
import time
import largeemb.engine as engine
for name in ("_offdiag_task", "_cross_task"):
    def slow(*args, _task=getattr(engine, name)):
        time.sleep({seconds})
        return _task(*args)
    setattr(engine, name, slow)
"""


def finished_checkpoints(work) -> int:
    """Finished checkpoint files in a work directory (not the temporary ones being written)."""
    return sum(1 for name in os.listdir(work) if name.endswith(".npz") and ".tmp-" not in name)


@pytest.fixture
def write_zarr(tmp_path):
    """Write an array to a zarr store under tmp_path and return its path."""

    def write(name, data, chunks=None, zarr_format=3):
        return zarr_store(tmp_path / name, data, chunks, zarr_format)

    return write
