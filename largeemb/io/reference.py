"""Reference cache: what depends on the real set alone, computed once.

A nightly job compares a new fake set with the same real set every time; the
real × real pass costs as much as the fake × fake one, so its radii (for
several k), its moments and its content fingerprint are kept in a directory
that ``evaluate`` accepts in place of the real store. The fingerprint is
checked against the store on every use: a changed store is refused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np

from largeemb.errors import InputError
from largeemb.io.objectstore import BACKENDS, exists, filesystem, is_remote, join, require_backend, scheme
from largeemb.io.store import Source, open_source
from largeemb.kernels.moments import Moments
from largeemb.kernels.prune import Partition

REFERENCE_FILE = "reference.json"
RADII_STORE = "radii.zarr"
MOMENTS_FILE = "moments.npz"
PARTITION_FILE = "partition.npz"
#: The part radii of the standard errors (:mod:`largeemb.kernels.splits`): (rows, len(split_k), 64).
PARTS_STORE = "part_radii.zarr"
#: Everything a reference consists of, its commit mark first.
REFERENCE_FILES = (REFERENCE_FILE, RADII_STORE, MOMENTS_FILE, PARTITION_FILE, PARTS_STORE)
KIND = "largeemb-reference"
#: 2: part radii (``split_k``, PARTS_STORE) for the standard errors; a version 1 reference is read without them.
SCHEMA_VERSION = 2


def is_reference(obj) -> bool:
    if not isinstance(obj, (str, os.PathLike)):
        return False
    if scheme(obj) in BACKENDS:  # a reference in an object store (http stores are never asked: a HEAD may hang)
        require_backend(obj, "for")
        try:
            return exists(join(str(obj), REFERENCE_FILE))
        except Exception:  # an unreachable store is not a reference; opening it says why
            return False
    return os.path.isfile(os.path.join(str(obj), REFERENCE_FILE))


def _open(path: str, name: str, mode: str = "rb"):
    """A file of the reference in ``path``, local or in an object store."""
    if not is_remote(path):
        return open(os.path.join(path, name), mode)
    import fsspec

    return fsspec.open(join(path, name), mode)


def _exists(path: str, name: str) -> bool:
    return exists(join(path, name)) if is_remote(path) else os.path.exists(os.path.join(path, name))


@dataclass(frozen=True)
class Reference:
    path: str
    source: Source
    k: tuple[int, ...]
    metric: str
    fingerprint: str
    created_utc: str
    #: The k whose part radii it holds (empty: built before version 2, or without them).
    split_k: tuple[int, ...] = ()

    def radii(self, ks: tuple[int, ...]) -> np.ndarray:
        """Stored radii for the requested k, as a (rows, len(ks)) float64 array."""
        import zarr

        missing = [k for k in ks if k not in self.k]
        if missing:
            raise InputError(
                f"reference holds radii for k={','.join(map(str, self.k))}, not k={','.join(map(str, missing))}",
                f"in {self.path}",
                "rebuild it with `largeemb reference build --k ...` including those k",
            )
        stored = zarr.open_array(os.path.join(self.path, RADII_STORE), mode="r")[...]
        return stored[:, [self.k.index(k) for k in ks]]

    def parts(self, ks: tuple[int, ...]) -> np.ndarray:
        """Stored part radii for these k (all in ``split_k``), as (rows, len(ks), 64) float64."""
        import zarr

        stored = zarr.open_array(os.path.join(self.path, PARTS_STORE), mode="r")
        # One orthogonal read: a chunk holds every stored k, so a read per k would read the whole store per k.
        return stored.oindex[:, [self.split_k.index(k) for k in ks]]

    def moments(self) -> Moments:
        with _open(self.path, MOMENTS_FILE) as fh, np.load(fh, allow_pickle=False) as saved:
            optional = [saved[name] if name in saved else None for name in ("metric_shift", "metric_s2", "unit_s2")]
            return Moments(
                int(saved["count"]), saved["shift"], saved["s1"], saved["s2"], saved["metric_sum"], *optional
            )

    def partition(self):
        """The groups the radii were pruned with (see :mod:`largeemb.kernels.prune`); None if there were none."""
        if not _exists(self.path, PARTITION_FILE):  # built without pruning, or before it existed: evaluate without it
            return None
        with _open(self.path, PARTITION_FILE) as fh, np.load(fh, allow_pickle=False) as saved:
            return Partition(saved["basis"], saved["centroids"])

    def check(self, metric: str, fingerprint: str) -> None:
        if metric != self.metric:
            raise InputError(
                f"reference was built with --metric {self.metric}, not {metric}",
                f"in {self.path}",
                f"evaluate with --metric {self.metric} or build another reference",
            )
        if fingerprint != self.fingerprint:
            raise InputError(
                "real store no longer matches the reference's fingerprint (its data changed)",
                f"store {self.source.name}, reference {self.path}",
                "rebuild the reference with `largeemb reference build`",
            )

    def info(self) -> dict:
        holds = {
            RADII_STORE: "radii per k",
            MOMENTS_FILE: "float64 mean/covariance sums: FD, and the exact PCA basis of the plots",
            PARTITION_FILE: "principal axes and centroids that prune tile work",
            PARTS_STORE: "part radii per k: the standard errors",
        }
        found = os.path.exists(self.source.location) or "://" in self.source.location
        return {
            "path": self.path,
            "source": {
                **self.source.describe(),
                "status": "found" if found else (
                    f"missing: move it back, or run `largeemb reference move {self.path} NEW_PATH`"
                ),
            },
            "fingerprint": self.fingerprint,
            # The k evaluate may ask for; 1, 4 and 9 are kept for authenticity, P-precision/recall and PR-cover.
            "k": sorted(self.k),
            "k_for_companions": sorted(k for k in self.k if k in (1, 4, 9)),
            "metric": self.metric,
            "created_utc": self.created_utc,
            "holds": [
                f"{name} ({what})" for name, what in holds.items() if _exists(self.path, name)
            ],
        }


def _read_meta(path: str) -> dict:
    try:
        with _open(path, REFERENCE_FILE, "r") as fh:
            meta = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            f"not a readable reference ({exc})", f"at {path}", "build one with `largeemb reference build`"
        ) from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise InputError("not a largeemb reference", f"at {path}", "build one with `largeemb reference build`")
    return meta


def load_reference(path: str, open_store: bool = True) -> Reference:
    """Open a reference and check that every file it needs is there and whole (before any work).

    ``open_store=False`` describes its source without opening it or checking the files (``info``).
    """
    meta = _read_meta(path)
    try:
        src = meta["source"]
        location, array_path, fingerprint = src["location"], src["array_path"], src["fingerprint"]
        k, metric, created = tuple(int(x) for x in meta["k"]), str(meta["metric"]), meta["created_utc"]
        split_k = tuple(int(x) for x in meta.get("split_k", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(path, REFERENCE_FILE, f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)) from None
    if not open_store:
        source = Source(location, array_path, src["rows"], src["dim"], src["dtype"], role="real")
        return Reference(path, source, k, metric, fingerprint, created, split_k)
    if "://" not in location and not os.path.exists(location):
        raise InputError(
            f"the reference's source (the real set it was built from) is not found at {location}",
            f"in reference {path}",
            f"move it back, or point the reference at its new place with `largeemb reference move {path} NEW_PATH`",
        )
    source = open_source(location, array_path or None, role="real")
    reference = Reference(path, source, k, metric, fingerprint, created, split_k)
    _check_files(reference)
    return reference


def _damaged(path: str, name: str, why: str) -> InputError:
    return InputError(
        f"damaged reference: {name} {why}", f"in {path}", "rebuild it with `largeemb reference build --force`"
    )


def _check_files(ref: Reference) -> None:
    """The radii cover every row of the store for every k, and the moments hold every sum."""
    import zarr

    try:
        radii = zarr.open_array(os.path.join(ref.path, RADII_STORE), mode="r")
        shape = tuple(radii.shape)
    except Exception as exc:  # zarr raises many types for a missing or garbage store
        raise _damaged(ref.path, RADII_STORE, f"cannot be read ({type(exc).__name__})") from None
    if shape != (ref.source.rows, len(ref.k)):
        raise _damaged(
            ref.path, RADII_STORE, f"has shape {shape}, not ({ref.source.rows}, {len(ref.k)}) (rows of the store, k)"
        )
    try:
        moments = ref.moments()
    except Exception as exc:
        raise _damaged(ref.path, MOMENTS_FILE, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if (
        moments.s1.shape != (ref.source.dim,)
        or moments.s2.shape != (ref.source.dim, ref.source.dim)
        or moments.count != ref.source.rows
    ):
        raise _damaged(ref.path, MOMENTS_FILE, f"does not match the store's {ref.source.rows} rows × {ref.source.dim}")
    if ref.split_k:
        try:
            shape = tuple(zarr.open_array(os.path.join(ref.path, PARTS_STORE), mode="r").shape)
        except Exception as exc:
            raise _damaged(ref.path, PARTS_STORE, f"cannot be read ({type(exc).__name__})") from None
        if shape != (ref.source.rows, len(ref.split_k), 64):
            raise _damaged(ref.path, PARTS_STORE, f"has shape {shape}, not ({ref.source.rows}, {len(ref.split_k)}, 64)")
    try:
        ref.partition()
    except Exception as exc:
        raise _damaged(ref.path, PARTITION_FILE, f"cannot be read ({type(exc).__name__}: {exc})") from None


def move_reference(path: str, new_location: str) -> str:
    """Point the reference in ``path`` at its source's new location; returns it.

    The store there must have the recorded shape and dtype; its content is
    checked against the fingerprint on every use, as always.
    """
    meta = _read_meta(path)
    src = meta["source"]
    moved = open_source(new_location, src["array_path"] or None, role="real")
    if (moved.rows, moved.dim, moved.dtype) != (src["rows"], src["dim"], src["dtype"]):
        raise InputError(
            f"the store has shape ({moved.rows}, {moved.dim}) {moved.dtype}, the reference was built from "
            f"({src['rows']}, {src['dim']}) {src['dtype']}",
            f"at {new_location}",
            "point at the real set the reference was built from",
        )
    location = new_location if "://" in new_location else os.path.abspath(new_location)
    meta["source"] = {**src, "location": location, "source": moved.name if "://" in new_location else location}
    if is_remote(path):  # one PUT replaces an object whole: never a half-written reference.json
        fs, target = filesystem(join(path, REFERENCE_FILE))
        fs.pipe_file(target, json.dumps(meta, indent=2).encode())
        return location
    target = os.path.join(path, REFERENCE_FILE)
    with open(target + ".tmp", "w") as fh:  # renamed into place: never a half-written reference.json
        json.dump(meta, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(target + ".tmp", target)
    return location


#: Rows per chunk of the stored radii.
RADII_CHUNK_ROWS = 65536


def write_reference(
    staging, source: Source, k, metric: str, moments: Moments, fingerprint: str, radii, partition, split_k=(),
    parts=None,
) -> None:
    """Write a reference's files into ``staging`` (an :class:`largeemb.io.output.Staging`), ``reference.json`` last.

    ``parts``: the part radii (rows, len(split_k), 64) of the standard errors, or None."""
    import zarr

    location = source.location if "://" in source.location else os.path.abspath(source.location)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "source": {
            **source.describe(), "location": location, "array_path": source.array_path, "fingerprint": fingerprint,
        },
        "k": list(k),
        "split_k": list(split_k) if parts is not None else [],
        "metric": metric,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    arr = zarr.create_array(
        staging.file(RADII_STORE), shape=radii.shape, dtype="float64", chunks=(RADII_CHUNK_ROWS, radii.shape[1])
    )
    arr[...] = radii
    if parts is not None:
        stored = zarr.create_array(
            staging.file(PARTS_STORE), shape=parts.shape, dtype="float64",
            chunks=(RADII_CHUNK_ROWS // 16, parts.shape[1], parts.shape[2]),
        )
        stored[...] = parts
    extra = {} if moments.metric_s2 is None else {"metric_shift": moments.metric_shift, "metric_s2": moments.metric_s2}
    if moments.unit_s2 is not None:  # the Vendi score of the real set
        extra["unit_s2"] = moments.unit_s2
    np.savez(
        staging.file(MOMENTS_FILE),
        count=moments.count, shift=moments.shift, s1=moments.s1, s2=moments.s2, metric_sum=moments.metric_sum, **extra,
    )
    if partition is not None:
        np.savez(staging.file(PARTITION_FILE), basis=partition.basis, centroids=partition.centroids)
    staging.write_json(REFERENCE_FILE, meta)
