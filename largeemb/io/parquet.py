"""Embeddings in a Parquet table (as Hugging Face datasets store them), read in row batches for ``largeemb convert``.

Two layouts: one column holding each row's vector (a list or fixed-size list
of floats: the column named by ``--key``, or the only such column), or one
numeric column per dimension (every column, in order). Needs pyarrow (the
``parquet`` extra).
"""

from __future__ import annotations

import numpy as np

from largeemb.errors import InputError


def is_parquet_file(obj) -> bool:
    return isinstance(obj, str) and obj.lower().endswith((".parquet", ".pq"))


def _pyarrow(path: str):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            "reading Parquet needs pyarrow, which is not installed", f"for {path}",
            "pip install 'largeemb[parquet]' (or pyarrow)",
        ) from None
    return pa, pq


def parquet_chunks(path: str, key: str | None, chunk_rows: int):
    """(shape, dtype, iterator of float32 row chunks) of the embeddings in a Parquet file, never holding it whole."""
    pa, pq = _pyarrow(path)
    try:
        table = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", f"at {path}", "pass a .parquet file") from None
    schema, rows = table.schema_arrow, table.metadata.num_rows
    vectors = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)]
    numeric = [f.name for f in schema if pa.types.is_floating(f.type) or pa.types.is_integer(f.type)]
    if key is not None:
        if key not in schema.names:
            raise InputError(
                f"no column {key!r}", f"in {path} (columns: {', '.join(schema.names)})", "name one with --key"
            )
        columns = [key]
    elif len(vectors) == 1:
        columns = vectors
    elif not vectors and numeric and len(numeric) == len(schema.names):
        columns = numeric
    else:
        raise InputError(
            "cannot tell which column holds the embeddings", f"in {path} (columns: {', '.join(schema.names)})",
            "name the vector column with --key",
        )

    def batch_rows(batch) -> np.ndarray:
        if len(columns) > 1 or not (pa.types.is_list(batch.schema.field(0).type)
                                    or pa.types.is_fixed_size_list(batch.schema.field(0).type)):
            return np.column_stack([batch.column(i).to_numpy(zero_copy_only=False) for i in range(len(columns))])
        column = batch.column(0)
        lengths = np.unique(column.value_lengths().to_numpy(zero_copy_only=False))
        if len(lengths) != 1 or column.null_count:
            raise InputError(
                "the vectors differ in length or some are missing", f"in column {columns[0]!r} of {path}",
                "write one vector of the same length per row",
            )
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), int(lengths[0]))

    first = next(table.iter_batches(batch_size=1, columns=columns), None)
    if first is None:
        raise InputError("the Parquet file holds no rows", f"at {path}", "pass a table of embeddings")
    dim = batch_rows(first).shape[1]

    def chunks():
        for batch in table.iter_batches(batch_size=chunk_rows, columns=columns):
            yield np.asarray(batch_rows(batch), np.float32)

    return (rows, dim), np.dtype(np.float32), chunks()
