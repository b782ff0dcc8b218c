"""Per-class (conditional) evaluation: every metric within each class, and their means over classes.

With labels for both sets (``real_labels``/``fake_labels``, ``--real-labels``/``--fake-labels``;
see :mod:`largeemb.io.labels`), :func:`largeemb.api.evaluate` adds to its result

- ``by_class[label]``: one evaluation of that class's real rows against its fake rows
  (``metrics``, ``by_k``, ``standard_errors``, ``warnings``, as at the top level, and the rows of each);
- ``class_averaged``: the mean of each number over the classes evaluated (intra-class FD,
  precision, recall, density, coverage, Vendi, every metric the run computes), the standard
  errors of those means where every class has one, and which classes those were.

Classes found in only one set, or with too few rows for k in one of them, are named in a
warning and left out of both. The labels are checked and counted before any work.

How: each set is read once (:func:`largeemb.io.split.split_by_class`) into one zarr array
per class, in ``classes/`` of the run's work directory (a temporary directory without one),
and the normal engine evaluates each class from those arrays, so every pass over a class
reads only its rows. Each class keeps its finished tasks in ``classes/work-<label>``, so an
interrupted run resumes there too; the split itself is kept (``split.json`` records what it
was made of) and made again only when the inputs or labels differ. The whole sets and every
class run on one executor (:func:`largeemb.run.session.one_executor`): a LocalCluster or worker
jobs start once, not once per class.

The split is a read of each set beyond those of the whole-set evaluation, on purpose: the
whole-set passes do not always read the rows (a reference holds the real side's moments and
radii, several fakes share one real side, a resumed run loads finished tasks), their tasks run
on workers in any order while the split fills each class's chunks in row order from one
process, and the read costs little (0.67 s of a 52.6 s text-lsa run with 10 classes,
BENCHMARKS.md).

This module does not import :mod:`largeemb.api`: ``evaluate`` hands itself in.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings as python_warnings
from dataclasses import dataclass, replace

from largeemb.errors import InputError, LargeembWarning, ResumeMismatchError, StoreReadError
from largeemb.io.labels import Labels, open_labels
from largeemb.io.split import array_name, split_by_class
from largeemb.io.store import Source
from largeemb.run.checkpoint import quick_fingerprint, write_atomic

#: The per-class stores and work, inside the run's work directory.
CLASSES_DIR = "classes"
#: What the kept split was made of (written once both sets are split).
SPLIT_RECORD = "split.json"
#: What each class's evaluation keeps (the numbers, as at the top level of metrics.json).
CLASS_KEYS = ("metrics", "by_k", "standard_errors", "standard_errors_given_real", "warnings")


@dataclass
class ClassPlan:
    """Both sets' labels, counted: the classes to evaluate and those left out (and why)."""

    real: Labels
    fake: Labels
    real_counts: dict[int, int]
    fake_counts: dict[int, int]
    #: Digests of the labels (a kept split is reused only for the same ones).
    digests: tuple[str, str]
    classes: list[int]
    left_out: dict[int, str]

    def warnings(self) -> list[str]:
        lines = []
        for why in dict.fromkeys(self.left_out.values()):
            labels = [label for label, reason in self.left_out.items() if reason == why]
            lines.append(f"{_classes_text(labels)} ({why}): left out of by_class and class_averaged")
        return lines


