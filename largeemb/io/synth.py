"""Synthetic embeddings for demos, tests and benchmarks, and .npy conversion.

Synthetic sets are Gaussian mixtures whose mode centres depend only on
(dim, modes), so a "real" and a "fake" store written with different seeds
share their modes; the fake can be shifted and can drop modes (mode collapse).
Rows are generated block by block from (seed, block index), so any size is
written in bounded memory and reproducibly.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

from largeemb.errors import InputError

DEFAULT_CHUNK_ROWS = 8192
#: Per-coordinate spread of mode centres, relative to the unit noise within a mode.
MODE_SPREAD = 1.5


def mode_centres(dim: int, modes: int) -> np.ndarray:
    return np.random.default_rng([dim, modes, 2020]).normal(0.0, MODE_SPREAD, (modes, dim))


def synth_rows(
    start: int, stop: int, dim: int, seed: int, shift: float, modes: int, drop_modes: int, block: int
) -> np.ndarray:
    """Rows start:stop of a synthetic set (generated per fixed-size block)."""
    centres = mode_centres(dim, modes)[: modes - drop_modes]
    out = []
    for b in range(start // block, (stop - 1) // block + 1):
        rng = np.random.default_rng([seed, b])
        n = block
        which = rng.integers(0, len(centres), n)
        rows = centres[which] + rng.standard_normal((n, dim)) + shift
        lo, hi = max(start, b * block) - b * block, min(stop, (b + 1) * block) - b * block
        out.append(rows[lo:hi])
    return np.concatenate(out).astype(np.float32)


def _refuse_existing(dst: str, force: bool, remove: bool = True):
    """Refuse an existing ``dst`` without ``force``; with it, remove ``dst`` (unless ``remove`` is False)."""
    if os.path.exists(dst):
        if not force:
            raise InputError(f"{dst} already exists", "as the output store", "choose another path or pass --force")
        if remove:
            shutil.rmtree(dst) if os.path.isdir(dst) else os.remove(dst)


def write_synth(
    dst: str,
    rows: int,
    dim: int,
    *,
    seed: int = 0,
    shift: float = 0.0,
    modes: int = 10,
    drop_modes: int = 0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    force: bool = False,
) -> str:
    """Write a reproducible synthetic (rows, dim) float32 zarr array to ``dst``."""
    import zarr

    if rows < 1 or dim < 1:
        raise InputError(
            f"rows and dim must be >= 1, got {rows} x {dim}", "for synth", "pass positive --rows and --dim"
        )
    if not 0 <= drop_modes < modes:
        raise InputError(f"drop_modes must be in [0, {modes}), got {drop_modes}", "for synth", "keep at least one mode")
    _refuse_existing(dst, force)
    arr = zarr.create_array(dst, shape=(rows, dim), chunks=(min(chunk_rows, rows), dim), dtype="float32")
    for start in range(0, rows, chunk_rows):
        stop = min(rows, start + chunk_rows)
        arr[start:stop] = synth_rows(start, stop, dim, seed, shift, modes, drop_modes, DEFAULT_CHUNK_ROWS)
    return dst


def convert_npy(
    src: str, dst: str, *, key: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS, force: bool = False
) -> str:
    """Copy a .npy file (or an .npz member, ``key``), a Parquet table (its vector column, ``key``) or a text
    file of numbers (CSV) into a chunked zarr array without loading it whole."""
    import zarr

    from largeemb.io.npfile import is_numpy_file, row_chunks
    from largeemb.io.parquet import is_parquet_file, parquet_chunks
    from largeemb.io.textfile import is_text_file, text_chunks

    if os.path.isdir(src):
        raise InputError(
            "convert reads a file, got a directory", f"at {src}",
            "pass the file itself (a zarr store needs no conversion)",
        )
    if is_text_file(src):
        shape, dtype, chunks = text_chunks(src, chunk_rows)
    elif is_parquet_file(str(src)):
        shape, dtype, chunks = parquet_chunks(str(src), key, chunk_rows)
    elif is_numpy_file(src):
        shape, dtype, chunks = row_chunks(src, key, chunk_rows)
    else:
        raise InputError(
            "convert reads .npy, .npz, Parquet and text files of numbers (.csv, .tsv, .txt)", f"at {src}",
            "pass a file saved with np.save or np.savez, a Parquet table or a CSV of numbers",
        )
    if len(shape) != 2:
        raise InputError(f"array must be 2-D (rows, dim), got shape {shape}", f"at {src}", "reshape before saving")

    def write(path: str) -> None:
        arr = zarr.create_array(path, shape=shape, chunks=(min(chunk_rows, max(1, shape[0])), shape[1]), dtype=dtype)
        start = 0
        for rows in chunks:
            if rows.shape[1:] != tuple(shape[1:]):  # zarr would keep the first columns of wider rows, silently
                raise InputError(
                    f"rows {start + 1}-{start + len(rows)} have {rows.shape[1]} values each, the first ones {shape[1]}",
                    f"in {src}", "write the same number of values on every row",
                )
            arr[start : start + len(rows)] = rows
            start += len(rows)

    return _written_whole(dst, force, write)


def _written_whole(dst: str, force: bool, write) -> str:
    """``write(path)`` into a hidden sibling of ``dst``, moved to ``dst`` once complete: a reader's error midway
    (a bad line deep in a CSV) leaves no half-written store, and the store that --force was to replace stays."""
    if "://" in str(dst):  # a URL: written in place, as zarr opens it
        _refuse_existing(dst, force)
        write(dst)
        return dst
    _refuse_existing(dst, force, remove=False)  # removed only once the new store is whole
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".largeemb-convert-", dir=parent)
    try:
        write(os.path.join(staging, "store"))
        _refuse_existing(dst, force)
        os.replace(os.path.join(staging, "store"), dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dst
