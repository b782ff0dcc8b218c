"""The history's files for people: ``trend.png`` and a self-contained ``history.html``.

Both are views of the history file, rewritten each time (a nightly job
re-renders them after every run); a directory holding files by these names
that this command did not write is refused without ``force``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from largeemb.errors import InputError
from largeemb.io.output import OutputLock, Staging
from largeemb.report import html
from largeemb.report.definitions import CORE, DEFINITIONS
from largeemb.series import record
from largeemb.series.table import HistoryTable

TREND_PNG, HISTORY_HTML = "trend.png", "history.html"
GENERATOR = "largeemb history"
PANELS = (*CORE, "fd")


def history_figure(table: HistoryTable):
    from largeemb.report.trend import trend_figure as draw

    rows = table.rows
    values = {name: np.array([np.nan if r[name] is None else r[name] for r in rows], float) for name in PANELS}
    errors = {
        name: np.array([np.nan if r[f"{name}_se"] is None else r[f"{name}_se"] for r in rows], float) for name in CORE
    }
    names = [
        f"{record.short(fp)} ({next(r['real_source'] for r in rows if r['real_fingerprint'] == fp)})"
        for fp in table.series
    ]
    return draw(
        [r["label"] for r in rows], values, errors, series=[table.series_of(r) for r in rows], series_names=names,
        baseline=table.baseline, title=f"{len(rows)} runs at k={table.k}",
    )


def history_page(table: HistoryTable, png: bytes) -> str:
    header = ["", "label", "finished (UTC)", *CORE, "FD", "real set", "result"]
    numeric = tuple(range(3, 3 + len(CORE) + 1))
    cells = [
        [
            "★" if row["baseline"] else "", row["label"], row["finished_utc"].replace("T", " ").rstrip("Z"),
            *(
                html.Raw(f"{row[n]:.4f}<small> ± {row[f'{n}_se']:.4f}</small>")
                if row[f"{n}_se"] is not None
                else html.number(row[n])
                for n in CORE
            ),
            html.number(row["fd"]), record.short(row["real_fingerprint"]), _result(row["result_dir"]),
        ]
        for row in table.rows
    ]
    baseline = table.rows[table.baseline]["label"] if table.baseline is not None else None
    warnings = "".join(f"<li>{html.esc(w)}</li>" for w in table.warnings)
    definitions = "".join(f"<li><b>{name}</b>: {html.esc(DEFINITIONS[name])}</li>" for name in PANELS)
    body = (
        f"<h1>Evaluation history</h1><p class='sub'>{len(table.rows)} runs at k={table.k}; "
        f"baseline {html.esc(baseline)}; "
        f"written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>"
        + (f"<ul class='warnings'>{warnings}</ul>" if warnings else "")
        + html.image(
            html.png_uri(png), "metrics by run",
            "One panel per metric, runs in file order; bands: 95% with the real set fixed; "
            "star and dashed line: the baseline run.",
        )
        + "<h2>Runs</h2><p class='note'>Values ± one standard error with the real set fixed. ★ marks the baseline.</p>"
        + html.table(
            header, cells, numeric=numeric, marked=(table.baseline,) if table.baseline is not None else (),
            classes={1: "name", 2: "nowrap", len(header) - 1: "def nowrap"},
        )
        + f"<h2>Metrics</h2><ul>{definitions}</ul>"
    )
    return html.page("largeemb: evaluation history", body, generator=GENERATOR)


def _result(directory: str | None):
    """The result directory's last part, the whole path on hover (the CSV and JSON forms hold it whole)."""
    if not directory:
        return ""
    return html.Raw(f'<span title="{html.esc(directory)}">{html.esc(os.path.basename(directory.rstrip("/")))}</span>')


def write_history_outputs(table: HistoryTable, out: str, force: bool = False) -> list[str]:
    """Write ``trend.png`` and ``history.html`` into ``out`` together (staged, under the directory's lock)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file", "for the history pages", "give a directory path")
    page_path = os.path.join(out, HISTORY_HTML)
    foreign = [name for name in (TREND_PNG, HISTORY_HTML) if os.path.exists(os.path.join(out, name))]
    if foreign and not force and not html.made_by(page_path, GENERATOR):
        raise InputError(f"{', '.join(foreign)} already exist and were not written by `largeemb history`", f"in {out}",
                         "choose another --out or pass --force to replace them")
    os.makedirs(out, exist_ok=True)
    png = html.figure_png(history_figure(table))
    with OutputLock(out), Staging(out) as staging:
        with open(staging.file(TREND_PNG), "wb") as fh:
            fh.write(png)
        with open(staging.file(HISTORY_HTML), "w", encoding="utf-8") as fh:
            fh.write(history_page(table, png))
        staging.publish(force=True, last=HISTORY_HTML)
    return [os.path.join(out, TREND_PNG), page_path]
