"""``report.html``: one self-contained page a person opens to read a result.

The summary line, a metrics table (value, both standard errors, a one-line
definition), the sets, every figure in the directory (embedded as data URIs),
the rows to look at first (from ``samples.zarr``), warnings, parameters,
timings and versions. Nothing is fetched when the page opens.
"""

from __future__ import annotations

import os
import time

from largeemb.errors import InputError
from largeemb.io.output import OutputLock, Staging
from largeemb.io.results import read_metrics, set_name, set_source
from largeemb.report import html
from largeemb.report.definitions import DEFINITIONS, PER_K
from largeemb.report.stage import BALL_COUNTS_PNG, K_SWEEP_PNG, PCA_PNG, TSNE_PNG

REPORT_FILE = "report.html"
GENERATOR = "largeemb report"
#: Rows of each "worst rows" table.
WORST_ROWS = 10
CAPTIONS = {
    PCA_PNG: (
        "Both sets projected on the real set's first two principal axes: "
        "where fake rows fall against the real density."
    ),
    TSNE_PNG: "t-SNE of a seeded subsample of both sets: an island of one colour is a mode the other set lacks.",
    K_SWEEP_PNG: "The four metrics at each evaluated k, ±1 standard error.",
    BALL_COUNTS_PNG: "How many real k-NN balls hold each fake row; the first bar (no ball) is 1 − precision.",
}


def write_report(result_dir: str, metrics: dict | None = None, into: str | None = None) -> str:
    """Write ``report.html`` for the result in ``result_dir``; returns its path.

    ``metrics``: the ``metrics.json`` document (default: read from the
    directory). ``into``: a staging directory that holds the result's files
    (figures, ``samples.zarr``) and gets the page, written plainly: what
    ``evaluate_to`` passes while it holds the lock, as
    ``write_report(out, result.to_dict(), into=staging.path)``. Without it the
    page is published into ``result_dir`` under its lock, replacing an earlier one.
    """
    if into is not None:
        path = os.path.join(into, REPORT_FILE)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(render_report(result_dir, metrics, files_in=into))
        return path
    read_metrics(result_dir)  # a clear error before the lock when it is no result
    with OutputLock(result_dir), Staging(result_dir) as staging:
        with open(staging.file(REPORT_FILE), "w", encoding="utf-8") as fh:
            fh.write(render_report(result_dir, metrics))
        staging.publish(force=True, last=REPORT_FILE)
    return os.path.join(result_dir, REPORT_FILE)


def render_report(result_dir: str, metrics: dict | None = None, files_in: str | None = None) -> str:
    """The page's HTML; figures and samples are read from ``files_in`` (default ``result_dir``)."""
    files_in = files_in or result_dir
    doc = metrics if metrics is not None else read_metrics(files_in)
    real, fake, run = doc["real"], doc["fake"], doc.get("run") or {}
    k = str(doc["params"]["k"][0])
    title = f"{set_name(fake)} against {set_name(real)}"
    title = f"{run['label']}: {title}" if run.get("label") else title
    facts = [
        f"finished {run['finished_utc']}" if run.get("finished_utc") else None, run.get("host"),
        f"{_elapsed(doc):.1f} s" if _elapsed(doc) is not None else None,
        f"largeemb {doc.get('versions', {}).get('largeemb', '?')}",
    ]
    body = [
        f"<h1>{html.esc(title)}</h1><p class='sub'>{html.esc(' · '.join(f for f in facts if f))}</p>",
        f"<div class='summary'>{html.esc(summary_line(doc))}</div>",
        _warnings(doc.get("warnings") or []),
        "<h2>Metrics</h2>", _metrics_table(doc, k), _by_k(doc), "<h2>Sets</h2>", _sets(doc),
        _figures(files_in),
        _worst(files_in, result_dir),
        "<h2>Parameters and timings</h2><div class='columns'>", _pairs("parameter", doc.get("params", {})),
        _pairs("seconds", doc.get("timings_s", {}), numeric=True), _pairs("version", doc.get("versions", {})), "</div>",
        (
            f"<footer>Written by largeemb {html.esc(doc.get('versions', {}).get('largeemb', ''))} on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
            f"from {html.esc(os.path.abspath(result_dir))}/metrics.json. "
            "This page is one file: its figures are embedded and it loads nothing from elsewhere.</footer>"
        ),
    ]
    return html.page(f"largeemb: {title}", "\n".join(body), generator=GENERATOR)


#: The summary line's short names of the four k-NN metrics.
SHORT = {"precision": "P", "recall": "R", "density": "D", "coverage": "C"}


def summary_line(doc: dict) -> str:
    """``k=5  P 0.677±0.004  R 0.670±0.005  D 0.665±0.009  C 0.569±0.006  FD 0.346``: the primary k's
    metrics, each ± its standard error (both sets taken as samples), and the Fréchet distance."""
    k = str(doc["params"]["k"][0])
    values, errors = doc["by_k"].get(k, doc["metrics"]), (doc.get("standard_errors") or {}).get(k, {})
    parts = [f"k={k}"]
    for name, short in SHORT.items():
        if name in values:
            se = errors.get(name) if isinstance(errors, dict) else None
            parts.append(f"{short} {values[name]:.3f}" + (f"±{se:.3f}" if se is not None else ""))
    if "fd" in doc["metrics"]:
        parts.append(f"FD {doc['metrics']['fd']:.4g}")
    return "  ".join(parts)


def other_metrics_line(doc: dict) -> str:
    """The primary k's other numbers (F-scores, companions), ``name value`` each: what the summary line leaves out."""
    k = str(doc["params"]["k"][0])
    values = {**doc["by_k"].get(k, {}), **doc["metrics"]}
    return "  ".join(f"{name} {value:.4f}" for name, value in values.items() if name not in SHORT and name != "fd")