def plan(real_labels, fake_labels, real: Source, fake: Source, max_k: int) -> ClassPlan | None:
    """The classes of a per-class evaluation (None without labels); refuses bad labels before any work."""
    if real_labels is None and fake_labels is None:
        return None
    if real_labels is None or fake_labels is None:
        missing = "real" if real_labels is None else "fake"
        raise InputError(
            f"per-class evaluation needs the {missing} set's labels too", f"in --{missing}-labels",
            f"pass --{missing}-labels (one class for every row: e.g. --{missing}-labels 0)",
        )
    real_side, fake_side = open_labels(real_labels, real, "real"), open_labels(fake_labels, fake, "fake")
    (real_counts, real_digest), (fake_counts, fake_digest) = real_side.census(), fake_side.census()
    classes, left_out = [], {}
    for label in sorted(set(real_counts) | set(fake_counts)):
        n_real, n_fake = real_counts.get(label, 0), fake_counts.get(label, 0)
        if not n_fake or not n_real:
            left_out[label] = "only in the real set" if n_real else "only in the fake set"
        elif min(n_real, n_fake) <= max_k:
            left_out[label] = f"k={max_k} needs more than {max_k} rows in each set"
        else:
            classes.append(label)
    if not classes:
        raise InputError(
            "no class has more than k rows in both sets", f"in {real_side.given} and {fake_side.given}",
            "check that both sets' labels number the classes alike",
        )
    return ClassPlan(real_side, fake_side, real_counts, fake_counts, (real_digest, fake_digest), classes, left_out)


def check_split_reachable(config, client, checkpoint_dir: str | None) -> None:
    """Workers on other hosts read the per-class stores: they must lie in a work directory they see, not in
    this process's temporary directory (``evaluate_to`` and the CLI put them in ``OUT/.work``)."""
    remote = client is not None or config.scheduler or config.cluster
    if remote and checkpoint_dir is None:
        raise InputError(
            "per-class evaluation on a dask cluster splits the sets into stores its workers must read",
            "without a checkpoint_dir (a temporary directory of this process)",
            "pass checkpoint_dir= a directory every worker sees, or use largeemb.evaluate_to",
        )


def evaluate_classes(
    evaluate, classes: ClassPlan, real: Source, fake: Source, config, *, checkpoint_dir, client, resume
) -> tuple[dict, list[str], dict[str, float]]:
    """Each class evaluated by ``evaluate`` (the api's); returns what metrics.json adds
    (``by_class``, ``class_averaged``), the run's warnings about classes and the timings."""
    config = replace(config, plots=False)  # the plots are the whole run's; no number depends on them
    by_class, warned, timings = {}, [], {}
    left_out = dict(classes.left_out)
    with _work_dir(checkpoint_dir) as root:
        started = time.perf_counter()
        stores = _split(classes, real, fake, root, resume and checkpoint_dir is not None)
        timings["class_split"] = time.perf_counter() - started
        started = time.perf_counter()
        for label in classes.classes:
            work = os.path.join(root, f"work-{label}") if checkpoint_dir is not None else None
            try:
                with python_warnings.catch_warnings():  # kept in by_class; the run's warnings say which classes
                    python_warnings.simplefilter("ignore", LargeembWarning)
                    name = array_name(label)
                    result = evaluate(
                        stores["real"], stores["fake"], config, real_array=name, fake_array=name, client=client,
                        checkpoint_dir=work, resume=resume,
                    )
            except (StoreReadError, ResumeMismatchError):
                raise
            except InputError as exc:  # what one class cannot serve (e.g. a subset larger than its rows)
                left_out[label] = f"cannot be evaluated: {exc.what}"
                continue
            doc = result.to_dict()
            by_class[str(label)] = {
                "real_rows": classes.real_counts[label], "fake_rows": classes.fake_counts[label],
                **{key: doc[key] for key in CLASS_KEYS},
            }
            if doc["warnings"]:
                warned.append(label)
        timings["by_class"] = time.perf_counter() - started
    lines = replace(classes, left_out=left_out).warnings()
    if warned:
        lines.append(f"{_classes_text(warned)} have warnings of their own (by_class[...]['warnings'] in metrics.json)")
    document = {
        "by_class": by_class,
        "class_averaged": class_averaged(by_class, left_out, classes.real.given, classes.fake.given),
    }
    return document, lines, timings


