"""Input stores: find the 2-D array a user meant and read row blocks from it.

A :class:`Source` describes an array by location, never by its data, so it can
travel in a task graph to any worker, which opens the store itself. How reads
fail and are retried is :mod:`largeemb.io.faults`; the check for chunks a
store lacks, :mod:`largeemb.io.chunks`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from largeemb.errors import InputError
from largeemb.io import faults
from largeemb.io.chunks import check_chunks
from largeemb.io.faults import first_unreadable_chunk, not_a_store_reason, read_failed, retrying, rows_text, short_error
from largeemb.io.objectstore import require_backend

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
    #: Only for arrays handed in from memory (NumPy, dask or an open zarr array).
    data: object = field(default=None, compare=False, repr=False)
    #: New for every opening: cached handles and slabs of an earlier run are
    #: never served to a later one (the store may have changed in between).
    token: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False, repr=False)
    #: "real" or "fake", for error messages.
    role: str = field(default="", compare=False)

    def __reduce__(self):
        # A memory-mapped .npy/.npz travels by path: a worker process on this host maps the file again
        # (the array itself would be copied into every message).
        if self.from_numpy_file:
            return _numpy_file_source, (self.location, self.array_path, self.rows, self.dim, self.dtype, self.token,
                                        self.role)
        return super().__reduce__()

    @property
    def from_numpy_file(self) -> bool:
        """A local .npy/.npz file, memory-mapped: readable by processes on this host only."""
        return self.data is not None and self.location != MEMORY

    @property
    def name(self) -> str:
        if self.location == MEMORY:
            return MEMORY
        return f"{self.location}::{self.array_path}" if self.array_path else self.location

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored (any dtype), as a NumPy array."""
        if self._in_memory:
            block = self.data[start:stop]
            return np.asarray(block.compute() if hasattr(block, "compute") else block)
        slab_rows = self._slab_rows()
        if not slab_rows:
            return self._fetch(lambda arr: arr[start:stop], np.arange(start, stop), f"rows {start}:{stop}")
        first, last = start // slab_rows, (stop - 1) // slab_rows
        parts = [self._slab(i, slab_rows) for i in range(first, last + 1)]
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return rows[start - first * slab_rows : stop - first * slab_rows]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (sorted, unique) as stored."""
        if self._in_memory:
            block = self.data[rows]
            return np.asarray(block.compute() if hasattr(block, "compute") else block)
        slab_rows = self._slab_rows()
        if not slab_rows:
            return self._fetch(lambda arr: arr.get_orthogonal_selection((rows, slice(None))), rows, rows_text(rows))
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        slab_of = rows // slab_rows
        for i in np.unique(slab_of):
            where = np.flatnonzero(slab_of == i)
            out[where] = self._slab(int(i), slab_rows)[rows[where] - i * slab_rows]
        return out

    def _slab_rows(self) -> int:
        if self.data is not None:
            return 0
        return retrying(
            lambda: _slab_rows(self.location, self.array_path, self.token),
            lambda exc: InputError(
                f"cannot open the store again ({short_error(exc)})",
                f"in {self.role} store {self.name}".replace("  ", " "), "check that it is still there",
            ),
            lambda exc, attempts: read_failed(
                f"{self.role} store {self.name}".lstrip(), "the store metadata", exc, attempts
            ),
        )

    def _slab(self, index: int, slab_rows: int) -> np.ndarray:
        """One cached, chunk-aligned run of rows (read with retries on a miss)."""
        key = (self.location, self.array_path, self.token, index)
        slab = _SLABS.get(key)
        if slab is None:
            lo, hi = index * slab_rows, min(self.rows, (index + 1) * slab_rows)
            slab = self._fetch(lambda arr: arr[lo:hi], np.arange(lo, hi), f"rows {lo}:{hi}")
            _SLABS.put(key, slab)
        return slab

    @property
    def _in_memory(self) -> bool:
        return self.data is not None and not hasattr(self.data, "store_path")

    def _array(self):
        return self.data if self.data is not None else open_array(self.location, self.array_path, self.token)

    def _fetch(self, select, rows: np.ndarray, rows_text: str) -> np.ndarray:
        """``select(array)``, retrying transient errors; any other failure means a corrupt store."""
        return retrying(
            lambda: np.asarray(select(self._array())),
            lambda exc: _corrupt_rows_error(self, rows, exc),
            lambda exc, attempts: read_failed(f"{self.role} store {self.name}".lstrip(), rows_text, exc, attempts),
        )

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
#: It saves decoding a chunk again for every tile that reads it while a set
#: fits (a 8,192 × 512 float32 zstd chunk takes 40-110 ms to decode); once
#: the data are far larger, tiles sweep past any cache, so more would only
#: raise the peak memory.
SLAB_CACHE_BYTES = 128 * 2**20
#: Slabs are whole zarr chunks grown to at least this many rows.
MIN_SLAB_ROWS = 2048
_SLABS = _SlabCache(SLAB_CACHE_BYTES)


@functools.lru_cache(maxsize=64)  # a worker maps each file once, not once per task that receives its Source
def _numpy_file_source(location, array_path, rows, dim, dtype, token, role) -> Source:
    """A numpy-file :class:`Source` in another process: the same file, mapped again."""
    from largeemb.io.npfile import open_rows

    data = open_rows(location, array_path or None, role)
    return Source(location, array_path, rows, dim, dtype, data=data, token=token, role=role)


@functools.lru_cache(maxsize=64)
def _slab_rows(location: str, array_path: str, token: str) -> int:
    """Rows per cached slab: a whole number of (inner) chunks, or 0 to bypass the cache."""
    arr = open_array(location, array_path, token)
    chunk_rows = int(arr.chunks[0])
    slab_rows = chunk_rows * max(1, -(-MIN_SLAB_ROWS // chunk_rows))
    slab_bytes = slab_rows * int(arr.shape[1]) * arr.dtype.itemsize
    return slab_rows if slab_bytes <= SLAB_CACHE_BYTES // 4 else 0


@functools.lru_cache(maxsize=16)
def open_array(location: str, array_path: str, token: str):
    node = open_node(location)
    return node[array_path] if array_path else node


def open_node(location: str):
    """``zarr.open`` read-only, with a timeout on every remote request (a silent server is a transient failure,
    not a hang)."""
    import zarr

    return zarr.open(store=location, mode="r", **_remote_options(location))


def _remote_options(location: str) -> dict:
    timeout = faults.READ_RETRY.timeout()
    scheme = location.split("://", 1)[0].lower() if _is_url(location) else ""
    if scheme in ("http", "https"):
        import aiohttp

        client = {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)}
        return {"storage_options": {"client_kwargs": client}}
    if scheme in ("s3", "s3a"):
        return {"storage_options": {"config_kwargs": {"connect_timeout": timeout, "read_timeout": timeout}}}
    return {}


def _corrupt_rows_error(source: Source, rows: np.ndarray, exc: BaseException) -> InputError:
    """Name the first stored chunk (by its rows) that cannot be read back."""
    bad = first_unreadable_chunk(source._array, rows)
    where_rows = f"rows {bad[0]}:{bad[1]}" if bad else rows_text(rows)
    role = f"{source.role} " if source.role else ""
    return InputError(
        f"stored {where_rows} cannot be read back ({short_error(exc)})",
        f"in {role}store {source.name}",
        "the chunk holding them is truncated or corrupt: re-export or rewrite the store",
    )


def _is_url(location: str) -> bool:
    return "://" in location


def open_source(obj, array_name: str | None = None, role: str = "input") -> Source:
    """Resolve a path, URL, zarr array, NumPy array or dask array to a :class:`Source`."""
    import zarr

    from largeemb.io.npfile import is_numpy_file, open_rows
    from largeemb.io.textfile import is_text_file

    if is_numpy_file(obj):  # memory-mapped, read from this process (like an in-memory array)
        src = open_source(open_rows(obj, array_name, role), role=role)
        return dataclasses.replace(src, location=str(obj), array_path=array_name or "")
    if is_text_file(obj):
        raise InputError(
            f"{role} is a text file, which is not streamed", f"at {obj}",
            f"convert it once with `largeemb convert {obj} {os.path.splitext(os.path.basename(str(obj)))[0]}.zarr` "
            "and pass the .zarr",
        )
    if isinstance(obj, (str, os.PathLike)):
        location = str(obj)
        require_backend(location, f"for the {role} store")
        if not _is_url(location) and not os.path.exists(location):
            raise InputError(
                f"{role} store not found", f"at {location}", "check the path"
            )
        node = retrying(
            lambda: open_node(location),
            # zarr raises several types for "not a store"
            lambda exc: InputError(
                f"{role} is not a readable zarr store ({not_a_store_reason(exc)})",
                f"at {location}",
                "pass a zarr array or group (convert .npy files with `largeemb convert`)",
            ),
            lambda exc, attempts: read_failed(f"{role} store {location}", "the store metadata", exc, attempts),
        )
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
        name = f"{location}::{array_path}" if array_path else location
        src = Source(
            location, array_path, *_shape2(node.shape, name, role), _dtype_name(node.dtype, name, role), role=role
        )
        _checked(src, role)
        check_chunks(node, src)
        return src
    if isinstance(obj, zarr.Array):
        where = "the zarr array given"
        src = Source(
            MEMORY, "", *_shape2(obj.shape, where, role), _dtype_name(obj.dtype, where, role), data=obj, role=role
        )
        _checked(src, role)
        check_chunks(obj, src)
        return src
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        where = "the array given"
        return _checked(
            Source(
                MEMORY, "", *_shape2(obj.shape, where, role), _dtype_name(obj.dtype, where, role), data=obj, role=role
            ),
            role,
        )
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
        except (KeyError, ValueError):  # ValueError: zarr refuses names like '../x' outright
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
        raise InputError(
            f"{role} group holds no 2-D array", f"at {location}", "point at a store holding (rows, dim) embeddings"
        )
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


def _dtype_name(dtype, where: str, role: str) -> str:
    """The stored dtype's name, if largeemb can compute with it (before building a Source)."""
    try:
        dtype = np.dtype(dtype)
        usable = dtype.kind in FLOAT_KINDS + CAST_KINDS and dtype.itemsize <= 8
    except TypeError:  # not a NumPy dtype at all
        usable = False
    if not usable:
        raise InputError(
            f"{role} array has unsupported dtype {dtype}",
            f"at {where}",
            "store float16, float32 or float64 embeddings (integers are cast with a warning)",
        )
    return str(dtype)


def _checked(src: Source, role: str) -> Source:
    if src.rows == 0:
        raise InputError(f"{role} array has no rows", f"at {src.name}", "check that the export wrote any embeddings")
    if src.rows < 2:
        raise InputError(f"{role} array has only 1 row", f"at {src.name}", "k-NN radii need at least k+1 rows")
    if src.dim < 1:
        raise InputError(f"{role} array has dim 0", f"at {src.name}", "store at least one feature per row")
    return src
