"""Publishing a result is all or nothing: whether the run is killed at any moment, a move into --out fails,
an old file cannot be deleted or the disk fills up, --out holds the previous result whole or the new one
whole, never a mix or a partial metrics.json, and the next run that claims --out clears what was left."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_evaluate, one_error_line, snapshot
from largeemb.api import RESULT_FILES
from largeemb.io import output
from largeemb.io.lock import LOCK_FILE
from largeemb.io.output import METRICS_FILE, result_dir

ROOT = Path(__file__).parents[1]


def _rmtree_failing_in(monkeypatch, directory: Path, suffix: str, err=errno.EBUSY):
    """shutil.rmtree fails (as on another user's files, a busy mount, NFS) for ``directory/*suffix``."""
    real = shutil.rmtree

    def failing(path, *args, **kwargs):
        if Path(path).parent == directory and str(path).endswith(suffix):
            raise OSError(err, os.strerror(err), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", failing)


def test_old_result_that_cannot_be_deleted_does_not_cost_the_new_one(stores, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert cli_evaluate(stores["real"], stores["fake"], out, "--no-plots", "--k", "3").exit_code == 0
    _rmtree_failing_in(monkeypatch, out, "samples.zarr")
    result = cli_evaluate(stores["real"], stores["fake"], out, "--no-plots", "--k", "4", "--force")
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / METRICS_FILE).read_text())["params"]["k"] == [4]
    assert "could not delete the replaced samples.zarr" in result.stderr
    monkeypatch.undo()
    # The next run that claims --out clears what was left.
    assert cli_evaluate(stores["real"], stores["fake"], out, "--no-plots", "--k", "5", "--force").exit_code == 0
    assert not [n for n in os.listdir(out) if n.startswith(output.OLD_PREFIX)]


def test_a_publish_that_fails_puts_the_old_result_back(stores, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert cli_evaluate(stores["real"], stores["fake"], out, "--no-plots", "--k", "3").exit_code == 0
    before = snapshot(out)
    real_replace = output.os.replace

    def failing(src, dst):  # moving the new samples.zarr in fails, after the old result went aside
        if str(src).endswith("samples.zarr") and output.STAGING_PREFIX in str(src):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(output.os, "replace", failing)
    line = one_error_line(cli_evaluate(stores["real"], stores["fake"], out, "--no-plots", "--k", "4", "--force"))
    assert "previous result was put back" in line
    assert snapshot(out) == before
    assert sorted(os.listdir(out)) == [".work", "metrics.json", "report.html", "samples.zarr"]  # .work: to --resume


def test_a_killed_publish_is_undone_by_the_next_claim(tmp_path):
    out = tmp_path / "out"
    with output.result_dir(str(out), False, ("metrics.json", "samples.zarr", "pca.png")) as staging:
        staging.write_json("metrics.json", {"version": 1})
        Path(staging.file("pca.png")).write_text("1")
    # As a kill after the old entries went aside and the new pca.png came in:
    os.replace(out / "metrics.json", out / ".old-abcd1234.metrics.json")
    os.replace(out / "pca.png", out / ".old-abcd1234.pca.png")
    (out / "pca.png").write_text("2")
    (out / "samples.zarr").mkdir()
    with pytest.raises(KeyError):
        with output.result_dir(str(out), True, ("metrics.json", "samples.zarr", "pca.png")):
            raise KeyError("the next run fails before publishing")
    assert sorted(os.listdir(out)) == ["metrics.json", "pca.png"]
    assert (out / "pca.png").read_text() == "1"


# -- killed runs -----------------------------------------------------------------------------


def _valid(path: Path) -> dict | None:
    """Parsed metrics.json, or None if absent; a partial file fails the test here."""
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _cli(stores, out, k):
    return [
        sys.executable, "-m", "largeemb", "evaluate", stores["real"], stores["fake"], "--out", str(out), "--k", str(k),
        "--tsne-samples", "200",
    ]


@pytest.fixture(scope="module")
def previous_result(stores, tmp_path_factory):
    """A finished run's --out, and how long a whole CLI run takes here."""
    out = tmp_path_factory.mktemp("previous") / "out"
    start = time.perf_counter()
    subprocess.run(_cli(stores, out, 3), check=True, capture_output=True, cwd=ROOT)
    return out, time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_killed_cli_run_leaves_previous_result_or_none(seed, tmp_path, stores, previous_result):
    out = tmp_path / "out"
    shutil.copytree(previous_result[0], out)
    previous = (out / METRICS_FILE).read_bytes()

    # From start-up to past the end of a whole run: any phase may be hit.
    delay = np.random.default_rng(seed).uniform(0.2, 1.0) * previous_result[1]
    rerun = subprocess.Popen(
        [*_cli(stores, out, 5), "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    time.sleep(delay)
    rerun.send_signal(signal.SIGKILL)
    rerun.wait()

    found = _valid(out / METRICS_FILE)
    assert found is None or (out / METRICS_FILE).read_bytes() == previous or found["params"]["k"] == [5]
    # The next run takes over the dead run's lock and clears its staging directory.
    with pytest.raises(KeyError):
        with result_dir(str(out), True, RESULT_FILES):
            raise KeyError("nothing to publish")
    assert not [n for n in os.listdir(out) if n.startswith((".staging-", LOCK_FILE))]
    assert _valid(out / METRICS_FILE) == found


PUBLISH_FOREVER = """
import json, os, sys, time
from largeemb.io import output
from largeemb.api import RESULT_FILES
from largeemb.io.output import result_dir
out = sys.argv[1]

def slowed(step):
    def call(*args, **kwargs):
        step(*args, **kwargs)
        time.sleep(0.003)  # widen the gaps between steps, so that kills land in them
    return call

output.os.replace = slowed(os.replace)
output.os.remove = slowed(os.remove)
for version in range(10**6):
    with result_dir(out, True, RESULT_FILES) as staging:
        staging.write_json("metrics.json", {"version": version, "padding": "x" * 200_000})
        names = ["pca.png", "samples.zarr"] if version % 2 else ["k_sweep.png"]
        for name in names:
            if name.endswith(".zarr"):
                os.makedirs(staging.file(name))
                open(os.path.join(staging.file(name), "zarr.json"), "w").write(str(version))
            else:
                open(staging.file(name), "w").write(str(version))
    if version == 0:
        print("started", flush=True)
"""


@pytest.mark.parametrize("seed", range(5))
def test_killed_publisher_never_leaves_a_mixed_or_partial_result(seed, tmp_path):
    """Kills land inside publish() often here: it is most of what the loop does."""
    out = tmp_path / "out"
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISH_FOREVER, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert publisher.stdout.readline().strip() == "started"
    time.sleep(np.random.default_rng(seed).uniform(0.05, 0.4))
    publisher.send_signal(signal.SIGKILL)
    publisher.wait()

    _assert_one_whole_version_or_none(out)


def _assert_one_whole_version_or_none(out: Path):
    found = _valid(out / METRICS_FILE)
    results = {n for n in os.listdir(out) if n in RESULT_FILES} - {METRICS_FILE}
    if found is not None:
        version = found["version"]
        assert results == ({"pca.png", "samples.zarr"} if version % 2 else {"k_sweep.png"})
        for name in results:
            content = out / name / "zarr.json" if name.endswith(".zarr") else out / name
            assert content.read_text() == str(version)


class Crash(BaseException):
    """Stands in for the process dying at one exact step."""


def _stage(staging, version):
    staging.write_json(METRICS_FILE, {"version": version})
    for name in ["pca.png", "samples.zarr"] if version % 2 else ["k_sweep.png"]:
        if name.endswith(".zarr"):
            os.makedirs(staging.file(name))
            Path(staging.file(name), "zarr.json").write_text(str(version))
        else:
            Path(staging.file(name)).write_text(str(version))


def test_crash_at_every_step_of_publish(tmp_path, monkeypatch):
    """Deterministic companion of the random kills: stop publish() after each file-system step."""
    steps = 0
    for crash_at in range(1, 50):
        out = tmp_path / f"out{crash_at}"
        with result_dir(str(out), False, RESULT_FILES) as staging:
            _stage(staging, 1)
        calls = 0

        def step(real):
            def call(*args, **kwargs):
                nonlocal calls
                calls += 1
                if calls == crash_at:  # noqa: B023 (call runs only within this iteration)
                    raise Crash
                return real(*args, **kwargs)

            return call

        with monkeypatch.context() as patch:
            for name in ("replace", "remove", "unlink"):
                patch.setattr(output.os, name, step(getattr(os, name)))
            patch.setattr(output.shutil, "rmtree", step(shutil.rmtree))
            try:
                with result_dir(str(out), True, RESULT_FILES) as staging:
                    _stage(staging, 2)
                    calls = 0  # count only what publish() does
            except Crash:
                pass
            else:
                steps = crash_at - 1
                break
        _assert_one_whole_version_or_none(out)
    assert steps >= 4  # remove old metrics, old pca.png, old samples.zarr; move new files


# -- a full disk: one line naming what needed the space, the old result intact ----------------


def _enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _full_at_lock(monkeypatch):
    real = os.pwrite
    monkeypatch.setattr(
        os, "pwrite",
        lambda fd, data, offset: (
            (_ for _ in ()).throw(_enospc(".largeemb.lock")) if b"pid" in data else real(fd, data, offset)
        ),
    )
    return "the lock file"


def _full_at_checkpoints(monkeypatch):
    from largeemb.run import checkpoint

    monkeypatch.setattr(checkpoint, "save", lambda path, value: (_ for _ in ()).throw(_enospc(path)))
    return "the checkpoints"


def _full_at_staging(monkeypatch):
    monkeypatch.setattr(
        output.Staging, "write_json", lambda self, name, payload: (_ for _ in ()).throw(_enospc(self.file(name)))
    )
    return "the result being staged"


def _full_at_publish(monkeypatch):
    real = os.replace

    def replace(src, dst):
        if Path(src).parent.name.startswith(output.STAGING_PREFIX):  # a staged entry moving into --out
            raise _enospc(dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return "could not publish"


FULL = [_full_at_lock, _full_at_checkpoints, _full_at_staging, _full_at_publish]


@pytest.mark.parametrize("fill", FULL, ids=[f.__name__[9:] for f in FULL])
def test_a_full_disk_is_one_line_naming_what_needed_space(fill, stores, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert cli_evaluate(stores["real"], stores["fake"], out, "--no-plots", "--k", "3").exit_code == 0
    before = snapshot(out)
    what = fill(monkeypatch)
    line = one_error_line(cli_evaluate(stores["real"], stores["fake"], out, "--no-plots", "--k", "4", "--force"))
    monkeypatch.undo()
    assert what in line and "No space left on device" in line
    assert snapshot(out) == before
