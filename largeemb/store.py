"""Input stores: find the 2-D array a user meant and read row blocks from it.

A :class:`Source` describes an array by location, never by its data, so it can
travel in a task graph to any worker, which opens the store itself.
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

FLOAT_KINDS = "f"
CAST_KINDS = "iu"
MEMORY = "<memory>"
DEFAULT_ARRAY_NAME = "embeddings"


@dataclass(frozen=True)
class Source:
    """A 2-D embedding array: where it lives, its shape and stored dtype."""

    location: str
    array_path: str
    rows: int
    dim: int
    dtype: str
    #: Only for arrays handed in from memory (NumPy or dask); never for stores.
    data: object = field(default=None, compare=False, repr=False)
    #: New for every opening: cached handles and slabs of an earlier run are
    #: never served to a later one (the store may have changed in between).
    token: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False, repr=False)

    @property
    def name(self) -> str:
        if self.location == MEMORY:
            return MEMORY
        return f"{self.location}::{self.array_path}" if self.array_path else self.location

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored (any dtype), as a NumPy array."""
        if self.data is not None:
            block = self.data[start:stop]
            return np.asarray(block.compute() if hasattr(block, "compute") else block)
        slab_rows = _slab_rows(self.location, self.array_path, self.token)
        if not slab_rows:
            return np.asarray(_open_array(self.location, self.array_path, self.token)[start:stop])
        first, last = start // slab_rows, (stop - 1) // slab_rows
        parts = [self._slab(i, slab_rows) for i in range(first, last + 1)]
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return rows[start - first * slab_rows : stop - first * slab_rows]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (sorted, unique) as stored."""
        if self.data is not None:
            block = self.data[rows]
            return np.asarray(block.compute() if hasattr(block, "compute") else block)
        slab_rows = _slab_rows(self.location, self.array_path, self.token)
        if not slab_rows:
            return np.asarray(_open_array(self.location, self.array_path, self.token).get_orthogonal_selection((rows, slice(None))))
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        slab_of = rows // slab_rows
        for i in np.unique(slab_of):
            where = np.flatnonzero(slab_of == i)
            out[where] = self._slab(int(i), slab_rows)[rows[where] - i * slab_rows]
        return out

    def _slab(self, index: int, slab_rows: int) -> np.ndarray:
        key = (self.location, self.array_path, self.token, index)
        slab = _SLABS.get(key)
        if slab is None:
            arr = _open_array(self.location, self.array_path, self.token)
            slab = np.asarray(arr[index * slab_rows : min(self.rows, (index + 1) * slab_rows)])
            _SLABS.put(key, slab)
        return slab

    def describe(self) -> dict:
        return {"source": self.name, "rows": self.rows, "dim": self.dim, "dtype": self.dtype}


class _SlabCache:
    """Decoded chunk-aligned row slabs, least recently used dropped first.

    Tiles read the same blocks many times; without this every read would
    decompress whole zarr chunks again. Bounded in bytes, shared by the
    threads of a process.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._slabs: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            slab = self._slabs.get(key)
            if slab is not None:
                self._slabs.move_to_end(key)
            return slab

    def put(self, key, slab: np.ndarray) -> None:
        with self._lock:
            if key in self._slabs or slab.nbytes > self.max_bytes:
                return
            self._slabs[key] = slab
            self._bytes += slab.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._slabs.popitem(last=False)
                self._bytes -= old.nbytes


#: Memory for decoded slabs per process (the only cache of embedding data).
SLAB_CACHE_BYTES = 256 * 2**20
#: Slabs are whole zarr chunks grown to at least this many rows.
MIN_SLAB_ROWS = 2048
_SLABS = _SlabCache(SLAB_CACHE_BYTES)


