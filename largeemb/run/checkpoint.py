"""Finished tasks kept on disk, so an interrupted run can resume.

A run's work directory (``OUT/.work/`` from the CLI) holds ``manifest.json``
(what the run computes: inputs, options, format) and one ``<task>.npz`` per
finished task, written to a temporary name and moved into place with
``os.replace``: a file that exists is complete. A unit whose file was removed
as no longer needed leaves an empty ``<task>.npz.released`` marker until its
pass is complete: it was saved (:func:`saved`), though it can no longer be
loaded. Results are stored without
pickle: arrays and numbers, plus a JSON description of how they nest
(dataclasses of this package, tuples, lists).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager

import numpy as np

from largeemb.errors import InputError, ResumeMismatchError, StoreReadError
from largeemb.version import __version__

#: Bumped whenever what a checkpoint holds or names changes (2: record
#: classes moved into largeemb.kernels / largeemb.passes; 3: content.json,
#: the inputs' per-segment digests a resume is checked against; 4: Moments.lattice,
#: float64 counters in CrossPartial, finish and settle results; k-NN merge states as units;
#: 5: bf16 screen counts in self-pass states and cross partials; 6: ``.released``
#: markers, the k-NN pass's largest norm as a unit of its own; 7: a k-NN block's finish
#: as a TilePass and a float64 chunk's as Radii, not tuples; records moved (Neighbours and
#: Candidates to kernels.neighbours, Shortlist to kernels.shortlist), screen counts no longer in them);
#: 8: CrossPartial.balls (the k-NN family's counts in extra balls); part radii in TilePass and Radii, split
#: totals in CrossPartial (the standard errors); 9: CrossPartial.balls always present (zero counts for a
#: block pair whose tiles are all pruned), MiFID's tiles mark a zero real row NaN.
FORMAT = 9
MANIFEST = "manifest.json"
#: Per-segment content digests of each input, recorded by the moments pass.
CONTENT = "content.json"
SUFFIX = ".npz"
#: Appended to a unit's file name once its file is removed as no longer needed:
#: an empty marker saying the unit was saved (see :func:`release`).
RELEASED = ".released"
#: The work directory inside ``--out``.
WORK_DIR = ".work"


class CheckpointStore:
    """One run's finished tasks in ``path``; ``done`` is what existed when opened."""

    def __init__(self, path: str, done: set[str]):
        self.path = path
        self.done = done

    def file(self, name: str) -> str:
        return os.path.join(self.path, name + SUFFIX)

    def has(self, name: str) -> bool:
        return name in self.done

    def content(self) -> dict:
        """Per-segment digests (hex) of each input by role, as the run that started this work read them."""
        try:
            with open(os.path.join(self.path, CONTENT)) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InputError(
                f"the record of what the interrupted run read is unreadable ({exc})",
                f"in {self.path}",
                "pass --force without --resume to start again",
            ) from None

    def record_content(self, digests: dict) -> None:
        write_atomic(os.path.join(self.path, CONTENT), lambda fh: fh.write(json.dumps(digests).encode()))


def open_store(path: str, fingerprint: dict, resume: bool) -> CheckpointStore:
    """Open (or start) the work directory ``path`` for a run described by ``fingerprint``.

    Unfinished work is only taken up with ``resume``, and only when it was
    started with the same inputs and options.
    """
    manifest = os.path.join(path, MANIFEST)
    wanted = {"format": FORMAT, **fingerprint}
    if os.path.exists(manifest):
        if not resume:
            raise InputError(
                "output directory holds unfinished work from an interrupted run",
                f"in {path}",
                "pass --resume (API: resume=True) to continue it, or --force (API: delete it) to discard it",
            )
        try:
            with open(manifest) as fh:
                found = json.load(fh)
        except (OSError, ValueError):
            found = {}
        if found.get("format") != FORMAT:
            raise InputError(
                f"unfinished work was kept in checkpoint format {found.get('format')}, "
                f"this largeemb writes format {FORMAT}",
                f"in {path}",
                "finish it with the largeemb version that started it, or pass --force without --resume to discard it",
            )
        differ = differences(found, wanted)
        if differ:
            raise InputError(
                f"unfinished work was started with different inputs or options ({'; '.join(differ)})",
                f"in {path}",
                "rerun with the same inputs and options, or pass --force without --resume to discard it",
            )
        return CheckpointStore(path, _finished(path))
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):  # leftovers without a manifest cannot be trusted
        if name.endswith((SUFFIX, RELEASED)) or ".tmp-" in name or name == CONTENT:
            os.remove(os.path.join(path, name))
    write_atomic(manifest, lambda fh: fh.write(json.dumps(wanted, indent=2, sort_keys=True).encode()))
    return CheckpointStore(path, set())


def differences(found: dict, wanted: dict) -> list[str]:
    """What differs between a kept manifest and this run, each as ``what: X when started, now Y``.

    Options are named as on the command line (``--k``); inputs by role and field.
    """
    out = []
    for key in sorted(set(found) | set(wanted), key=str):
        then, now = found.get(key), wanted.get(key)
        if then == now:
            continue
        if isinstance(then, dict) and isinstance(now, dict):
            for sub in sorted(set(then) | set(now)):
                if then.get(sub) != now.get(sub):
                    name = f"--{sub.replace('_', '-')}" if key == "params" else f"{key} {sub}"
                    out.append(f"{name}: {_shown(then.get(sub))} when started, now {_shown(now.get(sub))}")
        else:
            out.append(f"{key}: {_shown(then)} when started, now {_shown(now)}")
    return out


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "(none)" if value is None else str(value)


