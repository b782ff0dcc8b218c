"""The command line: help everywhere, demo end to end, errors as one line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import cli_evaluate
from largeemb.cli import app

runner = CliRunner()
COMMANDS = [c.name or c.callback.__name__ for c in app.registered_commands]


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from largeemb.cli import main; sys.argv = ['largeemb', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('faiss', 'matplotlib', 'sklearn', 'dask', 'zarr') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_commands_are_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in COMMANDS:
        assert f"largeemb {name}" in readme


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--rows", "2000", "--dim", "16"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # The default companions (P-precision/recall, PR-cover, clipped density/coverage and the kernels: opt-in).
    companions = {
        "f1", "f8", "f1_8", "authenticity", "vendi_real", "vendi_fake", "fd_infinity", "sym_precision", "sym_recall",
        "rarity_mean", "memorization",
    }
    assert set(metrics["metrics"]) == {"precision", "recall", "density", "coverage", "fd"} | companions
    assert metrics["schema_version"] == 3
    for key in ("real", "fake", "params", "warnings", "timings_s", "versions", "by_k"):
        assert key in metrics


@pytest.mark.slow
def test_synth_then_evaluate_then_refuse_to_overwrite(tmp_path):
    real, fake, out = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr"), str(tmp_path / "out")
    assert runner.invoke(app, ["synth", real, "--rows", "1500", "--dim", "8"]).exit_code == 0
    synth_fake = ["synth", fake, "--rows", "1200", "--dim", "8", "--seed", "3", "--shift", "0.2"]
    assert runner.invoke(app, synth_fake).exit_code == 0
    first = cli_evaluate(real, fake, out, "--k", "3", "--tsne-samples", "200")
    assert first.exit_code == 0, first.output
    before = (tmp_path / "out" / "metrics.json").read_bytes()
    again = cli_evaluate(real, fake, out, "--k", "5")
    assert again.exit_code == 2
    assert "error:" in again.output and "--force" in again.output
    assert (tmp_path / "out" / "metrics.json").read_bytes() == before
    forced = cli_evaluate(real, fake, out, "--k", "5", "--force", "--no-plots")
    assert forced.exit_code == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["params"]["k"] == [5]


def test_synth_is_reproducible(tmp_path):
    import numpy as np
    import zarr

    for name in ("a.zarr", "b.zarr"):
        synth = ["synth", str(tmp_path / name), "--rows", "9000", "--dim", "4", "--seed", "7"]
        assert runner.invoke(app, synth).exit_code == 0
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "a.zarr"))[:], zarr.open_array(str(tmp_path / "b.zarr"))[:]
    )


def test_convert_npy_round_trip(tmp_path):
    import numpy as np
    import zarr

    data = np.random.default_rng(0).standard_normal((5000, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    result = runner.invoke(app, ["convert", str(tmp_path / "x.npy"), str(tmp_path / "x.zarr")])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "x.zarr"))[:], data)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    refused = runner.invoke(app, ["convert", str(tmp_path / "obj.npy"), str(tmp_path / "obj.zarr")])
    assert refused.exit_code == 2 and "error:" in refused.output


def test_dim_mismatch_is_one_line_error(tmp_path):
    real, fake = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr")
    runner.invoke(app, ["synth", real, "--rows", "100", "--dim", "8"])
    runner.invoke(app, ["synth", fake, "--rows", "100", "--dim", "9"])
    result = cli_evaluate(real, fake, tmp_path / "o")
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and "dim" in result.output
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_version_short_help_and_usage_lines():
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("largeemb ")
    short = runner.invoke(app, ["evaluate", "-h"])
    assert short.exit_code == 0
    assert "Usage: largeemb evaluate [OPTIONS] REAL FAKE" in short.output  # not {real} {fake}
    assert "<bool>" not in short.output and "--metric [euclidean|cosine]" in short.output
    assert "--pca [moments|incremental]" in short.output


@pytest.mark.parametrize("name", ["evaluate", "plot", "synth", "convert", "demo"])
def test_force_says_what_it_replaces(name):
    text = " ".join(runner.invoke(app, [name, "--help"]).output.split())
    (line,) = [part for part in text.split("--force")[1:2]]
    assert "Replace" in line


def test_evaluate_reads_npy_and_npz_without_pickle(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    real, fake = (
        rng.standard_normal((600, 8)).astype(np.float32), rng.standard_normal((500, 8)).astype(np.float32) + 0.3,
    )
    np.save(tmp_path / "real.npy", real)
    np.savez(tmp_path / "both.npz", real=real, fake=fake)
    np.savez(tmp_path / "fake.npz", fake)
    args = ["--k", "3", "--no-plots", "--no-samples"]
    from_npy = cli_evaluate(tmp_path / "real.npy", tmp_path / "fake.npz", tmp_path / "a", *args)
    assert from_npy.exit_code == 0, from_npy.output
    from_keys = cli_evaluate(
        tmp_path / "both.npz", tmp_path / "both.npz", tmp_path / "b", "--real-key", "real", "--fake-key", "fake", *args
    )
    assert from_keys.exit_code == 0, from_keys.output
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    assert a["metrics"] == b["metrics"] and a["real"]["source"].endswith("real.npy")
    from prdc import compute_prdc

    expected = compute_prdc(real, fake, 3)
    for name in ("precision", "recall", "density", "coverage"):
        assert a["metrics"][name] == pytest.approx(expected[name], abs=1e-12)
    ambiguous = cli_evaluate(tmp_path / "both.npz", tmp_path / "fake.npz", tmp_path / "c", *args)
    assert (
        ambiguous.exit_code == 2
        and ambiguous.output.startswith("error: real .npz holds 2 arrays")
        and "--real-key" in ambiguous.output
    )
    np.savez_compressed(tmp_path / "small.npz", fake)
    compressed = cli_evaluate(tmp_path / "real.npy", tmp_path / "small.npz", tmp_path / "d", *args)
    assert compressed.exit_code == 2 and "largeemb convert" in compressed.output
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    pickled = cli_evaluate(tmp_path / "obj.npy", tmp_path / "fake.npz", tmp_path / "e", *args)
    assert pickled.exit_code == 2 and pickled.output.startswith("error:")


def test_convert_takes_npz_and_refuses_directories_in_one_line(tmp_path):
    import numpy as np
    import zarr

    data = np.random.default_rng(0).standard_normal((9000, 6)).astype(np.float32)
    np.savez_compressed(tmp_path / "x.npz", emb=data, other=data[:5])
    result = runner.invoke(app, ["convert", str(tmp_path / "x.npz"), str(tmp_path / "x.zarr"), "--key", "emb"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "x.zarr"))[:], data)
    for bad, text in (
        (tmp_path, "directory"), (tmp_path / "x.npz", "holds 2 arrays"), (tmp_path / "none.npy", "not found"),
    ):
        refused = runner.invoke(app, ["convert", str(bad), str(tmp_path / "y.zarr")])
        assert refused.exit_code == 2 and refused.output.startswith("error:") and text in refused.output, refused.output
        assert len(refused.output.strip().splitlines()) == 1


def test_params_hold_every_option_that_decides_the_result():
    """A new EvaluateConfig field reaches metrics.json["params"] by itself (no hand-kept list)."""
    import dataclasses

    from largeemb.config import EvaluateConfig

    config = EvaluateConfig()
    decides = {f.name for f in dataclasses.fields(config) if f.name != "extra" and not f.metadata.get("execution")}
    assert set(config.params()) == decides
    assert {"workers", "scheduler", "threads_per_worker"}.isdisjoint(config.params())
    assert "tsne_samples" in config.params() and "tsne_samples" not in config.result_params()


@pytest.mark.slow
def test_evaluate_to_writes_what_the_cli_writes(tmp_path):
    import largeemb

    real, fake = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr")
    runner.invoke(app, ["synth", real, "--rows", "1100", "--dim", "8"])
    runner.invoke(app, ["synth", fake, "--rows", "1000", "--dim", "8", "--seed", "2", "--drop-modes", "3"])
    assert cli_evaluate(real, fake, tmp_path / "cli", "--k", "3,5", "--tsne-samples", "300").exit_code == 0
    largeemb.evaluate_to(real, fake, str(tmp_path / "api"), k=(3, 5), tsne_samples=300)
    assert sorted(os.listdir(tmp_path / "cli")) == sorted(os.listdir(tmp_path / "api"))
    cli_json, api_json = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("cli", "api"))
    for key in ("metrics", "by_k", "standard_errors", "params", "warnings", "details"):
        assert cli_json[key] == api_json[key], key


def test_metrics_are_printed_before_the_plots_are_drawn(tmp_path, monkeypatch):
    """evaluate_to hands the metrics over (on_metrics: the CLI prints them) before the plot stage; nothing is
    published until all is written."""
    import sys

    from largeemb import api
    from largeemb.report.stage import Plotted

    real, fake = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr")
    runner.invoke(app, ["synth", real, "--rows", "400", "--dim", "8"])
    runner.invoke(app, ["synth", fake, "--rows", "400", "--dim", "8", "--seed", "2"])
    events = []

    def plots(result, directory):
        events.append(("plots", (tmp_path / "o" / "metrics.json").exists(), "precision" in sys.stdout.getvalue()))
        return Plotted([], {})

    monkeypatch.setattr(api, "write_plots", plots)
    monkeypatch.setattr(sys, "stdout", __import__("io").StringIO())
    api.evaluate_to(
        real, fake, str(tmp_path / "o"), tsne_samples=0,
        on_metrics=lambda result: print("precision", result.metrics["precision"]),
    )
    assert events == [("plots", False, True)]  # printed first; nothing published until everything is written
    monkeypatch.undo()
    result = cli_evaluate(real, fake, tmp_path / "cli", "--tsne-samples", "0")
    assert result.exit_code == 0, result.output
    assert result.output.index("k=5  P ") < result.output.index("wrote")


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(tmp_path):
    """`largeemb worst DIR | head -1`: no error line, the status `ls | head` gives (128 + SIGPIPE)."""
    import subprocess
    import sys

    real, fake = str(tmp_path / "r.zarr"), str(tmp_path / "f.zarr")
    runner.invoke(app, ["synth", real, "--rows", "600", "--dim", "4"])
    runner.invoke(app, ["synth", fake, "--rows", "600", "--dim", "4", "--seed", "2"])
    assert runner.invoke(app, ["evaluate", real, fake, "--out", str(tmp_path / "o"), "--no-plots"]).exit_code == 0
    worst = subprocess.Popen(
        [sys.executable, "-m", "largeemb", "worst", str(tmp_path / "o"), "--n", "500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    assert worst.stdout.readline().startswith("fake rows least supported")
    worst.stdout.close()
    assert worst.wait(timeout=60) == 141
    assert worst.stderr.read() == ""


def test_worst_lists_copies_after_the_other_real_rows_and_says_why(tmp_path):
    """Real rows with a zero radius (copies) are uncovered under strict '<' whatever lies near them: they come
    after the rows whose balls simply hold no fake row, and a note says why (oracle: the arrays in samples.zarr)."""
    import zarr

    rng = np.random.default_rng(9)
    base = rng.standard_normal((500, 4)).astype(np.float32)
    real = np.concatenate([base[:30]] * 7 + [base[30:]])  # 30 rows, 7 copies each: zero radius at k = 5
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", (rng.standard_normal((500, 4)) + 0.3).astype(np.float32))
    out = tmp_path / "o"
    assert runner.invoke(app, ["evaluate", str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--out", str(out),
                               "--no-plots"]).exit_code == 0
    result = runner.invoke(app, ["worst", str(out), "--n", "20", "--json"])
    listed = json.loads(result.output)["real"]
    group = zarr.open_group(str(out / "samples.zarr"), mode="r")
    radius, covered = group["real"]["radius"][:, 0], group["real"]["covered"][:, 0]
    positive_uncovered = int(((radius > 0) & ~covered.astype(bool)).sum())
    shown = [row["radius"] for row in listed]
    assert positive_uncovered >= 20 and all(r > 0 for r in shown)  # copies do not fill the list
    text = runner.invoke(app, ["worst", str(out), "--n", "3"]).output
    assert "zero radius (duplicates)" in text and "--inclusive" in text


@pytest.mark.parametrize("delimiter, header", [(",", "a,b,c,d"), ("\t", ""), (" ", "")])
def test_convert_reads_a_csv_of_numbers_and_evaluate_names_the_command(tmp_path, delimiter, header):
    import zarr

    rows = np.random.default_rng(1).standard_normal((2_500, 4)).astype(np.float32)
    src = tmp_path / "emb.csv"
    np.savetxt(src, rows, delimiter=delimiter, header=header, comments="")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "emb.zarr")])
    assert result.exit_code == 0, result.output
    expected = np.loadtxt(src, delimiter=None if delimiter == " " else delimiter, skiprows=1 if header else 0)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "emb.zarr"), mode="r")[:], expected.astype(np.float32))
    refused = runner.invoke(app, ["evaluate", str(src), str(src), "--out", str(tmp_path / "o")])
    assert refused.exit_code == 2 and f"largeemb convert {src} emb.zarr" in refused.output


@pytest.mark.parametrize("text", ["", "a,b,c\n", "a,b,c\n\n  \n"])
def test_convert_refuses_a_text_file_without_rows(tmp_path, text):
    src = tmp_path / "emb.csv"
    src.write_text(text)
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "emb.zarr")])
    assert result.exit_code == 2 and "holds no rows" in result.output
    assert not (tmp_path / "emb.zarr").exists()


def test_convert_failing_midway_leaves_no_half_store_and_keeps_the_one_force_would_replace(tmp_path):
    import zarr

    from largeemb.errors import InputError
    from largeemb.io.synth import convert_npy

    src, dst = tmp_path / "emb.csv", tmp_path / "emb.zarr"
    np.savetxt(src, np.ones((500, 3)), delimiter=",")
    with open(src, "a") as fh:
        fh.write("1,2,x\n")  # the last chunk of 100 rows fails, after four were written
    with pytest.raises(InputError, match="not a table of numbers"):
        convert_npy(str(src), str(dst), chunk_rows=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.csv"]
    earlier = np.arange(12, dtype=np.float32).reshape(4, 3)
    zarr.create_array(str(dst), shape=earlier.shape, dtype="float32")[:] = earlier
    with pytest.raises(InputError, match="not a table of numbers"):
        convert_npy(str(src), str(dst), chunk_rows=100, force=True)
    np.testing.assert_array_equal(zarr.open_array(str(dst), mode="r")[:], earlier)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.csv", "emb.zarr"]


def test_convert_refuses_rows_wider_than_the_first_chunk(tmp_path):
    """Zarr keeps the first columns of a wider block without a word: convert must refuse it (text and Parquet)."""
    from largeemb.errors import InputError
    from largeemb.io.synth import convert_npy

    (tmp_path / "emb.csv").write_text("1,2\n" * 3 + "1,2,3\n" * 3)
    sources = [tmp_path / "emb.csv"]
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    vectors = pa.array([[1.0, 2.0]] * 3 + [[1.0, 2.0, 3.0]] * 3, type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"embedding": vectors}), tmp_path / "emb.parquet", row_group_size=3)
    sources.append(tmp_path / "emb.parquet")
    for src in sources:
        with pytest.raises(InputError, match="rows 4-6 have 3 values each, the first ones 2"):
            convert_npy(str(src), str(tmp_path / "emb.zarr"), chunk_rows=3)
        assert not (tmp_path / "emb.zarr").exists()


@pytest.mark.parametrize("layout", ["vector column", "column per dimension"])
def test_convert_reads_parquet_embeddings(tmp_path, layout):
    """Both layouts Hugging Face datasets and pandas write; oracle: the array written."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import zarr

    rows = np.random.default_rng(2).standard_normal((3_000, 5)).astype(np.float32)
    if layout == "vector column":
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 5)
        table = pa.table({"text": [f"row {i}" for i in range(len(rows))], "embedding": vectors})
    else:
        table = pa.table({f"d{j}": rows[:, j] for j in range(5)})
    pq.write_table(table, tmp_path / "emb.parquet", row_group_size=700)
    result = runner.invoke(app, ["convert", str(tmp_path / "emb.parquet"), str(tmp_path / "emb.zarr")])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "emb.zarr"), mode="r")[:], rows)
