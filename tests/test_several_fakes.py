"""Several fakes in one call, each result's identity, the history it appends and the gates on it.

``largeemb evaluate REAL FAKE [FAKE ...]``: each fake's numbers equal those of
evaluating it alone; the real side is computed once; a failing fake costs the
others nothing; a resumed call appends each history line exactly once.
"""

import json
import os
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import recording, unit_hook
from largeemb.api import evaluate_to
from largeemb.batch import SUMMARY_FILE, evaluate_all, fake_names
from largeemb.cli import app
from largeemb.series.gates import parse_gates
from largeemb.series.history import read_history

runner = CliRunner()
#: metrics.json keys that carry the numbers (not where and how long they were computed).
NUMBERS = ("metrics", "by_k", "standard_errors", "params", "warnings")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A real set and three fakes drifting away from it; one fake has duplicate rows (ties)."""
    root = tmp_path_factory.mktemp("sets")
    rng = np.random.default_rng(7)
    paths = {"real": str(root / "real.npy")}
    np.save(paths["real"], rng.standard_normal((700, 6)).astype(np.float32))
    for i, shift in enumerate((0.0, 0.3, 0.6)):
        fake = rng.standard_normal((600, 6)) + shift
        if i == 1:
            fake[300:] = fake[:300]  # copies: zero radii, ties on ball boundaries
        paths[f"step{i}"] = str(root / f"step{i}.npy")
        np.save(paths[f"step{i}"], fake.astype(np.float32))
    return paths


OPTIONS = dict(k=(5, 3), plots=False, block_rows=256)


def _numbers(doc):
    return {key: doc[key] for key in NUMBERS}


def test_each_fake_equals_evaluating_it_alone(sets, tmp_path):
    fakes = [sets["step0"], sets["step1"], sets["step2"]]
    outcome = evaluate_all(sets["real"], fakes, str(tmp_path / "all"), **OPTIONS)
    assert outcome.exit_code == 0
    for fake, run in zip(fakes, outcome.runs):
        alone = evaluate_to(sets["real"], fake, str(tmp_path / f"alone-{run.name}"), **OPTIONS).to_dict()
        assert _numbers(run.document) == _numbers(alone)
        with open(os.path.join(run.out, "metrics.json")) as fh:
            assert _numbers(json.load(fh)) == _numbers(alone)
    with open(tmp_path / "all" / SUMMARY_FILE) as fh:
        summary = json.load(fh)
    assert [entry["name"] for entry in summary["runs"]] == ["step0", "step1", "step2"]
    assert summary["runs"][2]["metrics"] == outcome.runs[2].document["metrics"]


def test_from_a_reference_each_fake_equals_evaluating_it_alone(sets, tmp_path, write_zarr):
    import largeemb

    real = write_zarr("real", np.load(sets["real"]))
    ref = str(tmp_path / "ref")
    largeemb.build_reference(real, ref, k=(5, 3), block_rows=256)
    outcome = evaluate_all(ref, [sets["step0"], sets["step2"]], str(tmp_path / "all"), **OPTIONS)
    for run in outcome.runs:
        alone = evaluate_to(real, run.fake, str(tmp_path / f"alone-{run.name}"), **OPTIONS).to_dict()
        assert {key: run.document[key] for key in ("metrics", "by_k")} == {
            key: alone[key] for key in ("metrics", "by_k")
        }


def test_the_real_side_is_computed_once(sets, tmp_path):
    fakes = [sets["step0"], sets["step1"], sets["step2"]]
    together, alone = [], []
    with unit_hook(recording(together)):
        evaluate_all(sets["real"], fakes, str(tmp_path / "all"), **OPTIONS)
    with unit_hook(recording(alone)):
        evaluate_to(sets["real"], sets["step0"], str(tmp_path / "alone"), **OPTIONS)

    def count(names, prefix):
        return sum(name.startswith(prefix) for name in names)

    assert count(alone, "radii-real-within-") > 0
    assert count(together, "radii-real-within-") == count(alone, "radii-real-within-")  # once, not once per fake
    assert count(together, "radii-fake-within-") == 3 * count(alone, "radii-fake-within-")


def test_names_are_unique_and_labels_follow_the_fakes(sets, tmp_path):
    assert fake_names(["a/x.zarr", "b/x.zarr/", "x.npy", "y.npz"]) == ["x", "x-2", "x-3", "y"]
    outcome = evaluate_all(
        sets["real"], [sets["step0"], sets["step0"]], str(tmp_path / "o"), labels=["1000", "2000"], **OPTIONS
    )
    assert [run.out for run in outcome.runs] == [str(tmp_path / "o" / "step0"), str(tmp_path / "o" / "step0-2")]
    assert [run.document["run"]["label"] for run in outcome.runs] == ["1000", "2000"]


def test_a_result_carries_its_identity(sets, tmp_path):
    before = time.time()
    result = runner.invoke(
        app,
        [
            "evaluate", sets["real"], sets["step1"], "--out", str(tmp_path / "o"), "--k", "5,3", "--no-plots",
            "--label", "step-1000",
        ],
    )
    assert result.exit_code == 0, result.output
    with open(tmp_path / "o" / "metrics.json") as fh:
        doc = json.load(fh)
    run = doc["run"]
    assert run["label"] == "step-1000" and run["host"] == socket.gethostname()
    finished = time.mktime(time.strptime(run["finished_utc"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before - 1 <= finished <= time.time() + 1 and 0 < run["elapsed_s"] <= time.time() - before + 1
    line = next(line for line in result.output.splitlines() if line.startswith("k="))
    se = doc["standard_errors"]["5"]
    assert line == (
        f"k=5  P {doc['by_k']['5']['precision']:.3f}±{se['precision']:.3f}  "
        f"R {doc['by_k']['5']['recall']:.3f}±{se['recall']:.3f}  "
        f"D {doc['by_k']['5']['density']:.3f}±{se['density']:.3f}  "
        f"C {doc['by_k']['5']['coverage']:.3f}±{se['coverage']:.3f}  "
        f"FD {doc['metrics']['fd']:.4g}"
    )
    assert os.path.isfile(tmp_path / "o" / "report.html")


def test_default_label_is_the_fakes_name(sets, tmp_path):
    doc = evaluate_to(sets["real"], sets["step2"], str(tmp_path / "o"), **OPTIONS).to_dict()
    assert doc["run"]["label"] == "step2"


def test_a_failing_fake_costs_the_others_nothing_and_resume_appends_each_line_once(sets, tmp_path):
    bad = str(tmp_path / "bad.npy")
    rows = np.load(sets["step1"])
    rows[5, 2] = np.nan
    np.save(bad, rows)
    out, history = str(tmp_path / "o"), str(tmp_path / "h.jsonl")
    args = [
        "evaluate", sets["real"], sets["step0"], bad, sets["step2"], "--out", out, "--k", "5", "--no-plots",
        "--history", history,
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 2
    assert re.search(r"1 of 3 fake sets failed \(bad\)", first.output)
    assert os.path.isfile(os.path.join(out, "step0", "metrics.json")) and os.path.isfile(
        os.path.join(out, "step2", "metrics.json")
    )
    assert not os.path.exists(os.path.join(out, "bad", "metrics.json"))
    assert [line["run"]["label"] for line in read_history(history)] == ["step0", "step2"]
    with open(os.path.join(out, SUMMARY_FILE)) as fh:
        assert "error" in json.load(fh)["runs"][1]

    np.save(bad, np.load(sets["step1"]))  # fixed
    second = runner.invoke(app, args + ["--resume"])
    assert second.exit_code == 0, second.output
    assert [line["run"]["label"] for line in read_history(history)] == ["step0", "step2", "bad"]
    third = runner.invoke(app, args + ["--resume"])  # everything finished: nothing evaluated, nothing appended
    assert third.exit_code == 0 and third.output.count("already holds a finished result") == 3
    assert len(read_history(history)) == 3


def test_a_failed_gate_exits_4_after_publishing(sets, tmp_path):
    out = str(tmp_path / "o")
    result = runner.invoke(app, ["evaluate", sets["real"], sets["step2"], "--out", out, "--k", "5,3", "--no-plots",
                                 "--fail-if", "precision<0.99,recall@3>2"])
    assert result.exit_code == 4, result.output
    assert os.path.isfile(os.path.join(out, "metrics.json"))
    assert "gate failed: precision" in result.output and "recall" not in result.output.split("gate failed")[-1]


def test_a_regression_against_the_history_exits_4(sets, tmp_path):
    history, common = str(tmp_path / "h.jsonl"), ["--k", "5", "--no-plots", "--history", str(tmp_path / "h.jsonl")]
    good = runner.invoke(
        app,
        ["evaluate", sets["real"], sets["step0"], "--out", str(tmp_path / "a"), *common, "--fail-on-regression", "3"],
    )
    assert good.exit_code == 0, good.output  # no earlier run: nothing to regress from
    worse = runner.invoke(
        app,
        ["evaluate", sets["real"], sets["step2"], "--out", str(tmp_path / "b"), *common, "--fail-on-regression", "3"],
    )
    assert worse.exit_code == 4 and "regression: precision" in worse.output
    assert len(read_history(history)) == 2
    same = runner.invoke(app, ["evaluate", sets["real"], sets["step0"], "--out", str(tmp_path / "c"), *common,
                               "--fail-on-regression", "3", "--baseline", "step0"])
    assert same.exit_code == 0, same.output


def test_bad_gates_and_labels_are_refused_before_any_work(sets, tmp_path):
    out = str(tmp_path / "o")
    bad_gate = runner.invoke(app, ["evaluate", sets["real"], sets["step0"], "--out", out, "--fail-if", "precison<0.5"])
    assert bad_gate.exit_code == 2 and "precison" in bad_gate.output
    labels = runner.invoke(app, ["evaluate", sets["real"], sets["step0"], sets["step1"], "--out", out, "--label", "a"])
    assert labels.exit_code == 2 and "1 labels for 2 fake sets" in labels.output
    no_history = runner.invoke(
        app, ["evaluate", sets["real"], sets["step0"], "--out", out, "--fail-on-regression", "3"]
    )
    assert no_history.exit_code == 2 and "--history" in no_history.output
    assert not os.path.exists(out)


def test_gates_parse_as_documented():
    gates = parse_gates("precision<0.6, recall@10<=0.5,fd>80")
    assert [(g.metric, g.k, g.op, g.threshold) for g in gates] == [
        ("precision", None, "<", 0.6), ("recall", 10, "<=", 0.5), ("fd", None, ">", 80.0),
    ]


def test_resume_reuses_a_finished_result_only_while_its_inputs_are_unchanged(sets, tmp_path, write_zarr):
    """A finished result is the inputs' only while their content matches its fingerprints
    (from a store and from a reference)."""
    import largeemb

    fake = str(tmp_path / "fake.npy")
    np.save(fake, np.load(sets["step1"]))
    ref = str(tmp_path / "ref")
    largeemb.build_reference(write_zarr("real", np.load(sets["real"])), ref, k=(5,), block_rows=256)
    for real, out in ((sets["real"], str(tmp_path / "a")), (ref, str(tmp_path / "b"))):
        args = ["evaluate", real, fake, "--out", out, "--no-plots", "--resume"]
        assert runner.invoke(app, args).exit_code == 0
        again = runner.invoke(app, args)
        assert again.exit_code == 0 and "already holds a finished result" in again.output
    before = (tmp_path / "a" / "metrics.json").read_bytes()
    rows = np.load(fake)
    rows[100:200] += 1.0
    np.save(fake, rows)
    for out in (str(tmp_path / "a"), str(tmp_path / "b")):
        changed = runner.invoke(
            app, ["evaluate", sets["real"] if out.endswith("a") else ref, fake, "--out", out, "--no-plots", "--resume"]
        )
        assert changed.exit_code == 2, changed.output
        assert (
            "error: the fake set's content changed since this result was made" in changed.output
            and "--force" in changed.output
        )
    assert (tmp_path / "a" / "metrics.json").read_bytes() == before  # the old result stays


@pytest.mark.slow
def test_a_killed_three_fake_run_resumed_appends_each_history_line_once(tmp_path):
    """SIGKILL while the second fake is evaluated (the first published, maybe with its line):
    --resume ends with three whole lines."""
    import signal
    import subprocess
    import sys

    rng = np.random.default_rng(11)
    real = str(tmp_path / "real.npy")
    np.save(real, rng.standard_normal((6000, 32)).astype(np.float32))
    fakes = []
    for i in range(3):
        fakes.append(str(tmp_path / f"f{i}.npy"))
        np.save(fakes[-1], (rng.standard_normal((6000, 32)) + 0.1 * i).astype(np.float32))
    out, history = tmp_path / "o", str(tmp_path / "h.jsonl")
    command = [
        sys.executable, "-m", "largeemb", "evaluate", real, *fakes, "--out", str(out), "--no-plots", "--history",
        history, "--block-rows", "1024",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while run.poll() is None and time.time() < deadline and not (out / "f1" / ".work").is_dir():
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert (out / "f0" / "metrics.json").is_file() and not (out / "f2" / "metrics.json").exists()
    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    lines = read_history(history)
    assert sorted(line["run"]["label"] for line in lines) == ["f0", "f1", "f2"]
    with open(history) as fh:
        assert all(json.loads(text) for text in fh.read().splitlines())  # no torn line


@pytest.mark.slow
def test_two_worker_processes_change_nothing_and_start_one_cluster(sets, tmp_path, monkeypatch):
    """Several fakes on a LocalCluster (.npy files, mapped by each worker) equal the in-process call, and the
    real side and every fake share one cluster (one each before: four starts for three fakes)."""
    from largeemb.run import cluster

    fakes = [sets["step0"], sets["step1"], sets["step2"]]
    in_process = evaluate_all(sets["real"], fakes, str(tmp_path / "threads"), **OPTIONS)
    started, local_cluster = [], cluster.LocalCluster

    def counted(*args, **kwargs):
        started.append(kwargs["n_workers"])
        return local_cluster(*args, **kwargs)

    monkeypatch.setattr(cluster, "LocalCluster", counted)
    outcome = evaluate_all(sets["real"], fakes, str(tmp_path / "workers"), workers=2, threads_per_worker=1, **OPTIONS)
    assert outcome.exit_code == 0 and started == [2]
    for got, want in zip(outcome.runs, in_process.runs):
        assert _numbers(got.document) == _numbers(want.document), got.name
