"""Checkpoints and --resume: a killed job continues where it stopped and gives
the same result as an uninterrupted one, recomputing only unfinished tasks."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields

import numpy as np
import pytest
from typer.testing import CliRunner

import largeemb
from conftest import (
    QUICK_PLOTS,
    SUMMARY,
    cli_evaluate,
    failing_units,
    is_tile,
    mixture,
    one_error_line,
    recording,
    slow_tiles,
    unit_hook,
    zarr_store,
)
from largeemb.cli import app
from largeemb.io.output import METRICS_FILE
from largeemb.kernels.cross import CrossPartial
from largeemb.kernels.moments import Moments, SegmentCheck
from largeemb.kernels.neighbours import Candidates, Neighbours
from largeemb.kernels.plan import row_blocks
from largeemb.kernels.shortlist import Shortlist
from largeemb.run import checkpoint, progress

runner = CliRunner()
ARGS = ["--k", "3,5", "--block-rows", "128", *QUICK_PLOTS]  # figures drawn, with a quick t-SNE


@pytest.fixture(scope="module")
def resume_stores(tmp_path_factory):
    """1,500 and 1,300 rows of dim 16: with --block-rows 128, enough tasks (over 200) to kill a run part-way."""
    root = tmp_path_factory.mktemp("resume-data")
    sets = (("real", mixture(1500, 16, 1)), ("fake", mixture(1300, 16, 2, keep=5, shift=0.1)))
    return [zarr_store(root / f"{name}.zarr", data, (256, 16)) for name, data in sets]


@pytest.fixture(scope="module")
def uninterrupted(resume_stores, tmp_path_factory):
    """metrics.json of an uninterrupted run, how many tasks it computed, and how many were tiles."""
    names = []
    with unit_hook(recording(names)):
        whole, total, loaded = _metrics_and_counts(*resume_stores, tmp_path_factory.mktemp("whole") / "out")
    assert loaded == 0 and total > 200 and total == len(names)
    return whole, total, sum(map(is_tile, names))


def _metrics_and_counts(real, fake, out, *extra):
    """metrics.json, tasks computed and tasks loaded from checkpoints of a CLI run with ARGS, which must succeed."""
    result = cli_evaluate(real, fake, out, *ARGS, *extra)
    assert result.exit_code == 0, result.output
    computed, loaded = map(int, SUMMARY.search(result.output).groups())
    return json.loads((out / "metrics.json").read_text()), computed, loaded


def slow_job(log: str) -> str:
    """A job whose tile tasks are slowed down and logged, so that it can be killed part-way."""
    return slow_tiles(0.02, log) + """
