""".npy and .npz files as inputs: memory-mapped, never unpickled.

A ``.npy`` file is memory-mapped with ``np.load(mmap_mode="r")``. An
uncompressed ``.npz`` (``np.savez``) stores each array as a plain ``.npy``
member of a zip file, so that member is memory-mapped at its offset inside the
zip. A compressed one (``np.savez_compressed``) cannot be mapped: ``convert``
streams it into zarr row by row, and ``evaluate`` asks for that first.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from largeemb.errors import InputError

SUFFIXES = (".npy", ".npz")
#: Rows read at a time when streaming a compressed .npz member.
STREAM_ROWS = 8192


def is_numpy_file(obj) -> bool:
    return isinstance(obj, (str, os.PathLike)) and str(obj).lower().endswith(SUFFIXES)


def _not_plain(path: str, exc) -> InputError:
    return InputError(f"not a plain NumPy file ({exc})", f"at {path}", "save embeddings with np.save or np.savez")


def _check_path(path: str, role: str) -> None:
    if os.path.isdir(path):
        raise InputError(f"{role} is a directory, not a .npy/.npz file", f"at {path}", "pass the file itself")
    if not os.path.isfile(path):
        raise InputError(f"{role} file not found", f"at {path}", "check the path")


def _member(archive: zipfile.ZipFile, path: str, key: str | None, role: str) -> zipfile.ZipInfo:
    """The zip member of array ``key`` (default: the only array)."""
    names = [info.filename[: -len(".npy")] for info in archive.infolist() if info.filename.endswith(".npy")]
    if key is None:
        if len(names) != 1:
            raise InputError(
                f"{role} .npz holds {len(names)} arrays ({', '.join(names) or 'none'})",
                f"at {path}",
                f"name one with --{role}-key" if role in ("real", "fake") else "name one with --key",
            )
        key = names[0]
    if key not in names:
        raise InputError(
            f"{role} .npz has no array named {key!r} (it has {', '.join(names)})", f"at {path}", "pick one of those"
        )
    return archive.getinfo(key + ".npy")


def _header(fh):
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    if dtype.hasobject:
        raise ValueError("object arrays would need pickle, which is never used")
    return shape, fortran, dtype


def open_rows(path, key: str | None = None, role: str = "input") -> np.ndarray:
    """The array of a .npy file or uncompressed .npz member, memory-mapped read-only."""
    path = str(path)
    _check_path(path, role)
    try:
        if path.lower().endswith(".npy"):
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with zipfile.ZipFile(path) as archive:
            info = _member(archive, path, key, role)
            if info.compress_type != zipfile.ZIP_STORED:
                raise InputError(
                    f"{role} .npz is compressed (np.savez_compressed), so it cannot be memory-mapped",
                    f"at {path}",
                    f"convert it once with `largeemb convert {path} DST.zarr` and pass DST.zarr",
                )
            with archive.open(info) as fh:
                shape, fortran, dtype = _header(fh)
                header_bytes = fh.tell()
        with open(path, "rb") as raw:  # the member's data start: its local header, then the .npy header
            raw.seek(info.header_offset + 26)
            name_len, extra_len = np.frombuffer(raw.read(4), "<u2")
        offset = info.header_offset + 30 + int(name_len) + int(extra_len) + header_bytes
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except InputError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _not_plain(path, exc) from None


def row_chunks(path, key: str | None = None, chunk_rows: int = STREAM_ROWS):
    """(shape, dtype, iterator of row chunks) of a .npy/.npz array, never holding it whole.

    Compressed .npz members are decompressed as a stream; everything else is memory-mapped.
    """
    path = str(path)
    _check_path(path, "input")
    compressed = False
    if path.lower().endswith(".npz"):
        try:
            with zipfile.ZipFile(path) as archive:
                compressed = _member(archive, path, key, "input").compress_type != zipfile.ZIP_STORED
        except zipfile.BadZipFile as exc:
            raise _not_plain(path, exc) from None
    if not compressed:
        data = open_rows(path, key)
        return data.shape, data.dtype, (np.asarray(data[i : i + chunk_rows]) for i in range(0, len(data), chunk_rows))
    archive = zipfile.ZipFile(path)
    fh = archive.open(_member(archive, path, key, "input"))
    try:
        shape, fortran, dtype = _header(fh)
    except ValueError as exc:
        archive.close()
        raise _not_plain(path, exc) from None
    if fortran and len(shape) == 2 and shape[1] > 1:
        archive.close()
        raise InputError(
            "compressed .npz holds a Fortran-ordered array, which cannot be streamed by rows", f"at {path}",
            "save it with np.save",
        )

    def chunks():
        with archive, fh:
            width = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
            for start in range(0, shape[0] if shape else 0, chunk_rows):
                rows = min(chunk_rows, shape[0] - start)
                yield np.frombuffer(fh.read(rows * width * dtype.itemsize), dtype=dtype).reshape(
                    (rows,) + tuple(shape[1:])
                )

    return shape, dtype, chunks()