def discard(path: str) -> None:
    """Remove a work directory (after a successful publish, or on --force)."""
    shutil.rmtree(path, ignore_errors=True)


def release(path: str) -> None:
    """Remove a saved unit's file ``path`` that no unit needs any more, leaving an empty
    marker, so that :func:`saved` still holds for it (a unit's file may leave
    the disk before a sibling consumer of the unit below it is saved)."""
    with open(path + RELEASED, "wb"):
        pass
    try:
        os.remove(path)
    except FileNotFoundError:  # another consumer released it first
        pass


def saved(path: str) -> bool:
    """Whether the unit whose file is ``path`` was saved (its file may since have been released)."""
    return os.path.exists(path) or os.path.exists(path + RELEASED)


def forget_released(paths: list[str]) -> None:
    """Remove the markers of these units' released files (once their pass is complete)."""
    for path in paths:
        try:
            os.remove(path + RELEASED)
        except FileNotFoundError:
            pass


def has_finished(path: str) -> bool:
    """Whether ``path`` holds any finished task (else there is nothing to resume)."""
    try:
        return bool(_finished(path))
    except OSError:
        return False


def _finished(path: str) -> set[str]:
    return {name[: -len(SUFFIX)] for name in os.listdir(path) if name.endswith(SUFFIX) and ".tmp-" not in name}


def quick_fingerprint(source) -> dict:
    """What identifies an input for resuming: location, shape, dtype and its
    first and last rows (two chunk reads; catches a store rewritten in place)."""
    import hashlib

    digest = hashlib.sha256()
    for row in (0, source.rows - 1):
        digest.update(np.ascontiguousarray(source.read(row, row + 1)).tobytes())
    return {**source.describe(), "rows_sha256": digest.hexdigest()[:16]}


def run_fingerprint(real, fake, params: dict) -> dict:
    """What must match for a resumed run to reuse finished tasks: the inputs (``fake`` None: a
    reference build), the options that change results (``params``: not where it runs, nor the plots)
    and the version."""
    return {
        "real": quick_fingerprint(real),
        "fake": quick_fingerprint(fake) if fake is not None else None,
        "params": params,
        "largeemb": __version__,
    }


@contextmanager
def kept_only_if_worth_it(checkpoint_dir: str | None):
    """On failure, keep the work directory only if it holds finished tasks to resume.

    Bad data (NaN rows) makes every task worthless; a failure before any task
    finished (the scheduler unreachable) leaves nothing to resume, and a kept
    directory would only make the corrected rerun ask for --resume.
    """
    try:
        yield
    except BaseException as exc:
        # A store that could not be read may be readable later, and old data may
        # come back; any other bad input makes the finished tasks worthless.
        worthless = isinstance(exc, InputError) and not isinstance(exc, (StoreReadError, ResumeMismatchError))
        if checkpoint_dir is not None and (worthless or not has_finished(checkpoint_dir)):
            discard(checkpoint_dir)
        raise


# -- saving and loading one task's result -------------------------------------


def save(path: str, value) -> None:
    """Write ``value`` to ``path`` atomically (temporary file, then rename)."""
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(value, arrays)
    arrays["__tree__"] = np.array(json.dumps(tree))
    write_atomic(path, lambda fh: np.savez(fh, **arrays))


def load(path: str):
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return _decode(json.loads(str(arrays.pop("__tree__"))), arrays)


def write_atomic(path: str, write) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_INT32 = np.iinfo(np.int32)


def _encode(value, arrays: dict):
    if value is None:
        return {"none": True}
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        if value.dtype == np.int64 and value.size and _INT32.min <= value.min() and value.max() <= _INT32.max:
            arrays[key] = value.astype(np.int32)  # row indices: a third of a candidate list's bytes on disk
            return {"int64_as_int32": key}
        arrays[key] = value
        return {"array": key}
    if isinstance(value, (bool, np.bool_)):
        return {"bool": bool(value)}
    if isinstance(value, (int, np.integer)):
        return {"int": int(value)}
    if isinstance(value, (float, np.floating)):
        return {"float": float(value).hex()}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [_encode(item, arrays) for item in value]}
    if dataclasses.is_dataclass(value) and type(value).__module__.startswith("largeemb."):
        cls = type(value)
        fields = {f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}
        return {"class": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    raise TypeError(f"cannot checkpoint a {type(value).__name__}")


def _decode(tree: dict, arrays: dict):
    (kind,) = set(tree) - {"fields"}
    if kind == "none":
        return None
    if kind == "str":
        return tree["str"]
    if kind == "bytes":
        return bytes.fromhex(tree["bytes"])
    if kind == "array":
        return arrays[tree["array"]]
    if kind == "int64_as_int32":
        return arrays[tree["int64_as_int32"]].astype(np.int64)
    if kind == "bool":
        return tree["bool"]
    if kind == "int":
        return tree["int"]
    if kind == "float":
        return float.fromhex(tree["float"])
    if kind == "tuple":
        return tuple(_decode(item, arrays) for item in tree["tuple"])
    if kind == "list":
        return [_decode(item, arrays) for item in tree["list"]]
    module, qualname = tree["class"].split(":")
    if not module.startswith("largeemb."):  # only our own record types, never arbitrary code
        raise ValueError(f"checkpoint names a foreign type {tree['class']}")
    cls = getattr(importlib.import_module(module), qualname)
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"checkpoint names a non-record type {tree['class']}")
    return cls(**{name: _decode(item, arrays) for name, item in tree["fields"].items()})
