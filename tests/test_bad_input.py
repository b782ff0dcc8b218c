"""README "Failures and resume": every kind of bad input or option ends in one `error:` line, exit 2, and no result.

Each case builds its own broken input, runs `largeemb evaluate` through the
CLI, and checks the exit status, that the message names the problem (and the
store), that there is no traceback, and that nothing was left in --out.
Options that would cost a run its time (an absurd task count, a scheduler that
is not one or cannot be reached) are refused before any work, and missing
chunks are found from the store's listing, without reading data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from conftest import cli_evaluate, mixture, one_error_line, zarr_store
from largeemb import api
from largeemb.cli import app
from largeemb.io import chunks, store

runner = CliRunner()
DIM = 4


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid real/fake pair, shared by the cases that break only one side."""
    base = tmp_path_factory.mktemp("good")
    return {
        "real": zarr_store(base / "real.zarr", mixture(300, DIM, 1), chunks=(100, DIM)),
        "fake": zarr_store(base / "fake.zarr", mixture(250, DIM, 2), chunks=(100, DIM)),
    }


@dataclass
class Case:
    """``build(tmp_path, good)`` returns (CLI arguments after ``evaluate``, the store the message must name)."""

    id: str
    build: Callable
    expect: tuple[str, ...]
    exit_code: int = 2


def _real(make):
    """A case whose real input is ``make(tmp_path)``; fake is the good one."""

    def build(tmp, good):
        real = make(tmp)
        return [real, good["fake"]], real

    return build


def _with_nan_in_last_chunk(tmp):
    data = mixture(5000, DIM, 3)
    data[4750, 2] = np.nan  # middle of the last chunk (4500:5000), in the second moments segment
    return zarr_store(tmp / "nan.zarr", data, chunks=(1500, DIM))


def _with_inf(tmp):
    data = mixture(5000, DIM, 4)
    data[4100, 0] = np.inf
    data[7, 1] = np.inf  # the first one must be reported, whatever segment finishes first
    return zarr_store(tmp / "inf.zarr", data, chunks=(1000, DIM))


def _with_deleted_chunk(tmp, zarr_format=3):
    path = zarr_store(tmp / "holes.zarr", mixture(500, DIM, 5), chunks=(100, DIM), zarr_format=zarr_format)
    os.remove(os.path.join(path, "c/2/0" if zarr_format == 3 else "2.0"))
    return path


def _with_deleted_shard(tmp):
    path = zarr_store(tmp / "sharded.zarr", mixture(800, DIM, 6), chunks=(50, DIM), shards=(200, DIM))
    os.remove(os.path.join(path, "c/3/0"))
    return path


