"""Per-class evaluation (``--real-labels``/``--fake-labels``, ``real_labels``/``fake_labels``).

Each class's numbers must equal those of evaluating that class's rows alone (the oracle: the
plain engine on the rows picked out by NumPy, then the float64 brute force and the prdc package),
``class_averaged`` must be their mean, classes that cannot be compared are warned about and left
out, block and split chunk sizes change nothing, and bad labels are one-line errors before any work.
"""

import json
import os
import warnings

import numpy as np
import pytest
import zarr
from prdc import compute_prdc

import largeemb
import oracle
from conftest import cli_evaluate, failing_units, mixture, one_error_line, recording, same_metrics, unit_hook
from largeemb.api import evaluate_to
from largeemb.errors import InputError, LargeembWarning
from largeemb.io import split
from largeemb.io.labels import Labels
from largeemb.io.store import open_source

KEYS = ("precision", "recall", "density", "coverage")
OPTIONS = dict(k=(5, 3), plots=False, block_rows=128)


@pytest.fixture(scope="module")
def sets():
    """Three shared classes (class 1 with duplicate rows: ties), a class only the fake set has,
    and class 9 with too few real rows for k=5."""
    rng = np.random.default_rng(11)
    real, fake = mixture(700, 6, seed=1), mixture(600, 6, seed=2, shift=0.3)
    real_labels = rng.integers(0, 3, len(real))
    fake_labels = rng.integers(0, 4, len(fake))
    real_labels[:4], fake_labels[-20:] = 9, 9
    ones = np.flatnonzero(real_labels == 1)
    real[ones[len(ones) // 2 :]] = real[ones[: len(ones) - len(ones) // 2]]  # copies: zero radii, ties
    fake_ones = np.flatnonzero(fake_labels == 1)
    fake[fake_ones[:50]] = real[ones[:50]]  # fakes that copy real rows: distances of exactly 0
    return real, fake, real_labels, fake_labels


def quiet_evaluate(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LargeembWarning)
        return largeemb.evaluate(*args, **kwargs)


def alone(real, fake, real_labels, fake_labels, label, **options):
    return quiet_evaluate(real[real_labels == label], fake[fake_labels == label], **options).to_dict()


@pytest.fixture(scope="module")
def by_labels(sets):
    real, fake, real_labels, fake_labels = sets
    return quiet_evaluate(real, fake, real_labels=real_labels, fake_labels=fake_labels, **OPTIONS).to_dict()


def test_each_class_equals_evaluating_its_rows_alone(sets, by_labels):
    real, fake, real_labels, fake_labels = sets
    assert list(by_labels["by_class"]) == ["0", "1", "2"]
    whole = quiet_evaluate(real, fake, **OPTIONS).to_dict()
    assert same_metrics(by_labels["metrics"], whole["metrics"])  # the top level is still the whole sets'
    for label, got in by_labels["by_class"].items():
        want = alone(real, fake, real_labels, fake_labels, int(label), **OPTIONS)
        assert same_metrics(got["metrics"], want["metrics"]), label
        assert got["by_k"] == want["by_k"] and got["standard_errors"] == want["standard_errors"]
        assert got["warnings"] == want["warnings"]
        rows = ((real_labels == int(label)).sum(), (fake_labels == int(label)).sum())
        assert (got["real_rows"], got["fake_rows"]) == rows
        for k in (5, 3):  # the float64 brute force, ties included (class 1)
            truth = oracle.prdc(real[real_labels == int(label)], fake[fake_labels == int(label)], k)
            assert {key: got["by_k"][str(k)][key] for key in KEYS} == pytest.approx(truth, rel=1e-12, abs=1e-12)
        truth_fd = oracle.frechet(real[real_labels == int(label)], fake[fake_labels == int(label)])
        assert got["metrics"]["fd"] == pytest.approx(truth_fd, rel=1e-6)


def test_class_averaged_is_the_mean_over_classes(by_labels):
    classes = by_labels["by_class"]
    averaged = by_labels["class_averaged"]
    assert averaged["classes"] == [0, 1, 2]
    assert set(averaged["metrics"]) == set(classes["0"]["metrics"])  # every number: FD, P/R/D/C, Vendi, ...
    for key, value in averaged["metrics"].items():
        assert value == pytest.approx(np.mean([c["metrics"][key] for c in classes.values()]), rel=1e-12), key
    for k in ("5", "3"):
        for key in KEYS:
            assert averaged["by_k"][k][key] == pytest.approx(np.mean([c["by_k"][k][key] for c in classes.values()]))
    assert "vendi_fake" in averaged["metrics"] and "fd" in averaged["metrics"]
    # Disjoint classes: independent estimates, so the mean's variance is the sum of theirs over C².
    for k in ("5", "3"):
        for key in KEYS:
            for errors in ("standard_errors", "standard_errors_given_real"):
                each = [c[errors][k][key] for c in classes.values()]
                assert averaged[errors][k][key] == pytest.approx(np.sqrt(np.sum(np.square(each))) / 3)


def test_classes_in_one_set_or_too_small_are_warned_and_left_out(by_labels):
    left_out = by_labels["class_averaged"]["left_out"]
    assert set(left_out) == {"3", "9"}
    assert "only in the fake set" in left_out["3"] and "k=5" in left_out["9"]
    lines = [line for line in by_labels["warnings"] if "left out" in line]
    assert any(line.startswith("class 3 (only in the fake set)") for line in lines)
    assert any(line.startswith("class 9 (k=5 needs more") for line in lines)


def test_prdc_per_class_matches_the_prdc_package():
    """Tie-free rows: prdc's own formula agrees with the brute force, so it is a second oracle."""
    rng = np.random.default_rng(3)
    real, fake = mixture(900, 5, seed=5), mixture(800, 5, seed=6, shift=0.2)
    real_labels, fake_labels = rng.integers(0, 3, 900), rng.integers(0, 3, 800)
    doc = quiet_evaluate(real, fake, k=4, plots=False, real_labels=real_labels, fake_labels=fake_labels).to_dict()
    for label in range(3):
        expected = compute_prdc(
            np.asarray(real[real_labels == label], np.float64), np.asarray(fake[fake_labels == label], np.float64), 4
        )
        for key in KEYS:
            assert doc["by_class"][str(label)]["metrics"][key] == pytest.approx(expected[key], abs=1e-12), key


@pytest.mark.parametrize("chunk", [None, 7, 64])
def test_the_split_holds_each_class_rows_in_order(sets, chunk, tmp_path):
    real, _, real_labels, _ = sets
    source = open_source(real, role="real")
    labels = Labels("real", len(real), "given", data=real_labels)
    counts = {0: int((real_labels == 0).sum()), 2: int((real_labels == 2).sum())}  # class 1 and 9 skipped
    path = str(tmp_path / "split.zarr")
    split.split_by_class(source, labels, counts, path, chunk=chunk)
    group = zarr.open_group(path, mode="r")
    assert sorted(name for name, _ in group.arrays()) == ["class0", "class2"]
    for label in counts:
        np.testing.assert_array_equal(group[split.array_name(label)][:], real[real_labels == label])


@pytest.mark.slow
def test_block_and_split_chunk_sizes_change_nothing(sets, by_labels, monkeypatch):
    real, fake, real_labels, fake_labels = sets
    # Chunks of 7 rows and reads of 30 rows: reads that fill no chunk, one, or several.
    monkeypatch.setattr(split, "MIN_CHUNK_ROWS", 7)
    monkeypatch.setattr(split, "MAX_CHUNK_ROWS", 7)
    monkeypatch.setattr(split, "READ_BYTES", 30 * 6 * 4)
    doc = quiet_evaluate(
        real, fake, real_labels=real_labels, fake_labels=fake_labels, **{**OPTIONS, "block_rows": 64}
    ).to_dict()
    for label, got in doc["by_class"].items():
        want = by_labels["by_class"][label]
        assert same_metrics(got["metrics"], want["metrics"]) and got["by_k"] == want["by_k"], label
    assert doc["class_averaged"]["by_k"] == by_labels["class_averaged"]["by_k"]


def test_one_label_for_every_row_and_averages_with_gaps(sets):
    real, fake, real_labels, _ = sets
    doc = quiet_evaluate(real, fake, real_labels=real_labels, fake_labels=2, **OPTIONS).to_dict()
    assert list(doc["by_class"]) == ["2"]
    want = quiet_evaluate(real[real_labels == 2], fake, **OPTIONS).to_dict()
    assert same_metrics(doc["by_class"]["2"]["metrics"], want["metrics"])
    assert doc["class_averaged"]["left_out"] == {"0": "only in the real set", "1": "only in the real set",
                                                "9": "only in the real set"}
    from largeemb.by_class import class_averaged

    # A number some class lacks (NaN there) is the mean over the others, and those classes are named.
    numbers = {"4": {"fd": 1.0, "x": float("nan"), "note": "text"}, "7": {"fd": 3.0, "x": 2.0, "note": "text"}}
    averaged = class_averaged({label: {"metrics": m, "by_k": {}} for label, m in numbers.items()}, {}, "r", "f")
    assert averaged["metrics"] == {"fd": 2.0, "x": 2.0} and averaged["partial"] == {"x": [4]}


def bad_label_cases(tmp_path, real, fake):
    np.save(tmp_path / "short.npy", np.zeros(len(real) - 1, np.int64))
    np.save(tmp_path / "floats.npy", np.zeros(len(real), np.float32))
    np.save(tmp_path / "wide.npy", np.zeros((len(real), 2), np.int64))
    return [
        (str(tmp_path / "short.npy"), "0", f"{len(real) - 1} real labels for {len(real)} real rows"),
        (str(tmp_path / "floats.npy"), "0", "real labels must be integers, got dtype float32"),
        (str(tmp_path / "wide.npy"), "0", "real labels must be 1-D"),
        (str(tmp_path / "missing.npy"), "0", "real labels file not found"),
        ("0", "nosuch", "fake store has no array named 'nosuch' for its labels"),
        ("0", "1", "no class has more than k rows in both sets"),
    ]


def test_bad_labels_are_one_line_errors_before_any_work(tmp_path, write_zarr):
    rng = np.random.default_rng(0)
    real_data, fake_data = rng.standard_normal((60, 4)).astype(np.float32), rng.standard_normal((50, 4))
    real = str(tmp_path / "real.npy")
    np.save(real, real_data)
    fake = write_zarr("fake.zarr", fake_data.astype(np.float32))  # a lone array: no group to name labels in
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("embeddings", data=fake_data.astype(np.float32))
    for real_labels, fake_labels, what in bad_label_cases(tmp_path, real_data, fake_data):
        store = str(tmp_path / "group.zarr")
        out = tmp_path / f"out-{len(os.listdir(tmp_path))}"
        result = cli_evaluate(real, store, out, "--real-labels", real_labels, "--fake-labels", fake_labels,
                              "--no-plots", "--k", "3")
        assert what in one_error_line(result), (what, result.stderr)
        assert not os.path.exists(out / "metrics.json") and not os.path.exists(out / ".work")
    with pytest.raises(InputError, match="'labels' are no integer class, no .npy file, and no array"):
        largeemb.evaluate(real, fake, real_labels=0, fake_labels="labels")
    with pytest.raises(InputError, match="needs the fake set's labels too"):
        largeemb.evaluate(real, fake, real_labels=0)
    with pytest.raises(InputError, match="labels must be integers"):
        largeemb.evaluate(real, fake, real_labels=0, fake_labels=[0.5] * 50)
    # On a cluster without a work directory the workers could not read the per-class stores: refused first.
    real_store = write_zarr("real.zarr", real_data)
    with pytest.raises(InputError, match="checkpoint_dir"):
        largeemb.evaluate(real_store, fake, real_labels=0, fake_labels=0, scheduler="tcp://127.0.0.1:9")


@pytest.mark.slow
def test_cli_with_npy_and_zarr_array_labels(sets, tmp_path, by_labels):
    real, fake, real_labels, fake_labels = sets
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "real-labels.npy", real_labels.astype(np.int32))
    group = zarr.open_group(str(tmp_path / "fake.zarr"), mode="w")
    group.create_array("embeddings", data=fake, chunks=(300, fake.shape[1]))
    group.create_array("labels", data=fake_labels.astype(np.uint16), chunks=(500,))
    args = ("--real-labels", str(tmp_path / "real-labels.npy"), "--fake-labels", "labels", "--no-plots",
            "--k", "5,3", "--block-rows", "128")
    result = cli_evaluate(tmp_path / "real.npy", tmp_path / "fake.zarr", tmp_path / "out", *args)
    assert result.exit_code == 0, result.output
    assert "class-averaged over 3 classes: k=5" in result.stdout
    assert "class 3 (only in the fake set)" in result.stderr
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for label, want in by_labels["by_class"].items():
        assert same_metrics(doc["by_class"][label]["metrics"], want["metrics"]), label
    assert doc["class_averaged"]["labels"] == {"real": str(tmp_path / "real-labels.npy"),
                                               "fake": f"{tmp_path / 'fake.zarr'}::labels"}
    assert not os.path.exists(tmp_path / "out" / ".work")  # the class stores went with the work directory
    again = cli_evaluate(tmp_path / "real.npy", tmp_path / "fake.zarr", tmp_path / "out", *args)
    assert "already holds a result" in one_error_line(again)
    forced = cli_evaluate(tmp_path / "real.npy", tmp_path / "fake.zarr", tmp_path / "out", *args, "--force")
    assert forced.exit_code == 0, forced.output


@pytest.mark.slow
def test_an_interrupted_class_resumes(sets, tmp_path, by_labels):
    """The last class's cross pass dies: the finished work (the whole sets' and the earlier classes') is kept,
    and --resume computes only what was left, with the same numbers."""
    real, fake, real_labels, fake_labels = sets
    args = dict(real_labels=real_labels, fake_labels=fake_labels, **OPTIONS)
    probe: list = []
    with unit_hook(recording(probe)):
        evaluate_to(real, fake, str(tmp_path / "probe"), **args)
    tiles = sum(name.startswith("cross-tile-") for name in probe)
    with unit_hook(failing_units("cross-tile-", after=tiles - 2)), pytest.raises(RuntimeError, match="node lost"):
        evaluate_to(real, fake, str(tmp_path / "out"), **args)
    assert os.path.isfile(tmp_path / "out" / ".work" / "classes" / "split.json")
    assert not os.path.exists(tmp_path / "out" / "metrics.json")
    ran: list = []
    with unit_hook(recording(ran)):
        doc = evaluate_to(real, fake, str(tmp_path / "out"), resume=True, **args).to_dict()
    assert 0 < len(ran) < len(probe) / 3  # only what the last class had left
    for label, want in by_labels["by_class"].items():
        assert same_metrics(doc["by_class"][label]["metrics"], want["metrics"]), label


@pytest.mark.slow
def test_from_a_reference_and_several_fakes_each_class_equals_its_rows_alone(sets, tmp_path):
    """REAL a reference (its store's group holds the labels), two fakes whose groups hold theirs."""
    from largeemb.batch import evaluate_all

    real, fake, real_labels, fake_labels = sets
    stores, sides = {}, (("real", real, real_labels), ("a", fake, fake_labels), ("b", fake[::-1], fake_labels[::-1]))
    for name, rows, labels in sides:
        group = zarr.open_group(str(tmp_path / f"{name}.zarr"), mode="w")
        group.create_array("embeddings", data=np.ascontiguousarray(rows))
        group.create_array("labels", data=np.ascontiguousarray(labels))
        stores[name] = str(tmp_path / f"{name}.zarr")
    largeemb.build_reference(stores["real"], str(tmp_path / "ref"), k=(5, 3), block_rows=128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LargeembWarning)
        outcome = evaluate_all(str(tmp_path / "ref"), [stores["a"], stores["b"]], str(tmp_path / "out"),
                               real_labels="labels", fake_labels="labels", **OPTIONS)
    assert outcome.exit_code == 0
    for run, rows, labels in zip(outcome.runs, (fake, fake[::-1]), (fake_labels, fake_labels[::-1])):
        assert list(run.document["by_class"]) == ["0", "1", "2"]
        for label, got in run.document["by_class"].items():
            want = alone(real, np.ascontiguousarray(rows), real_labels, labels, int(label), **OPTIONS)
            assert same_metrics(got["metrics"], want["metrics"]), (run.name, label)


def test_a_class_an_option_cannot_serve_is_warned_and_left_out():
    """KID subsets of 100 rows: the whole sets and class 0 have enough rows, class 1 (50 of each) has not."""
    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((400, 4)), rng.standard_normal((400, 4)) + 0.1
    labels = np.repeat([0, 1], [350, 50])
    options = dict(k=3, plots=False, companions=(), kid_subsets=2, kid_subset_size=100)
    doc = quiet_evaluate(real, fake, real_labels=labels, fake_labels=labels, **options).to_dict()
    assert list(doc["by_class"]) == ["0"] and "kid_subsets_mean" in doc["by_class"]["0"]["metrics"]
    why = doc["class_averaged"]["left_out"]["1"]
    assert why.startswith("cannot be evaluated: KID subsets of 100 rows need at least that many rows")
    assert any(line.startswith("class 1 (cannot be evaluated: KID subsets") for line in doc["warnings"])
    assert doc["class_averaged"]["metrics"] == doc["by_class"]["0"]["metrics"]


@pytest.mark.slow
def test_two_worker_processes_change_nothing_and_start_one_cluster(sets, by_labels, write_zarr, monkeypatch):
    """Per-class on a LocalCluster equals the in-process run, and the whole sets and every class share one
    cluster (starting one per class cost seconds each, minutes with worker jobs)."""
    from largeemb.run import cluster

    real, fake, real_labels, fake_labels = sets
    started, local_cluster = [], cluster.LocalCluster

    def counted(*args, **kwargs):
        started.append(kwargs["n_workers"])
        return local_cluster(*args, **kwargs)

    monkeypatch.setattr(cluster, "LocalCluster", counted)
    doc = quiet_evaluate(
        write_zarr("real.zarr", real), write_zarr("fake.zarr", fake), real_labels=real_labels,
        fake_labels=fake_labels, workers=2, threads_per_worker=1, **OPTIONS,
    ).to_dict()
    assert started == [2]
    assert doc["by_class"].keys() == by_labels["by_class"].keys()
    for label, got in doc["by_class"].items():
        want = by_labels["by_class"][label]
        assert same_metrics(got["metrics"], want["metrics"]) and got["by_k"] == want["by_k"], label
    assert doc["class_averaged"]["by_k"] == by_labels["class_averaged"]["by_k"]
