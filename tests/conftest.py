import numpy as np
import pytest
import zarr


def mixture(rows, dim, seed, modes=8, keep=None, shift=0.0, spread=3.0, dtype=np.float32):
    """Gaussian mixture; ``keep`` limits the modes used (mode collapse)."""
    centres = np.random.default_rng(1234 + dim).normal(0, spread, (modes, dim))
    rng = np.random.default_rng(seed)
    which = rng.integers(0, keep or modes, rows)
    return (centres[which] + rng.standard_normal((rows, dim)) + shift).astype(dtype)


def zarr_store(path, data, chunks=None, zarr_format=3) -> str:
    """Write ``data`` as a zarr array at ``path`` (one chunk unless told) and return the path."""
    arr = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=chunks or data.shape, zarr_format=zarr_format)
    arr[:] = data
    return str(path)


@pytest.fixture
def write_zarr(tmp_path):
    """Write an array to a zarr store under tmp_path and return its path."""

    def write(name, data, chunks=None, zarr_format=3):
        return zarr_store(tmp_path / name, data, chunks, zarr_format)

    return write