def _elapsed(doc: dict) -> float | None:
    return (doc.get("run") or {}).get("elapsed_s") or doc.get("timings_s", {}).get("total")


def _warnings(warnings: list) -> str:
    if not warnings:
        return ""
    return "<ul class='warnings'>" + "".join(f"<li>{html.esc(w)}</li>" for w in warnings) + "</ul>"


def _se(doc: dict, key: str, k: str, name: str):
    errors = doc.get(key) or {}
    per_k = errors.get(k, {})
    return (
        per_k.get(name)
        if isinstance(per_k, dict) and name in per_k
        else (errors.get(name) if name not in PER_K else None)
    )


def _metrics_table(doc: dict, k: str) -> str:
    values = {**doc["metrics"], **doc["by_k"].get(k, {})}
    rows = [
        [name, html.number(value), html.number(_se(doc, "standard_errors", k, name)),
         html.number(_se(doc, "standard_errors_given_real", k, name)), DEFINITIONS.get(name, "")]
        for name, value in values.items()
        if isinstance(value, (int, float))
    ]
    header = ["metric", "value", "SE (both sets sampled)", "SE (real set fixed)", "what it measures"]
    notes = f"Per-k metrics ({', '.join(n for n in PER_K if n in values)}) at the primary k = {k}."
    notes += (
        " Standard errors: 'both sets sampled' is the error bar of this result (the real and fake rows and their"
        " k-NN radii all vary); 'real set fixed' counts the fake set's variation alone, for comparing fakes"
        " against this real set. Neither covers a metric's bias or the choice of k or embedding."
    )
    return html.table(header, rows, numeric=(1, 2, 3), classes={0: "name", 4: "def"}) + f"<p class='note'>{notes}</p>"


def _by_k(doc: dict) -> str:
    if len(doc["by_k"]) < 2:
        return ""
    names = [n for n in PER_K if any(n in v for v in doc["by_k"].values())]
    rows = [[k, *(html.number(doc["by_k"][k].get(n)) for n in names)] for k in sorted(doc["by_k"], key=int)]
    return "<h3>At each k</h3>" + html.table(["k", *names], rows, numeric=tuple(range(len(names) + 1)))


def _sets(doc: dict) -> str:
    rows = []
    for role in ("real", "fake"):
        side = doc[role]
        rows.append([role, set_source(side) or "?", html.number(side.get("rows")), html.number(side.get("dim")),
                     side.get("dtype", ""), html.Raw(f"<code>{html.esc(side.get('fingerprint', ''))}</code>")])
    table = html.table(["set", "source", "rows", "dim", "dtype", "fingerprint"], rows, numeric=(2, 3))
    reference = doc["real"].get("reference")
    return table + (
        f"<p class='note'>Real radii and moments from the reference <code>{html.esc(reference)}</code>.</p>"
        if reference
        else ""
    )


def _figures(result_dir: str) -> str:
    try:
        present = sorted(name for name in os.listdir(result_dir) if name.endswith(".png") and not name.startswith("."))
    except OSError:
        return ""
    order = [name for name in CAPTIONS if name in present] + [name for name in present if name not in CAPTIONS]
    if not order:
        return "<h2>Figures</h2><p class='note'>No figures in this result (it was run with --no-plots).</p>"
    parts = ["<h2>Figures</h2>"]
    for name in order:
        with open(os.path.join(result_dir, name), "rb") as fh:
            parts.append(
                f"<h3>{html.esc(name)}</h3>" + html.image(html.png_uri(fh.read()), name, CAPTIONS.get(name, ""))
            )
    return "".join(parts)


def _worst(files_in: str, result_dir: str) -> str:
    from largeemb.io.samples import FAKE_ORDER, REAL_ORDER, SAMPLES_STORE, read_samples, worst_rows

    head = "<h2>Rows to look at</h2>"
    if not os.path.isdir(os.path.join(files_in, SAMPLES_STORE)):
        return head + f"<p class='note'>No {SAMPLES_STORE} here (run with per-sample values on to list the rows).</p>"
    try:
        samples = read_samples(files_in)
    except InputError as exc:
        return head + f"<p class='note'>{html.esc(exc)}</p>"
    fake, real = worst_rows(samples, WORST_ROWS)
    parts = [
        head,
        f"<p class='note'>The same lists as <code>largeemb worst {html.esc(result_dir)}</code>; "
        "rows are indices into each set.</p>",
    ]
    for title, rows, order in (("Fake rows least supported by the real set", fake, FAKE_ORDER),
                               ("Real rows least covered by the fake set", real, REAL_ORDER)):
        parts.append(f"<h3>{title}</h3><p class='note'>sorted by {html.esc(order)}, k={samples['k'][0]}</p>")
        if rows:
            # Row indices as plain integers, as `largeemb worst` prints them (to paste into code).
            parts.append(
                html.table(
                    list(rows[0]),
                    [[str(v) if isinstance(v, int) else html.number(v) for v in row.values()] for row in rows],
                    numeric=tuple(range(len(rows[0]))),
                )
            )
    return "".join(parts)


def _pairs(title: str, values: dict, numeric: bool = False) -> str:
    if not values:
        return ""
    rows = [
        [
            key,
            ", ".join(map(str, value))
            if isinstance(value, list)
            else html.number(value)
            if isinstance(value, float)
            else str(value),
        ]
        for key, value in values.items()
    ]
    return "<div>" + html.table(["", title], rows, numeric=(1,) if numeric else ()) + "</div>"
