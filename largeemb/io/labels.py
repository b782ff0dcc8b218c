"""Class labels of a set's rows (per-class evaluation): where they come from, their checks, their counts.

A set's labels are one integer per row, given as

- a ``.npy`` file (memory-mapped, never unpickled);
- the name of a 1-D integer array in the set's own zarr group, beside its embeddings;
- one integer (``3``, or ``"3"`` on the command line): every row of the set has that class;
- from Python, a NumPy array or a sequence of integers.

:func:`open_labels` checks everything it can from the header (length, dtype, shape)
before any work; :meth:`Labels.census` then reads them once, block by block, for the
rows of each class and a digest (what a resumed split is checked against).
"""

from __future__ import annotations

import hashlib
import numbers
import os
import re
from dataclasses import dataclass, field

import numpy as np

from largeemb.errors import InputError
from largeemb.io.store import MEMORY, Source, open_node

#: Labels read at a time (they are 1/dim of the data, so this is small).
CENSUS_ROWS = 1 << 20
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Labels:
    """One integer class per row of a set, or one class for all of them (``constant``)."""

    role: str
    rows: int
    #: What the labels were, as metrics.json records it: a file, an array of the store, or a class.
    given: str
    constant: int | None = None
    #: A memory-mapped .npy array, a zarr array or a NumPy array (None for a constant).
    data: object = field(default=None, compare=False, repr=False)

    def read(self, start: int, stop: int) -> np.ndarray:
        """The labels of rows ``start:stop`` as int64."""
        if self.constant is not None:
            return np.full(stop - start, self.constant, dtype=np.int64)
        block = np.asarray(self.data[start:stop]).reshape(-1)
        if block.dtype == np.uint64 and block.size and int(block.max()) > np.iinfo(np.int64).max:
            raise InputError(
                f"{self.role} labels hold a class above {np.iinfo(np.int64).max}", f"in {self.given}",
                "number the classes with int64 values",
            )
        return block.astype(np.int64, copy=False)

    def census(self) -> tuple[dict[int, int], str]:
        """The rows of each class, and a digest of every label (one read of them)."""
        digest = hashlib.sha256(f"{self.rows}:{self.constant}".encode())
        if self.constant is not None:
            return {self.constant: self.rows}, digest.hexdigest()[:16]
        counts: dict[int, int] = {}
        for start in range(0, self.rows, CENSUS_ROWS):
            block = self.read(start, min(self.rows, start + CENSUS_ROWS))
            digest.update(np.ascontiguousarray(block).tobytes())
            for label, n in zip(*np.unique(block, return_counts=True)):
                counts[int(label)] = counts.get(int(label), 0) + int(n)
        return counts, digest.hexdigest()[:16]


def open_labels(given, source: Source, role: str) -> Labels:
    """``given`` (see the module docstring) checked against the set ``source``; one-line errors."""
    option = f"--{role}-labels"
    if isinstance(given, bool) or given is None:
        raise InputError(f"{role} labels must be integers, a .npy file or an array name, got {given!r}",
                         f"in {option}", "pass e.g. labels.npy, the name of an array in the store, or 3")
    if isinstance(given, numbers.Integral):
        return Labels(role, source.rows, str(int(given)), constant=int(given))
    if isinstance(given, (str, os.PathLike)):
        text = str(given)
        if _INTEGER.fullmatch(text.strip()):
            return Labels(role, source.rows, text.strip(), constant=int(text))
        if text.lower().endswith(".npy") or os.path.isfile(text):
            return _checked(_npy(text, role, option), source, role, text)
        return _checked(_store_array(text, source, role, option), source, role, f"{source.location}::{text}")
    if hasattr(given, "shape") and hasattr(given, "dtype"):
        return _checked(given, source, role, f"the {role} labels given")
    try:
        data = np.asarray(given)
    except (TypeError, ValueError):
        data = None
    if data is None or data.dtype == object:
        raise InputError(f"{role} labels of type {type(given).__name__} are not supported",
                         "in the Python API call", "pass a NumPy array of integers, a .npy path, an array name or 3")
    return _checked(data, source, role, f"the {role} labels given")


def _npy(path: str, role: str, option: str):
    if not os.path.isfile(path):
        raise InputError(f"{role} labels file not found", f"at {path} (in {option})", "check the path")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        data = exc
    if not isinstance(data, np.ndarray):  # an .npz archive, or not NumPy at all
        raise InputError(f"{role} labels are not a plain .npy file ({data})", f"at {path} (in {option})",
                         "save them with np.save")
    return data


def _store_array(name: str, source: Source, role: str, option: str):
    """Array ``name`` of the zarr group ``source`` lives in."""
    import zarr

    node = None
    if source.location != MEMORY and not source.from_numpy_file:
        try:
            node = open_node(source.location)
        except (ValueError, OSError):
            pass
    if not isinstance(node, zarr.Group):
        raise InputError(
            f"{role} labels {name!r} are no integer class, no .npy file, and no array of the {role} set "
            "(it is not a zarr group)", f"in {option}",
            "pass a class (e.g. 3), a .npy file of labels, or the name of an integer array in the set's zarr group",
        )
    try:
        found = node[name]
    except (KeyError, ValueError):
        found = None
    if not isinstance(found, zarr.Array):
        raise InputError(
            f"{role} store has no array named {name!r} for its labels", f"at {source.location} (in {option})",
            "name an integer array of that store's group, or pass a .npy file of labels",
        )
    return found


def _checked(data, source: Source, role: str, given: str) -> Labels:
    shape, dtype = tuple(data.shape), np.dtype(data.dtype)
    if len(shape) == 2 and shape[1] == 1:
        shape = shape[:1]
    if len(shape) != 1:
        raise InputError(f"{role} labels must be 1-D (one per row), got shape {tuple(data.shape)}",
                         f"in {given}", "store one integer class per row")
    if dtype.kind not in "iu":
        raise InputError(f"{role} labels must be integers, got dtype {dtype}", f"in {given}",
                         "store the classes as integers (e.g. np.int32)")
    if shape[0] != source.rows:
        raise InputError(f"{shape[0]} {role} labels for {source.rows} {role} rows", f"in {given}",
                         f"give one label per row of {source.name}")
    return Labels(role, source.rows, given, data=data)
