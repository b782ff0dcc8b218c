"""Embeddings in a text file of numbers (CSV, TSV, whitespace): read in row chunks, for ``largeemb convert``.

One row per line, the same number of columns on every line; a first line
that is not all numbers is taken as a header and skipped. The delimiter is
the first of ``,``, tab or ``;`` found on the first data line, else white space.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from largeemb.errors import InputError

SUFFIXES = (".csv", ".tsv", ".txt")


def is_text_file(obj) -> bool:
    return isinstance(obj, (str, os.PathLike)) and str(obj).lower().endswith(SUFFIXES)


def _numbers(line: str, delimiter: str | None) -> bool:
    try:
        [float(token) for token in line.split(delimiter)]
    except ValueError:
        return False
    return True


def text_chunks(path, chunk_rows: int):
    """(shape, dtype, iterator of float32 row chunks) of a text file of numbers, never holding it whole."""
    path = str(path)
    with open(path) as fh:
        lines = (line for line in fh if line.strip())
        first = next(lines, "")
        delimiter = next((d for d in (",", "\t", ";") if d in first), None)
        header = bool(first) and not _numbers(first, delimiter)
        data_line = next(lines, "") if header else first  # its column count is the dimension
        if not data_line:  # empty, or a header alone
            raise InputError("the text file holds no rows", f"at {path}", "write one row of numbers per line")
        rows = 1 + sum(1 for _ in lines)
    skip = 1 if header else 0

    def chunks():
        with open(path) as fh:
            lines = itertools.islice((line for line in fh if line.strip()), skip, None)
            start = skip
            while True:
                part = list(itertools.islice(lines, chunk_rows))
                if not part:
                    return
                try:
                    yield np.loadtxt(part, delimiter=delimiter, dtype=np.float32, ndmin=2)
                except ValueError as exc:
                    raise InputError(
                        f"not a table of numbers ({exc})", f"at {path}, lines {start + 1}-{start + len(part)}",
                        "write one row of numbers per line, the same number of columns on each",
                    ) from None
                start += len(part)

    dim = len(data_line.split(delimiter))
    return (rows, dim), np.dtype(np.float32), chunks()