def _with_truncated_chunk(tmp, compressors="auto"):
    path = zarr_store(tmp / "trunc.zarr", mixture(500, DIM, 7), chunks=(100, DIM), compressors=compressors)
    chunk = os.path.join(path, "c/3/0")
    content = Path(chunk).read_bytes()
    Path(chunk).write_bytes(content[: len(content) // 2])
    return path


def _group(tmp, arrays: dict):
    group = zarr.open_group(str(tmp / "group.zarr"), mode="w")
    for name, data in arrays.items():
        group.create_array(name, data=data, chunks=data.shape)
    return str(tmp / "group.zarr")


def _not_zarr_file(tmp):
    (tmp / "real.bin").write_bytes(b"\x93NUMPY not a zarr store")
    return str(tmp / "real.bin")


def _broken_npy(tmp):
    (tmp / "real.npy").write_bytes(b"\x93NUMPY not really")
    return str(tmp / "real.npy")


def _unwritable_out(tmp, good):
    (tmp / "a_file").write_text("x")
    return [good["real"], good["fake"], "--out", str(tmp / "a_file" / "out")], str(tmp / "a_file" / "out")


def _out_is_a_file(tmp, good):
    (tmp / "out_file").write_text("x")
    return [good["real"], good["fake"], "--out", str(tmp / "out_file")], str(tmp / "out_file")


CASES = [
    Case(
        "missing_path", lambda tmp, good: ([str(tmp / "nope.zarr"), good["fake"]], str(tmp / "nope.zarr")),
        ("not found",),
    ),
    Case("file_not_zarr", _real(_not_zarr_file), ("not a readable zarr store",)),
    Case("broken_npy", _real(_broken_npy), ("not a plain NumPy file",)),
    Case(
        "dir_not_zarr", _real(lambda tmp: (tmp / "empty").mkdir() or str(tmp / "empty")), ("not a readable zarr store",)
    ),
    Case("one_d", _real(lambda tmp: zarr_store(tmp / "1d.zarr", np.zeros(100, np.float32))), ("must be 2-D", "(100,)")),
    Case(
        "three_d", _real(lambda tmp: zarr_store(tmp / "3d.zarr", np.zeros((10, 4, 3), np.float32))),
        ("must be 2-D", "(10, 4, 3)"),
    ),
    Case(
        "zero_rows",
        _real(lambda tmp: zarr_store(tmp / "empty.zarr", np.zeros((0, DIM), np.float32), chunks=(10, DIM))),
        ("no rows",),
    ),
    Case("one_row", _real(lambda tmp: zarr_store(tmp / "one.zarr", mixture(1, DIM, 8))), ("only 1 row",)),
    Case(
        "dim_mismatch",
        lambda tmp, good: ([good["real"], zarr_store(tmp / "dim9.zarr", mixture(250, 9, 2))], str(tmp / "dim9.zarr")),
        ("differ in dim", "4 vs 9"),
    ),
    Case("nan_in_middle_of_last_chunk", _real(_with_nan_in_last_chunk), ("NaN or inf", "first at row 4750")),
    Case(
        "pos_inf_fake",
        lambda tmp, good: ([good["real"], _with_inf(tmp)], str(tmp / "inf.zarr")),
        ("fake embeddings contain NaN or inf", "first at row 7"),
    ),
    Case(
        "neg_inf_float16",
        _real(
            lambda tmp: zarr_store(
                tmp / "f16.zarr",
                np.where(np.arange(300)[:, None] == 299, -np.inf, mixture(300, DIM, 9)).astype(np.float16),
            )
        ),
        ("NaN or inf", "first at row 299"),
    ),
    Case(
        "k_not_below_rows",
        lambda tmp, good: (
            [zarr_store(tmp / "five.zarr", mixture(5, DIM, 1)), good["fake"], "--k", "5"], str(tmp / "five.zarr"),
        ),
        ("k=5 needs more than 5 real rows",),
    ),
    Case(
        "string_dtype",
        _real(
            lambda tmp: zarr.create_array(str(tmp / "str.zarr"), shape=(10, DIM), dtype=str) and str(tmp / "str.zarr")
        ),
        ("unsupported dtype",),
    ),
    Case(
        "complex_dtype", _real(lambda tmp: zarr_store(tmp / "c.zarr", mixture(300, DIM, 1).astype(np.complex64))),
        ("unsupported dtype complex64",),
    ),
    Case(
        "bool_dtype", _real(lambda tmp: zarr_store(tmp / "b.zarr", mixture(300, DIM, 1) > 0)),
        ("unsupported dtype bool",),
    ),
    Case("deleted_chunk", _real(_with_deleted_chunk), ("missing 1 of 5 stored chunks", "rows 200:300")),
    Case(
        "deleted_chunk_zarr_v2", _real(lambda tmp: _with_deleted_chunk(tmp, zarr_format=2)),
        ("missing 1 of 5 stored chunks",),
    ),
    Case("deleted_shard", _real(_with_deleted_shard), ("missing 1 of 4 stored chunks", "rows 600:800")),
    Case(
        "truncated_compressed_chunk", _real(_with_truncated_chunk),
        ("stored rows 300:400 cannot be read back", "corrupt"),
    ),
    Case(
        "truncated_raw_chunk", _real(lambda tmp: _with_truncated_chunk(tmp, compressors=None)),
        ("stored rows 300:400 cannot be read back",),
    ),
    Case(
        "group_two_arrays_no_name",
        _real(lambda tmp: _group(tmp, {"a": mixture(300, DIM, 1), "b": mixture(300, DIM, 2)})),
        ("several 2-D arrays (a, b)", "--real-array"),
    ),
    Case("group_without_2d_array", _real(lambda tmp: _group(tmp, {"labels": np.arange(300)})), ("no 2-D array",)),
    Case(
        "group_wrong_array_name",
        lambda tmp, good: (
            [_group(tmp, {"a": mixture(300, DIM, 1)}), good["fake"], "--real-array", "emb"], str(tmp / "group.zarr"),
        ),
        ("no array named 'emb'", "use one of: a"),
    ),
    Case("unwritable_out", _unwritable_out, ("cannot write the output directory",)),
    Case("out_is_a_file", _out_is_a_file, ("is a file",)),
    Case(
        "values_overflow_float32",
        _real(
            lambda tmp: zarr_store(
                tmp / "huge.zarr",
                np.where(np.arange(300)[:, None] == 123, 1e30, mixture(300, DIM, 1)).astype(np.float64),
            )
        ),
        ("row 123", "overflow"),
    ),
    Case(
        "cosine_zero_row",
        lambda tmp, good: (
            [
                zarr_store(tmp / "z.zarr", np.where(np.arange(300)[:, None] == 42, 0.0, mixture(300, DIM, 1))),
                good["fake"], "--metric", "cosine",
            ],
            str(tmp / "z.zarr"),
        ),
        ("row 42 is all zeros",),
    ),
    Case("bad_k", lambda tmp, good: ([good["real"], good["fake"], "--k", "5,x"], None), ("--k must be whole numbers",)),
    Case(
        "tiny_block_rows", lambda tmp, good: ([good["real"], good["fake"], "--block-rows", "8"], None),
        ("block_rows must be at least 64",),
    ),
]


def _files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.is_dir() else []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_error_and_no_result(case, tmp_path, good):
    args, named = case.build(tmp_path, good)
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "out")]
    out = Path(args[args.index("--out") + 1])
    before = _files_under(out)

    result = runner.invoke(app, ["evaluate", *args])

    assert result.exit_code == case.exit_code, result.output
    # Batch-log lines of passes that ran before the data turned out bad may precede it (timestamped "largeemb:" lines).
    lines = [line for line in result.stderr.strip().splitlines() if " largeemb: " not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for text in case.expect:
        assert text in lines[0], lines[0]
    if named:
        assert named in lines[0], lines[0]
    assert result.stdout == ""
    assert _files_under(out) == before  # no metrics.json, no staging, no lock left
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path, good):
    result = cli_evaluate(tmp_path / "nope.zarr", good["fake"], tmp_path / "o", "--debug")
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError) and "not found" in str(result.exception)