import sys
from largeemb.cli import main
sys.argv = ["largeemb"] + sys.argv[1:]
main()
"""


@pytest.mark.slow
def test_killed_job_resumes_with_identical_metrics_recomputing_only_unfinished_tasks(
    resume_stores, uninterrupted, tmp_path
):
    real, fake = resume_stores
    whole, total, tiles = uninterrupted

    out = tmp_path / "killed"
    work, log = out / checkpoint.WORK_DIR, tmp_path / "tiles.log"
    job = subprocess.Popen(
        [sys.executable, "-c", slow_job(str(log)), "evaluate", real, fake, "--out", str(out), *ARGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and len(log.read_text().splitlines()) >= tiles // 2):
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.01)
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
    saved = {name[: -len(".npz")] for name in os.listdir(work) if name.endswith(".npz") and ".tmp-" not in name}
    assert saved and not (out / "metrics.json").exists()

    refused = cli_evaluate(real, fake, out, *ARGS)
    assert refused.exit_code == 2 and "unfinished work" in refused.output and "--resume" in refused.output

    ran = []
    with unit_hook(recording(ran)):
        resumed, computed, loaded = _metrics_and_counts(real, fake, out, "--resume")
    assert resumed["metrics"] == whole["metrics"] and resumed["by_k"] == whole["by_k"]
    assert computed == len(ran) and not saved & set(ran)  # every saved task was reused, none recomputed
    assert computed < total - tiles // 2 + len(saved)  # the killed run's work was not redone
    assert 0 < loaded <= len(saved)  # tasks under a finished merge are not even loaded
    assert not work.exists()  # removed once the result is published


@pytest.fixture
def interrupted(resume_stores, tmp_path):
    """An output directory whose run died in the cross pass (a task raised)."""
    real, fake = resume_stores
    out = tmp_path / "out"
    with unit_hook(failing_units("cross-tile-", after=30)):
        with pytest.raises(RuntimeError, match="node lost"):
            largeemb.evaluate(
                real, fake, k=(3, 5), block_rows=128, threads_per_worker=1,
                checkpoint_dir=str(out / checkpoint.WORK_DIR),
            )
    return real, fake, out


@pytest.mark.slow
def test_resume_refuses_other_inputs_or_options(interrupted, tmp_path, write_zarr):
    real, fake, out = interrupted
    other_k = cli_evaluate(real, fake, out, "--k", "3", "--block-rows", "128", "--resume")
    assert other_k.exit_code == 2
    assert "different inputs or options" in other_k.output
    assert "--k: 3,5 when started, now 3" in other_k.output  # names the option and both values

    rewritten = write_zarr("rewritten.zarr", mixture(1300, 16, 9))  # same shape, new rows
    other_fake = cli_evaluate(real, rewritten, out, *ARGS, "--resume")
    assert other_fake.exit_code == 2 and "fake" in other_fake.output
    assert (out / checkpoint.WORK_DIR / checkpoint.MANIFEST).exists()  # refusing destroys nothing


@pytest.mark.slow
def test_force_discards_unfinished_work(interrupted, uninterrupted):
    real, fake, out = interrupted
    metrics, computed, loaded = _metrics_and_counts(real, fake, out, "--force")
    whole, total, _ = uninterrupted
    assert loaded == 0 and computed == total and metrics["metrics"] == whole["metrics"]


@pytest.mark.slow
def test_resume_without_unfinished_work_just_runs(resume_stores, tmp_path):
    real, fake = resume_stores
    metrics, computed, loaded = _metrics_and_counts(real, fake, tmp_path / "new", "--resume")
    assert loaded == 0 and computed > 0


@pytest.mark.slow
def test_resume_of_a_finished_run_says_so_and_exits_0(resume_stores, tmp_path):
    real, fake = resume_stores
    out = tmp_path / "done"
    _metrics_and_counts(real, fake, out, "--no-plots")
    before = (out / "metrics.json").read_bytes()
    again = cli_evaluate(real, fake, out, *ARGS, "--no-plots", "--resume")
    assert again.exit_code == 0, again.output  # a requeued job that already finished simply succeeds
    assert "already holds a finished result" in again.output and "tasks computed" not in again.output
    assert (out / "metrics.json").read_bytes() == before


def test_reference_build_resumes_and_takes_the_execution_options(resume_stores, tmp_path):
    real, _ = resume_stores
    ref = tmp_path / "ref"
    with unit_hook(failing_units("radii-real-finish-")):
        with pytest.raises(RuntimeError, match="node lost"):
            largeemb.build_reference(real, str(ref), k=(3,), block_rows=128, threads_per_worker=1)
    assert (ref / checkpoint.WORK_DIR / checkpoint.MANIFEST).exists()
    refused = runner.invoke(app, ["reference", "build", real, "--out", str(ref), "--k", "3", "--block-rows", "128"])
    assert refused.exit_code == 2 and "--resume" in refused.output
    build = [
        "reference", "build", real, "--out", str(ref), "--k", "3", "--block-rows", "128", "--threads-per-worker", "1",
    ]
    resumed = runner.invoke(app, [*build, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    computed, loaded = map(int, SUMMARY.search(resumed.output).groups())
    assert loaded > 0 and not (ref / checkpoint.WORK_DIR).exists()
    done = runner.invoke(app, [*build, "--resume"])
    assert done.exit_code == 0 and "already holds a finished reference" in done.output


def test_checkpoint_round_trip_keeps_values_and_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    values = [
        SegmentCheck(
            Moments(7, rng.random(3), rng.random(3), rng.random((3, 3)), rng.random(3)), -1, 4, [b"\x01\xff", b""]
        ),
        Neighbours(
            128, rng.random((5, 3)).astype(np.float32), rng.integers(-1, 9, (5, 3)),
            np.array([np.inf, 1, 2, 3, np.nan], np.float32), rng.random(5), rng.random(5), rng.random(5), 3, 1,
        ),
        tuple(
            Candidates(
                *(rng.integers(0, 9, 4) for _ in range(2)), rng.random(4).astype(np.float32), np.empty(0, np.int64),
                np.empty(0, np.float32),
            )
            for _ in range(2)
        ),
        (rng.random((6, 2)), np.array([3, 5], np.int64)),
        CrossPartial(rng.integers(0, 9, (4, 2)), rng.random((3, 2)) > 0.5, np.zeros((3, 2), bool)),
        CrossPartial(
            rng.integers(0, 9, (4, 1)), np.ones((3, 1), bool), np.zeros((3, 1), bool),
            *(Shortlist(rng.integers(0, 9, 5), rng.integers(0, 9, 5), rng.random(5), rng.random(5)) for _ in range(3)),
        ),
        [1.5, float("inf"), True, 3],
        # int64 row indices are stored as int32 where they fit: the edges, one past them, empty arrays
        [np.array([-(2**31), 2**31 - 1]), np.array([2**31]), np.array([-(2**31) - 1, 0]), np.empty((0, 2), np.int64)],
    ]
    for i, value in enumerate(values):
        path = str(tmp_path / f"{i}.npz")
        checkpoint.save(path, value)
        _assert_same(checkpoint.load(path), value)
    assert sorted(os.listdir(tmp_path)) == [f"{i}.npz" for i in range(len(values))]  # no temporary files left


def _assert_same(got, want):
    assert type(got) is type(want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    elif hasattr(want, "__dataclass_fields__"):
        for f in fields(want):
            _assert_same(getattr(got, f.name), getattr(want, f.name))
    else:
        assert got == want


def test_checkpoint_refuses_foreign_types(tmp_path):
    path = str(tmp_path / "evil.npz")
    np.savez(path, __tree__=np.array(json.dumps({"class": "os:system", "fields": {}})))
    with pytest.raises(ValueError, match="foreign"):
        checkpoint.load(path)


def test_interrupted_write_leaves_no_file(tmp_path):
    def broken(fh):
        fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.write_atomic(str(tmp_path / "x.npz"), broken)
    assert os.listdir(tmp_path) == []


def test_progress_lines_in_a_log(resume_stores, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    real, fake = resume_stores
    with caplog.at_level(logging.INFO, logger="largeemb"):
        largeemb.evaluate(real, fake, k=3, block_rows=256)
    lines = [r.getMessage() for r in caplog.records]
    assert any(re.match(r"radii: \d+/\d+ tasks \(\d+%\), [\d.]+ tasks/s, ETA \d+:\d\d$", line) for line in lines), lines
    assert any(re.match(r"cross: (\d+)/\1 tasks in [\d.]+ s", line) for line in lines), lines


def test_progress_bar_on_a_terminal():
    import io

    stream = io.StringIO()
    with progress.Progress("cross", 3, terminal=True, stream=stream) as bar:
        for _ in range(3):
            bar.advance()
    shown = stream.getvalue()
    assert "cross" in shown and "3/3" in shown and "tasks/s" in shown


def test_bad_data_leaves_no_unfinished_work(tmp_path, write_zarr):
    real = mixture(1200, 8, 1)
    real[700] = np.nan
    result = cli_evaluate(write_zarr("nan.zarr", real), write_zarr("ok.zarr", mixture(1100, 8, 2)), tmp_path / "o")
    assert result.exit_code == 2 and "row 700" in result.output
    assert not (tmp_path / "o" / checkpoint.WORK_DIR).exists()  # a fixed rerun needs no --resume or --force


def test_resume_after_the_middle_rows_changed_is_refused(tmp_path, stores):
    import zarr

    import largeemb
    from conftest import failing_units, unit_hook
    from largeemb.run import checkpoint

    data = mixture(1200, 6, 2, shift=0.3)
    fake = zarr_store(tmp_path / "fake.zarr", data, (300, 6))
    out = tmp_path / "out"
    with unit_hook(failing_units("cross-tile-", after=5)), pytest.raises(RuntimeError, match="node lost"):
        largeemb.evaluate(
            stores["real"], fake, k=(3,), block_rows=128, threads_per_worker=1,
            checkpoint_dir=str(out / checkpoint.WORK_DIR),
        )
    changed = data.copy()
    changed[500:700] = mixture(200, 6, 7, shift=5.0)  # first and last rows as they were
    zarr.open_array(fake, mode="r+")[:] = changed
    line = one_error_line(
        cli_evaluate(stores["real"], fake, out, "--k", "3", "--block-rows", "128", "--no-plots", "--resume")
    )
    assert "fake input changed since the interrupted run" in line and "rows 0:" in line and "--force" in line
    assert not (out / METRICS_FILE).exists()


def test_resume_across_a_checkpoint_format_change_is_refused(resume_stores, tmp_path):
    """Checkpoints name record classes by module path; work kept by an older layout is refused, never misread."""
    real, fake = resume_stores
    out = tmp_path / "old"
    work = out / checkpoint.WORK_DIR
    work.mkdir(parents=True)
    (work / checkpoint.MANIFEST).write_text(json.dumps({"format": checkpoint.FORMAT - 1}))
    refused = cli_evaluate(real, fake, out, *ARGS, "--resume")
    assert refused.exit_code == 2
    line = refused.output.strip().splitlines()[-1]
    assert line.startswith("error:") and f"format {checkpoint.FORMAT - 1}" in line and "--force" in line
    assert (work / checkpoint.MANIFEST).exists()  # refusing destroys nothing


def test_a_pass_whose_worker_took_results_along_runs_again_from_its_checkpoints(tmp_path, caplog):
    """LostWork (a cluster forgot how to recompute a lost result): the pass reruns, loading what was saved."""
    from largeemb.run import graph, session
    from largeemb.run.executor import InProcess, LostWork

    computed = []

    def square(i):
        computed.append(i)
        return i * i

    class LosesWorkOnce(InProcess):
        lost = False

        def compute(self, tasks, output, tracked, progress):
            result = super().compute(tasks, output, tracked, progress)  # every unit is saved on the way
            if not self.lost:
                self.lost = True
                raise LostWork("a worker died")
            return result

    store = checkpoint.open_store(str(tmp_path / "work"), {"test": 1}, resume=False)
    with session.activated(session.Run(LosesWorkOnce(1), store)), caplog.at_level(logging.INFO, logger="largeemb"):
        g = graph.Graph("squares")
        total = g.tree([g.unit(f"square-{i}", square, i) for i in range(5)], int.__add__, "sum")
        assert graph.run(g, total) == 30
    assert sorted(computed) == [0, 1, 2, 3, 4]  # the rerun loaded every unit, computed none again
    closing = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tasks: 5/5 tasks in")]
    assert closing, [r.getMessage() for r in caplog.records]  # the rerun's loaded units are not counted twice


def test_a_pass_that_keeps_losing_workers_without_progress_stops_with_one_error(tmp_path):
    """Workers may be lost many times in a long run; losses in a row with no unit saved between them end
    the pass with exit status 3 (a cluster problem, not the input's), keeping what was saved."""
    from largeemb.errors import WorkersLostError
    from largeemb.run import graph, session
    from largeemb.run.executor import InProcess, LostWork

    class LosesEverything(InProcess):
        calls = 0

        def compute(self, tasks, output, tracked, progress):
            self.calls += 1
            raise LostWork("a worker died")

    executor = LosesEverything(1)
    store = checkpoint.open_store(str(tmp_path / "work"), {"test": 1}, resume=False)
    with session.activated(session.Run(executor, store)):
        g = graph.Graph("squares")
        total = g.tree([g.unit(f"square-{i}", int, i) for i in range(5)], int.__add__, "sum")
        with pytest.raises(WorkersLostError, match="lost 3 times in a row") as raised:
            graph.run(g, total)
    assert executor.calls == graph.LOST_IN_A_ROW and raised.value.exit_code == 3


def _npz_left(work) -> set[str]:
    return {
        name[: -len(checkpoint.SUFFIX)]
        for name in os.listdir(work)
        if name.endswith(checkpoint.SUFFIX) and ".tmp-" not in name
    }


def test_a_unit_leaves_the_disk_even_when_a_consumer_left_it_before_its_sibling_was_saved(tmp_path):
    """u feeds a and b; a's file is released (c consumed it) before b is saved: u must go too."""
    from largeemb.run import graph, session
    from largeemb.run.executor import InProcess

    store = checkpoint.open_store(str(tmp_path / "work"), {"test": 1}, resume=False)
    with session.activated(session.Run(InProcess(1), store)):
        g = graph.Graph("t")
        u = g.unit("u", int, 1)
        a = g.unit("a", int.__add__, u, 1)
        c = g.unit("c", int.__add__, a, 1)
        b = g.unit("b", int.__add__, u, c)  # runs after c, so after a's file is gone
        assert graph.run(g, b) == 4
    assert _npz_left(store.path) == {"t-b"}  # the output's unit alone; every consumed unit left
    assert sorted(os.listdir(store.path)) == [checkpoint.MANIFEST, "t-b.npz"]  # markers go once the pass is complete


def test_after_the_radii_pass_only_its_results_are_on_disk(resume_stores, tmp_path):
    """Tiles, merge states and the diagonal results all leave the disk as the pass goes (the
    run stops at the first cross tile): what is left is each block's radii, which the next pass reads."""
    real, fake = resume_stores
    work = tmp_path / "out" / checkpoint.WORK_DIR
    ran = []
    with unit_hook(recording(ran)), unit_hook(failing_units("cross-tile-", message="stop here")):
        with pytest.raises(RuntimeError, match="stop here"):
            largeemb.evaluate(real, fake, k=(3, 5), block_rows=128, threads_per_worker=1, checkpoint_dir=str(work))
    finishes = {name for name in ran if re.fullmatch(r"radii-(real|fake)-finish-\d+", name)}
    assert len(finishes) == len(row_blocks(1500, 128)) + len(row_blocks(1300, 128))
    assert sum(name.startswith("radii-") for name in ran) > 10 * len(finishes)
    # And the part radii of the rows whose lists were short, one chunk per float64 round.
    parts = {name for name in ran if re.fullmatch(r"float64-parts-(real|fake)-parts-\d+-\d+", name)}
    assert _npz_left(work) == finishes | parts
    assert not [name for name in os.listdir(work) if name.endswith(checkpoint.RELEASED)]
    radii_bytes = (1500 + 1300) * 2 * 8 * (1 + 64)  # float64 radii and 64 part radii for two k
    # About the radii: each small file adds its zip headers (a leaked k-NN state would add ~15 kB per block).
    assert sum(os.path.getsize(work / f"{name}{checkpoint.SUFFIX}") for name in finishes) < 3 * radii_bytes
