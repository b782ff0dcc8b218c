"""Reading one evaluated run: a ``metrics.json`` document or a history line (the same fields).

History lines keep the fields of ``metrics.json`` that comparisons need under
the same names, so compare, gates and the history table read both alike.
"""

from __future__ import annotations

from largeemb.io.results import set_name


def ks(record: dict) -> list[str]:
    """The k of a run, as the strings ``by_k`` is keyed by, the primary one first."""
    primary = [str(k) for k in record.get("params", {}).get("k", [])]
    return primary + sorted((k for k in record["by_k"] if k not in primary), key=int)


def value(record: dict, name: str, k: str | None = None):
    """A per-k metric at k (from ``by_k``), or with k None a run metric (``metrics``); None when the run lacks it."""
    if k is not None:
        return record["by_k"].get(str(k), {}).get(name)
    return record.get("metrics", {}).get(name)


def standard_error(record: dict, name: str, k: str, given_real: bool) -> float | None:
    """The SE of a per-k metric: with the real set fixed (``given_real``) or both sets as samples.

    A run written before ``standard_errors_given_real`` existed falls back to
    ``standard_errors`` (today's conditional ones); :func:`has_given_real` says so.
    """
    if given_real and has_given_real(record):
        return record["standard_errors_given_real"].get(str(k), {}).get(name)
    return record.get("standard_errors", {}).get(str(k), {}).get(name)


def has_given_real(record: dict) -> bool:
    return bool(record.get("standard_errors_given_real"))


def real_fingerprint(record: dict) -> str | None:
    return record.get("real", {}).get("fingerprint")


def fake_fingerprint(record: dict) -> str | None:
    return record.get("fake", {}).get("fingerprint")


def same_run(a: dict, b: dict) -> bool:
    """Two records (a metrics.json document or a history line) of one published run: the same fake content
    and the same run record (its id, label, finish time, host, elapsed seconds)."""
    return fake_fingerprint(a) == fake_fingerprint(b) and a.get("run") == b.get("run")


def label(record: dict) -> str:
    """The run's label (e.g. a checkpoint step); the fake set's name when it has none."""
    return str(record.get("run", {}).get("label") or set_name(record.get("fake", {})))


def finished(record: dict) -> str:
    return str(record.get("run", {}).get("finished_utc") or "?")


def short(fingerprint: str | None) -> str:
    return (fingerprint or "unknown")[:8]


def comparable(a: dict, b: dict) -> str | None:
    """Why two runs' numbers cannot be compared (another distance or ball rule), else None."""
    for key in ("metric", "inclusive"):
        if a["params"].get(key) != b["params"].get(key):
            return f"the runs differ in {key} ({a['params'].get(key)} vs {b['params'].get(key)})"
    return None
