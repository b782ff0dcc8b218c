"""A history file as a table of runs: one k, one row per run, the baseline marked.

Runs against different real sets (content fingerprints) are kept apart: each
real set is its own series (a block of the text table, its own line in the
figure), and a warning says so, because their numbers measure the fake sets
against different yardsticks. Rows stay in file order (the order runs
finished and appended).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from largeemb.errors import InputError
from largeemb.io.results import set_source
from largeemb.report.definitions import CORE
from largeemb.series import record

#: The columns of ``--csv`` and the keys of ``--json``, in order.
COLUMNS = (
    "label", "finished_utc", "host", "k", *(f"{m}{s}" for m in CORE for s in ("", "_se")), "fd",
    "baseline", "real_fingerprint", "fake_fingerprint", "real_source", "fake_source", "result_dir", "version",
)


@dataclass
class HistoryTable:
    k: str
    rows: list[dict]
    series: list[str]  # real fingerprints, in order of first appearance
    baseline: int | None
    warnings: list[str] = field(default_factory=list)

    def series_of(self, row: dict) -> int:
        return self.series.index(row["real_fingerprint"])


def history_table(lines: list[dict], k: int | None = None, baseline: str | None = None) -> HistoryTable:
    """The runs of ``lines`` at ``k`` (default: the primary k of the last run).

    ``baseline``: the label of the baseline run (its last line); default the
    first run against the same real set as the last run.
    """
    if not lines:
        raise InputError(
            "the history holds no runs", "in the history file", "append runs with `largeemb evaluate --history FILE`"
        )
    key = str(k) if k is not None else record.ks(lines[-1])[0]
    kept = [line for line in lines if key in line["by_k"]]
    warnings = []
    if len(kept) < len(lines):
        left = [record.label(line) for line in lines if key not in line["by_k"]]
        warnings.append(
            f"{len(left)} run(s) have no k={key} and are left out: "
            f"{', '.join(left[:10])}{' …' if len(left) > 10 else ''}"
        )
    if not kept:
        raise InputError(
            f"no run in the history has k={key}", "in the history file", "pass a --k the runs were evaluated with"
        )
    rows = [_row(line, key) for line in kept]
    series = list(dict.fromkeys(row["real_fingerprint"] for row in rows))
    if len(series) > 1:
        warnings.append(
            f"the runs use {len(series)} different real sets ({', '.join(record.short(s) for s in series)}): "
            "each is its own series; compare values within a series only"
        )
    if baseline is None:
        base = next(i for i, row in enumerate(rows) if row["real_fingerprint"] == rows[-1]["real_fingerprint"])
    else:
        matches = [i for i, row in enumerate(rows) if row["label"] == baseline]
        if not matches:
            raise InputError(
                f"no run labelled {baseline!r} with k={key}", "in the history file",
                "pass --baseline with a label the table shows",
            )
        base = matches[-1]
    for i, row in enumerate(rows):
        row["baseline"] = i == base
    return HistoryTable(key, rows, series, base, warnings)


def _row(line: dict, k: str) -> dict:
    row = {
        "label": record.label(line),
        "finished_utc": record.finished(line),
        "host": line.get("run", {}).get("host"),
        "k": int(k),
    }
    for name in CORE:
        row[name] = record.value(line, name, k)
        row[f"{name}_se"] = record.standard_error(line, name, k, given_real=True)
    row.update(
        fd=record.value(line, "fd"),
        baseline=False,
        real_fingerprint=record.real_fingerprint(line),
        fake_fingerprint=record.fake_fingerprint(line),
        real_source=set_source(line.get("real", {})),
        fake_source=set_source(line.get("fake", {})),
        result_dir=line.get("result_dir"),
        version=line.get("version"),
    )
    return row


def as_csv(table: HistoryTable) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table.rows)
    return buffer.getvalue()


def as_json(table: HistoryTable) -> str:
    return json.dumps({"k": int(table.k), "columns": list(COLUMNS), "runs": table.rows}, indent=2)


def text_table(table: HistoryTable) -> list[str]:
    """The table for a terminal: one block per real set, values ± 1 SE given the real set."""
    header = ["", "label", "finished (UTC)", *(f"{name} ± SE" for name in CORE), "FD"]
    cells = [
        ["*" if row["baseline"] else "", row["label"], row["finished_utc"].replace("T", " ").rstrip("Z"),
         *(_pm(row[name], row[f"{name}_se"]) for name in CORE), "–" if row["fd"] is None else f"{row['fd']:.3f}"]
        for row in table.rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def align(texts):
        return "  ".join(t.ljust(w) if i < 3 else t.rjust(w) for i, (t, w) in enumerate(zip(texts, widths)))

    lines = []
    for index, fingerprint in enumerate(table.series):
        mine = [c for c, row in zip(cells, table.rows) if row["real_fingerprint"] == fingerprint]
        source = next(row["real_source"] for row in table.rows if row["real_fingerprint"] == fingerprint) or "?"
        if index:
            lines.append("")
        lines.append(f"real set {record.short(fingerprint)} ({source}), k={table.k}, {len(mine)} run(s):")
        lines += [align(header), *(align(c) for c in mine)]
    lines.append("(* baseline; ± one standard error with the real set fixed)")
    return lines


def _pm(value, se) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} ± {se:.3f}" if se is not None else f"{value:.3f}"