# -- missing chunks are found by listing the store's keys, not by reading ---------------


def test_missing_chunk_check_lists_keys_without_reading_data(tmp_path, monkeypatch):
    path = _with_deleted_chunk(tmp_path)
    arr = zarr.open_array(path, mode="r")
    monkeypatch.setattr(type(arr), "__getitem__", lambda *a: pytest.fail("read data"))
    assert chunks.missing_chunks(arr) == (1, 5, (200, 300))


def test_sparse_but_complete_store_is_accepted(tmp_path):
    data = mixture(400, DIM, 1)
    # Chunks split the dim too:
    arr = zarr.create_array(str(tmp_path / "ok.zarr"), shape=data.shape, dtype=data.dtype, chunks=(100, 3))
    arr[:] = data
    assert chunks.missing_chunks(arr) == (0, 8, None)
    assert store.open_source(str(tmp_path / "ok.zarr"), role="real").rows == 400


# -- rows float32 cannot tell apart ---------------------------------------------------


def test_spread_too_small_for_float32_is_refused():
    real = np.random.default_rng(0).standard_normal((1100, 8)) * 1e-20
    fake = np.random.default_rng(1).standard_normal((1100, 8)) * 1e-20
    from largeemb.errors import InputError

    with pytest.raises(InputError, match="power of two"):
        api.evaluate(real, fake, k=3)


# -- options refused before they cost anything -------------------------------------


def test_an_absurd_task_count_is_refused_and_explained(stores, tmp_path):
    big = zarr_store(tmp_path / "big.zarr", mixture(20_000, 6, 3), (10_000, 6))
    line = one_error_line(cli_evaluate(big, stores["fake"], tmp_path / "out", "--no-plots", "--block-rows", "64"))
    assert "313 blocks" in line and "tasks" in line and "--block-rows 79" in line
    assert not (tmp_path / "out").exists()


def test_a_scheduler_that_is_not_an_address_is_refused_at_once(stores, tmp_path):
    import time

    start = time.monotonic()
    line = one_error_line(
        cli_evaluate(stores["real"], stores["fake"], tmp_path / "out", "--no-plots", "--scheduler", "not an address")
    )
    assert "not a dask scheduler address" in line and time.monotonic() - start < 10


def test_a_run_that_cannot_reach_its_scheduler_leaves_no_unfinished_work(stores, tmp_path, monkeypatch):
    import socket

    from largeemb.run import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there
    out = tmp_path / "out"
    line = one_error_line(cli_evaluate(stores["real"], stores["fake"], out, "--no-plots", "--scheduler", f"tcp://127.0.0.1:{port}"))
    assert "cannot reach the dask scheduler" in line
    assert not (out / ".work").exists()
    # The corrected rerun, without --resume:
    assert cli_evaluate(stores["real"], stores["fake"], out, "--no-plots").exit_code == 0



# -- odd array names ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "./embeddings", "a/../b"])
def test_an_array_name_with_dot_segments_is_one_line(stores, tmp_path, name):
    import zarr

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("embeddings", shape=(800, 6), dtype="f4")[:] = mixture(800, 6, 2)
    line = one_error_line(
        cli_evaluate(stores["real"], tmp_path / "g.zarr", tmp_path / "out", "--no-plots", "--fake-array", name)
    )
    assert "has no array named" in line and "embeddings" in line



# -- one line, always ----------------------------------------------------------------


def test_values_that_overflow_the_sums_give_the_error_line_and_no_warnings(stores, tmp_path):
    import subprocess
    import sys

    data = mixture(900, 6, 1).astype(np.float64)
    data[5] = 1e200
    big = zarr_store(tmp_path / "big.zarr", data, (300, 6))
    done = subprocess.run(
        [
            sys.executable, "-m", "largeemb", "evaluate", big, stores["fake"], "--out", str(tmp_path / "out"),
            "--no-plots",
        ],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 2
    # Timestamped batch-log lines of the passes that ran may precede it; the error is one line, the last, and no
    # warning.
    lines = [line for line in done.stderr.splitlines() if "largeemb: " not in line]
    assert (
        len(lines) == 1
        and lines[0].startswith("error: real row 5 holds a value beyond")
        and done.stderr.strip().endswith(lines[0])
    )
