"""The read-fault policy of every store access: which errors are worth a retry,
bounded retries with backoff, and one-line errors for those that are not.

A transient failure (network, timeout, throttling) is retried with jittered
exponential backoff (``READ_RETRY``), then reported as a
:class:`~largeemb.errors.StoreReadError` (exit status 3: a later run may
succeed); any other failure is the caller's permanent error at once.
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from largeemb.config import ReadRetry
from largeemb.errors import InputError, StoreReadError

#: Retry policy of every store access (module-level so tests can shorten it).
READ_RETRY = ReadRetry()
#: OSErrors that no retry can cure.
PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: network, timeouts, throttling (fsspec maps most to OSError).

    An HTTP answer of 4xx (but 408 timeout, 429 throttled) is the server's
    final word: retrying cannot change it.
    """
    if isinstance(exc, PERMANENT_OS_ERRORS):
        return False
    aiohttp = sys.modules.get("aiohttp")  # only loaded when an HTTP-based store is in use
    if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError):
        return not (400 <= exc.status < 500) or exc.status in (408, 429)
    if isinstance(exc, OSError):  # also ConnectionError, TimeoutError
        return True
    return aiohttp is not None and isinstance(exc, aiohttp.ClientError)


def retrying(action, permanent_error, exhausted_error):
    """``action()`` with bounded, jittered exponential backoff on transient errors.

    ``permanent_error(exc)`` builds the error raised at once for a failure no
    retry can cure; ``exhausted_error(exc, attempts)`` the one raised when
    retries run out.
    """
    delays = READ_RETRY.delays()
    for attempt in range(len(delays) + 1):
        try:
            return action()
        except (MemoryError, InputError):
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise permanent_error(exc) from None
            if attempt == len(delays):
                raise exhausted_error(exc, attempt + 1) from None
            # Jitter: many workers hitting one object store should not retry in step.
            time.sleep(delays[attempt] * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")  # pragma: no cover


def read_failed(where: str, what: str, exc: BaseException, attempts: int) -> StoreReadError:
    return StoreReadError(
        f"could not read {what} after {attempts} attempts ({short_error(exc)})",
        f"in {where}",
        "check that the store is reachable and rerun (exit status 3: a later retry may succeed)",
    )


def first_unreadable_chunk(array, rows: np.ndarray, most: int = 64) -> tuple[int, int] | None:
    """Probe the first ``most`` chunks holding ``rows`` one by one (only on the error path)."""
    try:
        arr = array()
        step = int(arr.chunks[0])
    except Exception:
        return None
    for chunk in np.unique(np.asarray(rows) // step)[:most]:
        lo, hi = int(chunk) * step, min(int(chunk + 1) * step, arr.shape[0])
        try:
            arr[lo:hi]
        except Exception:
            return lo, hi
    return None


def not_a_store_reason(exc: BaseException) -> str:
    if type(exc).__name__ in ("GroupNotFoundError", "ArrayNotFoundError", "NodeNotFoundError"):
        return "no zarr metadata there"
    return short_error(exc)


def short_error(exc: BaseException, limit: int = 160) -> str:
    """``Type: message`` on one line, cut at ``limit`` characters."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def rows_text(rows: np.ndarray) -> str:
    rows = np.asarray(rows)
    if len(rows) <= 4:
        return "rows " + ", ".join(map(str, rows.tolist()))
    return f"rows {rows[0]}, {rows[1]}, … {rows[-1]} ({len(rows)} rows)"