@functools.lru_cache(maxsize=64)
def _slab_rows(location: str, array_path: str, token: str) -> int:
    """Rows per cached slab: a whole number of (inner) chunks, or 0 to bypass the cache."""
    arr = _open_array(location, array_path, token)
    chunk_rows = int(arr.chunks[0])
    slab_rows = chunk_rows * max(1, -(-MIN_SLAB_ROWS // chunk_rows))
    slab_bytes = slab_rows * int(arr.shape[1]) * arr.dtype.itemsize
    return slab_rows if slab_bytes <= SLAB_CACHE_BYTES // 8 else 0


@functools.lru_cache(maxsize=16)
def _open_array(location: str, array_path: str, token: str):
    import zarr

    node = zarr.open(store=location, mode="r")
    return node[array_path] if array_path else node


def _is_url(location: str) -> bool:
    return "://" in location


def open_source(obj, array_name: str | None = None, role: str = "input") -> Source:
    """Resolve a path, URL, zarr array, NumPy array or dask array to a :class:`Source`."""
    import zarr

    if isinstance(obj, (str, os.PathLike)):
        location = str(obj)
        if not _is_url(location) and not os.path.exists(location):
            raise InputError(
                f"{role} store not found", f"at {location}", "check the path"
            )
        try:
            node = zarr.open(store=location, mode="r")
        except Exception as exc:  # zarr raises several types for "not a store"
            raise InputError(
                f"{role} is not a readable zarr store ({type(exc).__name__}: {exc})".rstrip(),
                f"at {location}",
                "pass a zarr array or group (convert .npy files with `largeemb convert`)",
            ) from None
        array_path = ""
        if isinstance(node, zarr.Group):
            array_path = _choose_array(node, array_name, location, role)
            node = node[array_path]
        elif array_name:
            raise InputError(
                f"{role} is an array, so the array name {array_name!r} does not apply",
                f"at {location}",
                "drop the --*-array option",
            )
        return _checked(Source(location, array_path, *_shape2(node.shape, location, role), str(node.dtype)), role)
    if isinstance(obj, zarr.Array):
        src = Source(MEMORY, "", *_shape2(obj.shape, "the zarr array given", role), str(obj.dtype), data=obj)
        return _checked(src, role)
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return _checked(Source(MEMORY, "", *_shape2(obj.shape, "the array given", role), str(np.dtype(obj.dtype)), data=obj), role)
    raise InputError(
        f"{role} of type {type(obj).__name__} is not supported",
        "in the Python API call",
        "pass a zarr path or URL, a zarr array, a dask array or a NumPy array",
    )


def _choose_array(group, array_name: str | None, location: str, role: str) -> str:
    import zarr

    if array_name:
        try:
            node = group[array_name]
        except KeyError:
            raise InputError(
                f"{role} group has no array named {array_name!r}",
                f"at {location}",
                f"use one of: {', '.join(sorted(k for k, _ in group.arrays())) or '(no arrays)'}",
            ) from None
        if not isinstance(node, zarr.Array):
            raise InputError(f"{array_name!r} is a group, not an array", f"at {location}", "name an array")
        return array_name
    two_d = sorted(name for name, arr in group.arrays() if len(arr.shape) == 2)
    if len(two_d) == 1:
        return two_d[0]
    if DEFAULT_ARRAY_NAME in two_d:
        return DEFAULT_ARRAY_NAME
    if not two_d:
        raise InputError(f"{role} group holds no 2-D array", f"at {location}", "point at a store holding (rows, dim) embeddings")
    raise InputError(
        f"{role} group holds several 2-D arrays ({', '.join(two_d)})",
        f"at {location}",
        f"choose one with --{role}-array",
    )


def _shape2(shape, where: str, role: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise InputError(
            f"{role} array must be 2-D (rows, dim), got shape {tuple(shape)}",
            f"at {where}",
            "reshape the embeddings to (rows, dim)",
        )
    return int(shape[0]), int(shape[1])


def _checked(src: Source, role: str) -> Source:
    kind = np.dtype(src.dtype).kind
    if kind not in FLOAT_KINDS + CAST_KINDS or np.dtype(src.dtype).itemsize > 8:
        raise InputError(
            f"{role} array has unsupported dtype {src.dtype}",
            f"at {src.name}",
            "store float16, float32 or float64 embeddings",
        )
    if src.rows < 2:
        raise InputError(f"{role} array has {src.rows} rows", f"at {src.name}", "k-NN radii need at least k+1 rows")
    if src.dim < 1:
        raise InputError(f"{role} array has dim 0", f"at {src.name}", "store at least one feature per row")
    return src
