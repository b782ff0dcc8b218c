"""Compare two metrics.json files key by key, bit for bit.

    python scripts/compare_metrics.py BEFORE.json AFTER.json [--ignore timings_s --ignore real.reference]

Prints every key path whose value differs (numbers compared exactly: a float
that moved in its last bit is a difference), that exists on one side only, or
whose keys come in another order (the JSON order a reader sees). Wall times
(``timings_s``) are ignored by default; ``--ignore`` adds dotted paths (a
reference's own path, say, when the two runs built it in different places).
Exit status 1 when anything differs, 0 when the files agree.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

#: Wall time, never the same twice.
ALWAYS_IGNORED = ("timings_s",)


def differences(before, after, path: str = "", ignored: frozenset = frozenset()) -> list[str]:
    """Key paths (dotted; list items as [i]) where ``before`` and ``after`` differ."""
    if path in ignored:
        return []
    where = path or "(top)"
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in before:
            if key not in after and _join(path, key) not in ignored:
                out.append(f"{_join(path, key)}: only in the first")
        for key in after:
            if key not in before and _join(path, key) not in ignored:
                out.append(f"{_join(path, key)}: only in the second")
        for key in before:
            if key in after:
                out += differences(before[key], after[key], _join(path, key), ignored)
        shared_before = [k for k in before if k in after and _join(path, k) not in ignored]
        shared_after = [k for k in after if k in before and _join(path, k) not in ignored]
        if shared_before != shared_after:
            out.append(f"{where}: keys in another order ({shared_before} vs {shared_after})")
        return out
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{where}: {len(before)} items vs {len(after)}"]
        return [d for i, (a, b) in enumerate(zip(before, after)) for d in differences(a, b, f"{path}[{i}]", ignored)]
    if _same(before, after):
        return []
    return [f"{where}: {before!r} vs {after!r}"]


def _same(a, b) -> bool:
    if type(a) is not type(b):  # 1 and 1.0 are not the same JSON
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument(
        "--ignore", action="append", default=[], metavar="PATH", help="a dotted key path to leave out (repeatable)"
    )
    args = parser.parse_args(argv)
    with open(args.before) as fh:
        before = json.load(fh)
    with open(args.after) as fh:
        after = json.load(fh)
    found = differences(before, after, ignored=frozenset(ALWAYS_IGNORED + tuple(args.ignore)))
    for line in found:
        print(line)
    if not found:
        print(f"same: {args.before} and {args.after} (ignoring {', '.join(ALWAYS_IGNORED + tuple(args.ignore))})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