def class_averaged(by_class: dict, left_out: dict, real_given: str, fake_given: str) -> dict:
    """The mean of each number of ``metrics`` and ``by_k`` over the classes evaluated; a number
    some class lacks (not finite there) is the mean over the others, and ``partial`` names those classes."""
    docs = list(by_class.values())
    partial: dict[str, list[str]] = {}
    first = docs[0] if docs else {"metrics": {}, "by_k": {}}
    by_k = {k: _means([doc["by_k"].get(k, {}) for doc in docs], list(by_class), partial, f"by_k.{k}.")
            for k in first["by_k"]}
    return {
        "classes": [int(label) for label in by_class],
        "left_out": {str(label): why for label, why in left_out.items()},
        "labels": {"real": real_given, "fake": fake_given},
        "metrics": _means([doc["metrics"] for doc in docs], list(by_class), partial, ""),
        "by_k": by_k,
        "standard_errors": _mean_errors([doc.get("standard_errors") or {} for doc in docs]),
        "standard_errors_given_real": _mean_errors([doc.get("standard_errors_given_real") or {} for doc in docs]),
        **({"partial": partial} if partial else {}),
    }


def _mean_errors(errors: list[dict]) -> dict:
    """Standard errors of the class means: the classes are disjoint rows of both sets, so their
    estimates are independent and the mean of C of them has sqrt(sum of se²) / C. Numbers only where
    every class has one; what is not a number is kept where the classes agree."""
    out = {}
    for key in errors[0] if errors else ():
        values = [e.get(key) for e in errors]
        if all(isinstance(v, dict) for v in values):
            out[key] = _mean_errors(values)
        elif all(_finite(v) for v in values):
            out[key] = math.sqrt(math.fsum(float(v) ** 2 for v in values)) / len(values)
        elif all(v == values[0] for v in values) and not _finite(values[0]):
            out[key] = values[0]
    return out


def _means(rows: list[dict], labels: list[str], partial: dict, prefix: str) -> dict:
    out = {}
    for key in rows[0] if rows else ():
        values = [row.get(key) for row in rows]
        finite = [float(v) for v in values if _finite(v)]
        if not any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue  # not a number (a record of some kind): nothing to average
        if len(finite) < len(values):
            partial[prefix + key] = [int(label) for label, v in zip(labels, values) if not _finite(v)]
        out[key] = math.fsum(finite) / len(finite) if finite else None
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _classes_text(labels) -> str:
    shown = ", ".join(map(str, labels[:20])) + (f" and {len(labels) - 20} more" if len(labels) > 20 else "")
    return f"class{'es' if len(labels) > 1 else ''} {shown}"


@contextlib.contextmanager
def _work_dir(checkpoint_dir: str | None):
    """``classes/`` in the run's work directory (kept for a resume), else a temporary directory."""
    if checkpoint_dir is not None:
        yield os.path.join(checkpoint_dir, CLASSES_DIR)
        return
    root = tempfile.mkdtemp(prefix="largeemb-classes-")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _split(classes: ClassPlan, real: Source, fake: Source, root: str, resume: bool) -> dict:
    """Both sets split by class into ``root`` (reused on resume when made of the same inputs and labels):
    the paths of the two split stores, whose arrays :func:`array_name` names."""
    record = {
        "real": quick_fingerprint(real), "fake": quick_fingerprint(fake), "labels": list(classes.digests),
        "classes": classes.classes,
    }
    stores = {"real": os.path.join(root, "real.zarr"), "fake": os.path.join(root, "fake.zarr")}
    record_path = os.path.join(root, SPLIT_RECORD)
    if resume and _kept(record_path) == record:
        return stores
    shutil.rmtree(root, ignore_errors=True)  # another split's stores and class work are worthless here
    os.makedirs(root, exist_ok=True)
    for role, source, labels, counts in (
        ("real", real, classes.real, classes.real_counts), ("fake", fake, classes.fake, classes.fake_counts),
    ):
        wanted = {label: counts[label] for label in classes.classes}
        split_by_class(source, labels, wanted, stores[role])
    write_atomic(record_path, lambda fh: fh.write(json.dumps(record, indent=2).encode()))
    return stores


def _kept(path: str):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
