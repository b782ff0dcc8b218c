"""Runs over time: the history file, `largeemb history`, `largeemb compare`, gates.

Results are made by the real evaluate on small data (``conftest.nightly_result``);
expected numbers are read from those metrics.json documents and recomputed
here with the formulas of the brief (SE of a difference = sqrt(SE_A² + SE_B²)).
"""

import csv
import io
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from conftest import mixture, nightly_result
from largeemb.cli import app
from largeemb.errors import GATE_FAILED, InputError
from largeemb.series.compare import compare_runs
from largeemb.series.gates import Gate, failed_gates, parse_gates, regression_against
from largeemb.series.history import HistoryWarning, append_history, history_line, read_history

runner = CliRunner()
CORE = ("precision", "recall", "density", "coverage")
FAST = {"k": 5, "plots": False, "samples": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs against real set A (the third mode-collapsed), one against real set B."""
    base = tmp_path_factory.mktemp("runs")
    real_a, real_b = mixture(500, 8, 0), mixture(500, 8, 50)
    made = {}
    for label, real, fake in (
        ("step-1000", real_a, mixture(500, 8, 1)),
        ("step-2000", real_a, mixture(500, 8, 2)),
        ("step-3000", real_a, mixture(500, 8, 3, keep=3)),
        ("other-real", real_b, mixture(500, 8, 4)),
    ):
        nightly_result(base / label, real, fake, label=label, **FAST)
        made[label] = str(base / label)
    return made


def doc_of(directory) -> dict:
    with open(os.path.join(directory, "metrics.json")) as fh:
        return json.load(fh)


def cli(*args):
    return runner.invoke(app, list(args))


# -- the history file --------------------------------------------------------


def test_history_line_keeps_what_a_comparison_needs(runs):
    doc = doc_of(runs["step-1000"])
    line = history_line(doc, runs["step-1000"])
    assert json.loads(json.dumps(line)) == line  # one JSON line
    assert line["run"]["label"] == "step-1000" and line["run"]["finished_utc"].endswith("Z")
    assert line["result_dir"] == os.path.abspath(runs["step-1000"])
    assert (
        line["real"]["fingerprint"] == doc["real"]["fingerprint"]
        and line["fake"]["fingerprint"] == doc["fake"]["fingerprint"]
    )
    assert line["real"]["source"] == doc["real"]["source"] and "reference" in line["real"]
    assert (
        line["by_k"] == doc["by_k"]
        and line["params"] == doc["params"]
        and line["metrics"]["fd"] == doc["metrics"]["fd"]
    )
    assert line["standard_errors_given_real"] == doc["standard_errors_given_real"]
    assert line["version"] == doc["versions"]["largeemb"]
    same = compare_runs(line, doc)
    assert same.paired and all(row.diff == 0 for row in same.rows)


def _append_big(path, tag, barrier):
    barrier.wait()  # all three start appending at once
    append_history(
        path, {"tag": tag, "by_k": {}, "params": {}, "real": {}, "fake": {}, "metrics": {}, "pad": tag * 300_000}
    )


def test_three_concurrent_appends_give_three_whole_lines(tmp_path):
    path = str(tmp_path / "history.jsonl")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(3)
    workers = [context.Process(target=_append_big, args=(path, tag, barrier)) for tag in "abc"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    with open(path, "rb") as fh:
        raw = fh.read()
    assert raw.count(b"\n") == 3
    lines = read_history(path)
    assert sorted(line["tag"] for line in lines) == ["a", "b", "c"]
    assert all(line["pad"] == line["tag"] * 300_000 for line in lines)


def test_an_append_waits_for_the_lock(tmp_path):
    """While another holder has the file locked, an append does not write; it does once the lock goes."""
    import fcntl

    path = tmp_path / "history.jsonl"
    path.write_text("")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from largeemb.series.history import append_history; "
        "append_history(sys.argv[2], {'by_k': {}, 'params': {}, 'real': {}, 'fake': {}, 'metrics': {}})"
    )
    with open(path, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        child = subprocess.Popen(
            [sys.executable, "-c", code, os.getcwd(), str(path)], env={**os.environ, "PYTHONPATH": os.getcwd()}
        )
        time.sleep(1.5)  # the child has started and is waiting
        assert path.read_bytes() == b"" and child.poll() is None
    assert child.wait(30) == 0
    assert len(read_history(str(path))) == 1


def test_a_torn_last_line_breaks_neither_reading_nor_the_next_append(tmp_path, runs):
    path = str(tmp_path / "history.jsonl")
    for label in ("step-1000", "step-2000"):
        append_history(path, history_line(doc_of(runs[label]), runs[label]))
    whole = json.dumps(history_line(doc_of(runs["step-3000"]), runs["step-3000"]))
    with open(path, "a") as fh:
        fh.write(whole[: len(whole) // 2])  # a run killed mid-write
    with pytest.warns(HistoryWarning, match="line 3 is torn"):
        assert [line["run"]["label"] for line in read_history(path)] == ["step-1000", "step-2000"]
    append_history(path, history_line(doc_of(runs["other-real"]), runs["other-real"]))
    with pytest.warns(HistoryWarning, match="line 3"):
        labels = [line["run"]["label"] for line in read_history(path)]
    assert labels == ["step-1000", "step-2000", "other-real"]
    with open(path) as fh:
        assert fh.read().splitlines()[3].startswith('{"history_version"')  # the new line starts on its own line


# -- largeemb history -----------------------------------------------------------


@pytest.mark.slow
def test_history_command_table_csv_json_and_pages(runs, tmp_path):
    path, out = str(tmp_path / "history.jsonl"), str(tmp_path / "pages")
    order = ("step-1000", "step-2000", "step-3000", "other-real")
    added = cli("history", path, *(a for label in order for a in ("--add", runs[label])), "--out", out)
    assert added.exit_code == 0, added.output
    assert "2 different real sets" in added.stderr  # one series per real set, and a warning
    docs = {label: doc_of(runs[label]) for label in order}
    for label, doc in docs.items():
        row = next(line for line in added.stdout.splitlines() if f" {label} " in line)
        for name in CORE:
            assert f"{doc['by_k']['5'][name]:.3f} ± {doc['standard_errors_given_real']['5'][name]:.3f}" in row
        assert f"{doc['metrics']['fd']:.3f}" in row
    # The default baseline: the first run against the last run's real set (here its only one).
    assert [line.split()[1] for line in added.stdout.splitlines() if line.startswith("* ")] == ["other-real"]

    table = list(csv.DictReader(io.StringIO(cli("history", path, "--csv", "--baseline", "step-2000").stdout)))
    assert [row["label"] for row in table] == list(order)
    for row in table:
        doc = docs[row["label"]]
        assert float(row["precision"]) == doc["by_k"]["5"]["precision"]
        assert float(row["coverage_se"]) == doc["standard_errors_given_real"]["5"]["coverage"]
        assert row["real_fingerprint"] == doc["real"]["fingerprint"] and (row["baseline"] == "True") == (
            row["label"] == "step-2000"
        )
    as_json = json.loads(cli("history", path, "--json").stdout)
    assert as_json["k"] == 5 and [r["fd"] for r in as_json["runs"]] == [docs[label]["metrics"]["fd"] for label in order]

    with open(os.path.join(out, "trend.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "history.html")) as fh:
        page = fh.read()
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
    assert all(label in page for label in order)
    again = cli("history", path, "--add", runs["step-1000"], "--out", out)  # its own pages are rewritten
    assert again.exit_code == 0 and "already" in again.stderr and len(read_history(path)) == len(order)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "trend.png").write_bytes(b"someone else's")
    refused = cli("history", path, "--out", str(foreign))
    assert (
        refused.exit_code == 2
        and "--force" in refused.stderr
        and (foreign / "trend.png").read_bytes() == b"someone else's"
    )
    for bad in (("--baseline", "no-such-run"), ("--k", "10"), ("--csv", "--json")):
        result = cli("history", path, *bad)
        one_line = result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert result.exit_code == 2 and one_line, result.stderr
    assert cli("history", str(tmp_path / "absent.jsonl")).exit_code == 2


# -- largeemb compare ----------------------------------------------------------------


def _with_given_real_scaled(directory, factor):
    """Make the given-real SEs differ from the others, so the test sees which ones compare used."""
    doc = doc_of(directory)
    doc["standard_errors_given_real"] = {
        k: {n: v * factor for n, v in m.items()} for k, m in doc["standard_errors_given_real"].items()
    }
    with open(os.path.join(directory, "metrics.json"), "w") as fh:
        json.dump(doc, fh)
    return doc


def _printed(output: str, name: str) -> list[float]:
    """A metric's row of the compare table: A, B, B − A, SE, z."""
    row = next(line for line in output.splitlines() if line.split()[1:2] == [name])
    return [float(cell.replace("−", "-")) for cell in row.split()[2:7]]


def test_compare_paired_uses_the_standard_errors_given_the_real_set(runs, tmp_path):
    import shutil

    a, b = (shutil.copytree(runs[label], tmp_path / label) for label in ("step-1000", "step-2000"))
    doc_a, doc_b = _with_given_real_scaled(a, 0.5), _with_given_real_scaled(b, 0.5)
    result = cli("compare", str(a), str(b))
    assert result.exit_code == 0, result.output
    assert "paired" in result.stdout and "unpaired" not in result.stdout
    for name in CORE:
        va, vb = doc_a["by_k"]["5"][name], doc_b["by_k"]["5"][name]
        se = math.hypot(doc_a["standard_errors_given_real"]["5"][name], doc_b["standard_errors_given_real"]["5"][name])
        shown = _printed(result.stdout, name)
        assert shown[:4] == pytest.approx([va, vb, vb - va, se], abs=6e-5)
        assert shown[4] == pytest.approx((vb - va) / se, abs=6e-3)
    assert _printed(result.stdout.replace("no test", "nan nan"), "fd")[2] == pytest.approx(
        doc_b["metrics"]["fd"] - doc_a["metrics"]["fd"], abs=6e-5
    )


def test_compare_unpaired_uses_the_standard_errors_of_both_samples(runs, tmp_path):
    import shutil

    a, b = (shutil.copytree(runs[label], tmp_path / label) for label in ("step-1000", "other-real"))
    doc_a, doc_b = _with_given_real_scaled(a, 0.5), _with_given_real_scaled(b, 0.5)
    result = cli("compare", str(a), str(b))
    assert result.exit_code == 0 and "unpaired" in result.stdout
    for name in CORE:
        se = math.hypot(doc_a["standard_errors"]["5"][name], doc_b["standard_errors"]["5"][name])
        assert _printed(result.stdout, name)[3] == pytest.approx(se, abs=6e-5)


def test_fail_on_regression_names_each_worse_metric_and_exits_4(runs):
    worse = cli("compare", runs["step-1000"], runs["step-3000"], "--fail-on-regression", "3")
    assert worse.exit_code == GATE_FAILED == 4, worse.output
    failing = [line for line in worse.stdout.splitlines() if line.startswith("regression: ")]
    names = {line.split()[1] for line in failing}
    assert {"recall", "coverage"} <= names  # 5 of 8 modes dropped: the real rows of those modes are lost
    a, b = doc_of(runs["step-1000"]), doc_of(runs["step-3000"])
    line = next(line for line in failing if line.split()[1] == "recall")
    assert line.startswith(
        f"regression: recall {a['by_k']['5']['recall']:.3f} → {b['by_k']['5']['recall']:.3f} (−"
    ) and line.endswith("< −3) at k=5")
    better = cli("compare", runs["step-3000"], runs["step-1000"], "--fail-on-regression", "3")
    assert better.exit_code == 0 and "regression:" not in better.stdout


def test_compare_refuses_bad_input_in_one_line(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    other_k = tmp_path / "other-k"
    nightly_result(other_k, mixture(300, 8, 0), mixture(300, 8, 1), k=7, plots=False, samples=False)
    for args in (
        (str(tmp_path / "absent"), runs["step-1000"]), (str(empty), runs["step-1000"]),
        (runs["step-1000"], str(other_k)), (runs["step-1000"], runs["step-2000"], "--fail-on-regression", "-1"),
    ):
        result = cli("compare", *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and not result.stdout


# -- gates ---------------------------------------------------------------------------


def test_parse_gates_reads_the_forms_and_refuses_the_rest():
    assert parse_gates("precision<0.6, recall@10<=0.5,fd>80,coverage >= 1e-1") == [
        Gate("precision", "<", 0.6), Gate("recall", "<=", 0.5, 10), Gate("fd", ">", 80.0), Gate("coverage", ">=", 0.1),
    ]
    for bad in ("precision<<0.6", "precison<0.6", "fd@5>1", "recall<abc", "recall=0.5"):
        with pytest.raises(InputError) as caught:
            parse_gates(bad)
        assert repr(bad) in str(caught.value) and "< <= > >=" in str(caught.value) and "precision" in str(caught.value)
    with pytest.raises(InputError, match="no gate"):
        parse_gates(" , ")


def test_failed_gates_one_line_per_failure(runs):
    doc = doc_of(runs["step-1000"])
    precision, fd = doc["by_k"]["5"]["precision"], doc["metrics"]["fd"]
    assert failed_gates(doc, parse_gates(f"precision<{precision - 0.01},fd>{fd + 1}")) == []
    failures = failed_gates(
        doc, parse_gates(f"precision<{precision + 0.01},fd>{fd - 1},recall@5<=1,recall@10<0.5,kid>0")
    )
    assert failures[0] == f"gate failed: precision {precision:.4g} < {precision + 0.01:g} at k=5"
    assert failures[1].startswith("gate failed: fd ") and failures[2].startswith("gate failed: recall ")
    assert "cannot be checked" in failures[3] and "k=10" in failures[3] and "cannot be checked" in failures[4]
    assert len(failures) == 5


def test_regression_against_the_previous_run_of_the_same_real_set(runs):
    lines = [history_line(doc_of(runs[label]), runs[label]) for label in ("step-1000", "other-real")]
    tonight = doc_of(runs["step-3000"])
    failing = regression_against(lines, tonight, 3)
    assert failing and all(line.startswith("regression: ") for line in failing)
    # Its own line is passed over:
    assert failing == regression_against([*lines, history_line(tonight, runs["step-3000"])], tonight, 3)
    assert regression_against(lines[1:], tonight, 3) == []  # nothing earlier against this real set
    assert regression_against(lines, doc_of(runs["step-2000"]), 3) == []  # same distribution: no regression
    assert regression_against(lines, tonight, 3, baseline_label="other-real")  # named baseline (unpaired)
    with pytest.raises(InputError, match="no-such"):
        regression_against(lines, tonight, 3, baseline_label="no-such")


def test_trend_figure_keeps_real_sets_apart_and_marks_the_baseline():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from largeemb.report.trend import Z95, trend_figure

    fig, axes = plt.subplots(2, 1)
    values = {"recall": np.array([0.9, 0.8, 0.85, 0.5]), "fd": np.array([1.0, 2.0, 1.5, 9.0])}
    errors = {"recall": np.array([0.01, 0.02, 0.01, 0.03])}
    assert (
        trend_figure(
            ["a", "b", "c", "d"], values, errors, series=[0, 0, 0, 1], series_names=["r1", "r2"], baseline=1, axes=axes
        )
        is fig
    )
    drawn = [line.get_xdata().tolist() for line in axes[0].lines if line.get_marker() == "o"]
    assert drawn == [[0, 1, 2], [3]]  # no line from one real set to the other
    band = axes[0].collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(0.9 + Z95 * 0.01) and band[:, 1].min() == pytest.approx(0.8 - Z95 * 0.02)
    star = [line for line in axes[1].lines if line.get_marker() == "*"]
    assert star and star[0].get_xdata().tolist() == [1] and star[0].get_ydata().tolist() == [2.0]
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["a", "b", "c", "d"]
    plt.close(fig)
