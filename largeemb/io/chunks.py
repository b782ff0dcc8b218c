"""Missing-chunk listing: zarr reads an absent chunk as the fill value, so a
half-copied store would give wrong numbers silently; every opened array is
checked against the objects its store lists (or, where listings are refused
or short, asks for one by one).
"""

from __future__ import annotations

import itertools
import logging
import math
import os

from largeemb.errors import InputError
from largeemb.io.faults import is_transient, read_failed, retrying, short_error

logger = logging.getLogger("largeemb")


def missing_chunks(arr, stored: set[str] | None = None) -> tuple[int, int, tuple[int, int] | None]:
    """(missing, expected, rows of the first missing) stored objects of a zarr array.

    zarr reads an absent chunk as the fill value, so a half-copied store gives
    wrong numbers silently. Listing keys costs no data reads. For a sharded
    array the stored objects are shards; chunks absent inside a present shard
    are not seen here (zarr leaves out chunks equal to the fill value).
    ``stored``: the keys found (default: list the store).
    """
    keys = _chunk_keys(arr)
    if not keys:
        return 0, 0, None
    stored = _stored_keys(arr) if stored is None else stored
    absent = [(rows, key) for rows, key in keys if key not in stored]
    return len(absent), len(keys), absent[0][0] if absent else None


def _chunk_keys(arr) -> list[tuple[tuple[int, int], str]]:
    """(rows, key relative to the array) of every stored object the array should have."""
    step = arr.shards or arr.chunks
    grid = [math.ceil(size / part) for size, part in zip(arr.shape, step)]
    return [
        ((coords[0] * step[0], min((coords[0] + 1) * step[0], arr.shape[0])), arr.metadata.encode_chunk_key(coords))
        for coords in itertools.product(*map(range, grid))
    ]


def _stored_keys(arr) -> set[str]:
    from zarr.core.sync import sync

    prefix = arr.store_path.path
    listing = f"{prefix}/" if prefix else ""

    async def collect():
        return [key async for key in arr.store_path.store.list_prefix(listing)]

    return {key[len(listing) :] for key in sync(collect())}


def _listing(arr) -> tuple[set[str], BaseException | None]:
    """The stored keys, or (nothing, why) when the store refuses listings for good (transient errors propagate)."""
    try:
        return _stored_keys(arr), None
    except Exception as exc:
        if is_transient(exc):
            raise
        return set(), exc


def _existing(arr, keys: list[str]) -> set[str]:
    """Which of ``keys`` exist, asked one by one (a HEAD each over HTTP), a few dozen at a time."""
    import asyncio

    from zarr.core.sync import sync

    prefix = arr.store_path.path
    store = arr.store_path.store

    async def ask():
        gate = asyncio.Semaphore(32)

        async def one(key):
            async with gate:
                return key, await store.exists(f"{prefix}/{key}" if prefix else key)

        return await asyncio.gather(*(one(key) for key in keys))

    return {key for key, found in sync(ask()) if found}


def check_chunks(arr, src) -> None:
    """Refuse an array with absent chunks (``src``: its :class:`~largeemb.io.store.Source`), from a listing
    where the store allows one.

    A listing can be refused (a static HTTP host answers 403) or silently
    short (a local chunk directory that is traversable but not readable):
    chunks it does not show are then checked one by one by existence, and
    only those that really are absent count as missing.
    """
    keys = _chunk_keys(arr)
    if not keys:
        return
    where = f"{src.role} store {src.name}".lstrip()
    stored, refused = retrying(
        lambda: _listing(arr),
        lambda exc: InputError(
            f"cannot list the chunks of the {src.role} array ({short_error(exc)})", f"in {src.name}", "check the store"
        ),
        lambda exc, attempts: read_failed(where, "the chunk listing", exc, attempts),
    )
    unlisted_reason = f"the store refuses listings ({short_error(refused)})" if refused else None
    absent = [key for _, key in keys if key not in stored]
    if absent:
        found = retrying(
            lambda: _existing(arr, absent),
            lambda exc: InputError(
                f"cannot check the chunks of the {src.role} array ({short_error(exc)})", f"in {src.name}",
                "check the store",
            ),
            lambda exc, attempts: read_failed(where, "the chunks' existence", exc, attempts),
        )
        if found:
            reason = unlisted_reason or _unlisted_reason(src, found)
            logger.warning(
                "%s: %d chunks exist but %s; each was checked by existence instead", where, len(found), reason
            )
        stored = stored | found
    missing, expected, first = missing_chunks(arr, stored)
    if missing:
        fill = arr.fill_value.item() if hasattr(arr.fill_value, "item") else arr.fill_value
        raise InputError(
            f"{src.role} array is missing {missing} of {expected} stored chunks (first: rows {first[0]}:{first[1]}); "
            f"zarr would read them as {fill!r}",
            f"in {src.name}",
            "re-export or finish copying the store (if those rows really are all "
            f"{fill!r}, rewrite it with write_empty_chunks=True)",
        )


def _unlisted_reason(src, found: set[str]) -> str:
    """Why a listing left out chunks that exist: for a local store, name the unreadable directory."""
    if "://" not in src.location:  # a local store
        base = os.path.join(src.location, src.array_path)
        for key in sorted(found):
            parent = os.path.dirname(os.path.join(base, key))
            if not os.access(parent, os.R_OK):
                return (
                    f"the directory {parent} cannot be listed "
                    "(permission denied: it is traversable, not readable; chmod a+r it)"
                )
    return "the store's listing leaves them out"
