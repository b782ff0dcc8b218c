"""One streamed read of a set, its rows written into one zarr array per class.

Per-class evaluation runs the normal engine on each class's own store, so that
every pass over a class reads only that class's rows: the set is read once here,
block by block, and each block's rows go to their class's array, in their order.

Each class's rows are buffered up to one whole chunk of its array and written
then, so every write fills a chunk (no chunk is read back and rewritten); the
chunks shrink as the classes grow many, so the buffers stay within
:data:`BUFFER_BYTES` in all.
"""

from __future__ import annotations

import numpy as np

from largeemb.errors import InputError
from largeemb.io.labels import Labels
from largeemb.io.store import Source

#: The buffered rows of all classes together stay below this (whole chunks of each class's array).
BUFFER_BYTES = 256 * 2**20
#: Rows per chunk of a class's array: at most the convert command's, at least this few (many classes).
MAX_CHUNK_ROWS, MIN_CHUNK_ROWS = 8192, 256
#: Rows of the set read at a time (fewer for wide rows).
READ_BYTES = 64 * 2**20


def array_name(label: int) -> str:
    """The array of class ``label`` in a split store (``class3``, ``class-1``)."""
    return f"class{label}"


def chunk_rows(classes: int, row_bytes: int) -> int:
    """Rows per chunk of each class's array when ``classes`` arrays are written at once."""
    fits = BUFFER_BYTES // max(1, classes * row_bytes)
    return max(MIN_CHUNK_ROWS, min(MAX_CHUNK_ROWS, fits))


def split_by_class(
    source: Source, labels: Labels, counts: dict[int, int], path: str, chunk: int | None = None
) -> dict[int, str]:
    """Write the rows of each class in ``counts`` (its rows in ``source``) to array
    ``array_name(label)`` of a new zarr group at ``path``; other classes' rows are skipped.

    ``chunk`` overrides the rows per chunk (tests: the result must not depend on it).
    Returns each class's array name.
    """
    import zarr

    row_bytes = source.dim * np.dtype(source.dtype).itemsize
    chunk = chunk or chunk_rows(len(counts), row_bytes)
    group = zarr.open_group(path, mode="w")
    writers = {
        label: _ClassWriter(
            group.create_array(array_name(label), shape=(n, source.dim), chunks=(min(chunk, n), source.dim),
                               dtype=source.dtype),
            min(chunk, n),
        )
        for label, n in counts.items()
    }
    step = max(1, min(MAX_CHUNK_ROWS * 8, READ_BYTES // max(1, row_bytes)))
    for start in range(0, source.rows, step):
        stop = min(source.rows, start + step)
        rows, classes = source.read(start, stop), labels.read(start, stop)
        # Stable: within a class, rows keep the set's order.
        order = np.argsort(classes, kind="stable")
        found, first = np.unique(classes[order], return_index=True)
        for label, lo, hi in zip(found.tolist(), first, [*first[1:], len(order)]):
            writer = writers.get(label)
            if writer is not None:
                writer.add(rows[order[lo:hi]])
    for writer in writers.values():
        writer.finish()
    return {label: array_name(label) for label in counts}


class _ClassWriter:
    """Rows of one class, buffered and written a whole chunk at a time."""

    def __init__(self, array, chunk: int):
        self.array, self.chunk = array, chunk
        self.pending: list[np.ndarray] = []
        self.buffered = 0
        self.written = 0

    def add(self, rows: np.ndarray) -> None:
        self.pending.append(rows)
        self.buffered += len(rows)
        if self.buffered >= self.chunk:
            rows = np.concatenate(self.pending)
            whole = len(rows) - len(rows) % self.chunk
            self.array[self.written : self.written + whole] = rows[:whole]
            self.written += whole
            self.pending, self.buffered = [rows[whole:]], len(rows) - whole

    def finish(self) -> None:
        if self.buffered:
            self.array[self.written : self.written + self.buffered] = np.concatenate(self.pending)
            self.written += self.buffered
        if self.written != self.array.shape[0]:  # the labels changed between their census and now
            raise InputError(
                f"the labels changed while being read ({self.written} rows of a class counted as "
                f"{self.array.shape[0]})", f"for {self.array.path}",
                "leave the labels as they are while a run reads them",
            )
