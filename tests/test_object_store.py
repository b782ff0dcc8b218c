"""Object stores through the real S3 protocol (a moto server on loopback): inputs and references read from
s3://, results published to s3:// whole or not at all, and a missing backend named with its install command.

The server is reached the way a user reaches MinIO or any S3-compatible service: AWS_ENDPOINT_URL and the
AWS_* credentials in the environment (botocore reads them; worker processes inherit them)."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest
from typer.testing import CliRunner

from conftest import cli_evaluate, mixture, one_error_line, zarr_store
from largeemb import api
from largeemb.cli import app
from largeemb.errors import InputError, OutputExistsError, StoreReadError
from largeemb.io.objectstore import local_side
from largeemb.io.output import METRICS_FILE
from largeemb.io.reference import load_reference, move_reference

BUCKET = "embeddings"
QUICK = {"k": 3, "plots": False}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free loopback port, its endpoint and credentials in the environment, a bucket,
    and the s3fs file system; its staging directory under tmp."""
    s3fs = pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "LARGEEMB_STAGING_DIR": str(tmp_path_factory.mktemp("staging")),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    yield fs
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


@pytest.fixture(scope="module")
def pair(s3, tmp_path_factory):
    """The same real/fake pair locally and in the bucket (duplicated rows too: ties must survive the trip)."""
    base = tmp_path_factory.mktemp("pair")
    real = mixture(400, 6, 1)
    real[200:260] = real[:60]
    local = {
        "real": zarr_store(base / "real.zarr", real, (128, 6)),
        "fake": zarr_store(base / "fake.zarr", mixture(300, 6, 2, shift=0.3), (128, 6)),
    }
    remote = {}
    for role, path in local.items():
        s3.put(path, f"{BUCKET}/inputs/{role}.zarr", recursive=True)
        remote[role] = f"s3://{BUCKET}/inputs/{role}.zarr"
    return local, remote


def _comparable(document: dict) -> dict:
    """A metrics.json document without what names the run or its inputs' places (time, host, paths)."""
    doc = {key: value for key, value in document.items() if key not in ("run", "timings_s")}
    for role in ("real", "fake"):
        doc[role] = {key: value for key, value in doc[role].items() if key not in ("source", "reference")}
    return doc


def _remote_files(fs, url: str) -> dict[str, bytes]:
    root = url.removeprefix("s3://").rstrip("/")
    fs.invalidate_cache()
    return {path[len(root) + 1:]: fs.cat_file(path) for path in fs.find(root)}


def _local_files(path) -> dict[str, bytes]:
    files = {}
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            if not rel.startswith("."):
                files[rel] = open(full, "rb").read()
    return files


def test_evaluate_from_s3_equals_evaluate_from_the_local_store(pair):
    local, remote = pair
    here = api.evaluate(local["real"], local["fake"], **QUICK)
    there = api.evaluate(remote["real"], remote["fake"], **QUICK)
    assert there.real["source"] == remote["real"]
    assert _comparable(there.to_dict()) == _comparable(here.to_dict())


@pytest.mark.slow
def test_worker_processes_read_s3_with_the_credentials_of_the_environment(pair):
    """Each worker process opens the stores itself: the endpoint and keys reach it through the environment."""
    local, remote = pair
    here = api.evaluate(local["real"], local["fake"], **QUICK, block_rows=128)
    there = api.evaluate(remote["real"], remote["fake"], **QUICK, block_rows=128, workers=2, threads_per_worker=1)
    assert _comparable(there.to_dict()) == _comparable(here.to_dict())


def test_a_reference_in_s3_built_from_s3_equals_a_local_one(pair, s3, tmp_path):
    local, remote = pair
    ref_url = f"s3://{BUCKET}/refs/real"
    ref = api.build_reference(remote["real"], ref_url, k=(3,))
    assert ref.path == ref_url and s3.exists(f"{BUCKET}/refs/real/reference.json")
    assert ref.info()["holds"] and ref.radii((3,)).shape == (400, 1)
    api.build_reference(local["real"], str(tmp_path / "ref"), k=(3,))
    here = api.evaluate(str(tmp_path / "ref"), local["fake"], **QUICK)
    there = api.evaluate(ref_url, remote["fake"], **QUICK)
    assert there.real["reference"] == ref_url
    assert _comparable(there.to_dict()) == _comparable(here.to_dict())
    # `reference move` rewrites reference.json in the bucket (one PUT): the same numbers from the local copy
    assert move_reference(ref_url, local["real"]) == os.path.abspath(local["real"])
    assert load_reference(ref_url).source.location == os.path.abspath(local["real"])
    moved = api.evaluate(ref_url, remote["fake"], **QUICK)
    assert moved.metrics == here.metrics


@pytest.mark.slow
def test_results_published_to_s3_equal_the_local_run(pair, s3, tmp_path):
    local, remote = pair
    out_url = f"s3://{BUCKET}/results/one"
    options = {**QUICK, "plots": True, "tsne_samples": 200}
    api.evaluate_to(remote["real"], remote["fake"], str(tmp_path / "local"), **options)
    api.evaluate_to(remote["real"], remote["fake"], out_url, **options)
    there, here = _remote_files(s3, out_url), _local_files(tmp_path / "local")
    assert set(there) == set(here)
    samples = [name for name in here if name.startswith("samples.zarr/")]
    assert samples and all(there[name] == here[name] for name in samples)
    same = _comparable(json.loads(there[METRICS_FILE])) == _comparable(json.loads(here[METRICS_FILE]))
    assert same
    assert os.listdir(os.environ["LARGEEMB_STAGING_DIR"]) == []  # the staging directory went once uploaded


@pytest.mark.slow
def test_an_existing_result_in_s3_is_refused_before_any_work_and_replaced_with_force(pair, s3, monkeypatch):
    _, remote = pair
    out_url = f"s3://{BUCKET}/results/twice"
    first = api.evaluate_to(remote["real"], remote["fake"], out_url, **QUICK)
    calls = []
    monkeypatch.setattr(api, "evaluate", lambda *a, **kw: calls.append(1))
    with pytest.raises(OutputExistsError, match="already holds a result"):
        api.evaluate_to(remote["real"], remote["fake"], out_url, **QUICK)
    assert calls == []
    monkeypatch.undo()
    second = api.evaluate_to(remote["real"], remote["fake"], out_url, force=True, k=4, plots=False, samples=False)
    files = _remote_files(s3, out_url)
    document = json.loads(files[METRICS_FILE])
    assert document["run"]["id"] == second.run["id"] != first.run["id"]
    assert not any(name.startswith("samples.zarr/") for name in files)  # the old result's files went with it


def test_files_of_a_users_by_a_results_names_are_refused_without_force(pair, s3, monkeypatch):
    _, remote = pair
    out_url = f"s3://{BUCKET}/results/theirs"
    s3.pipe_file(f"{out_url}/report.html", b"a page of someone else's")
    calls = []
    monkeypatch.setattr(api, "evaluate", lambda *a, **kw: calls.append(1))
    with pytest.raises(OutputExistsError, match=r"holds files by a result's names \(report.html\)"):
        api.evaluate_to(remote["real"], remote["fake"], out_url, **QUICK)
    assert calls == [] and s3.cat_file(f"{out_url}/report.html") == b"a page of someone else's"
    monkeypatch.undo()
    api.evaluate_to(remote["real"], remote["fake"], out_url, force=True, **{**QUICK, "samples": False})
    assert set(_remote_files(s3, out_url)) == {METRICS_FILE, "report.html"}


def test_an_upload_that_fails_part_way_leaves_no_metrics_json(pair, s3, monkeypatch):
    _, remote = pair
    out_url = f"s3://{BUCKET}/results/cut"
    real_put = s3._put_file  # the coroutine each upload runs (this cached instance is the one the run uses)
    puts = []

    async def failing(lpath, rpath, *args, **kwargs):
        puts.append(rpath)
        await real_put(lpath, rpath, *args, **kwargs)
        if rpath.endswith("report.html"):  # it arrived, and then the connection broke
            raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(s3, "_put_file", failing)
    with pytest.raises(StoreReadError, match="upload stopped before the new metrics.json") as failed:
        api.evaluate_to(remote["real"], remote["fake"], out_url, **QUICK)
    kept = str(failed.value).split("is kept in ", 1)[1].split(" until", 1)[0]
    assert kept.startswith(os.environ["LARGEEMB_STAGING_DIR"]) and os.path.isfile(os.path.join(kept, METRICS_FILE))
    files = _remote_files(s3, out_url)
    assert "report.html" in files and METRICS_FILE not in files  # a file made it, the commit mark did not
    assert ".largeemb-uploading" in files  # which marks them as a cut upload's, for the next run to clear
    monkeypatch.undo()
    # No result there, so the next run needs no --force, and it leaves nothing of the cut one behind.
    api.evaluate_to(remote["real"], remote["fake"], out_url, **{**QUICK, "samples": False})
    assert set(_remote_files(s3, out_url)) == {METRICS_FILE, "report.html"}


@pytest.mark.slow
def test_cli_evaluate_s3_to_s3_and_refused_without_force(pair, s3, tmp_path):
    _, remote = pair
    out_url = f"s3://{BUCKET}/results/cli"
    result = cli_evaluate(remote["real"], remote["fake"], out_url, "--no-plots", "--k", "3")
    assert result.exit_code == 0, result.stderr
    assert f"wrote {out_url}/metrics.json" in result.stdout
    line = one_error_line(cli_evaluate(remote["real"], remote["fake"], out_url, "--no-plots", "--k", "3"))
    assert "already holds a result" in line and "--force" in line


@pytest.mark.slow
def test_cli_reference_build_into_s3_and_info(pair, s3):
    _, remote = pair
    ref_url = f"s3://{BUCKET}/refs/cli"
    built = CliRunner().invoke(app, ["reference", "build", remote["real"], "--out", ref_url, "--k", "3"])
    assert built.exit_code == 0, built.stderr
    assert f"wrote reference {ref_url} " in built.stdout
    info = CliRunner().invoke(app, ["reference", "info", ref_url])
    assert info.exit_code == 0, info.stderr
    assert "radii.zarr" in info.stdout and remote["real"] in info.stdout
    again = CliRunner().invoke(app, ["reference", "build", remote["real"], "--out", ref_url, "--k", "3"])
    assert "already holds a result (reference.json)" in one_error_line(again)


@pytest.mark.parametrize(("url", "package", "extra"), [("s3://b/real.zarr", "s3fs", "s3"), ("gs://b/real.zarr",
                                                                                              "gcsfs", "gcs")])
def test_a_missing_backend_is_one_line_with_the_install_command(url, package, extra, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if it were not installed
    fake = zarr_store(tmp_path / "fake.zarr", mixture(50, 4, 2))
    line = one_error_line(cli_evaluate(url, fake, tmp_path / "out"))
    assert f"needs the {package} package" in line and f"pip install 'largeemb[{extra}]'" in line
    line = one_error_line(cli_evaluate(fake, fake, url.replace("real.zarr", "out")))
    assert f"for --out {url.replace('real.zarr', 'out')}, install it with: pip install 'largeemb[{extra}]'" in line
    with pytest.raises(InputError, match=package):
        api.build_reference(url, str(tmp_path / "ref"))
    assert not os.path.exists(tmp_path / "out")


def test_a_bucket_that_is_not_there_is_refused_before_any_work(pair, s3, monkeypatch):
    _, remote = pair
    calls = []
    monkeypatch.setattr(api, "evaluate", lambda *a, **kw: calls.append(1))
    with pytest.raises(InputError, match="object-store request failed.*so nothing was computed"):
        api.evaluate_to(remote["real"], remote["fake"], "s3://no-such-bucket/out", **QUICK)
    assert calls == []


def test_an_http_out_is_refused_before_any_work(tmp_path):
    fake = zarr_store(tmp_path / "fake.zarr", mixture(50, 4, 2))
    assert "--out cannot be an http(s) URL" in one_error_line(cli_evaluate(fake, fake, "https://example.org/runs"))


@pytest.mark.slow
def test_several_fakes_published_to_s3_equal_their_local_runs_and_resume(pair, s3, tmp_path):
    local, remote = pair
    other = zarr_store(tmp_path / "other.zarr", mixture(200, 6, 5, keep=4), (128, 6))
    out_url = f"s3://{BUCKET}/results/several"
    history = tmp_path / "history.jsonl"
    args = ["evaluate", remote["real"], remote["fake"], other, "--out", out_url, "--k", "3", "--no-plots",
            "--history", str(history)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    files = _remote_files(s3, out_url)
    summary = json.loads(files["summary.json"])
    assert [run["name"] for run in summary["runs"]] == ["fake", "other"]
    for name, fake in (("fake", local["fake"]), ("other", other)):
        there, alone = json.loads(files[f"{name}/{METRICS_FILE}"]), api.evaluate(local["real"], fake, **QUICK).to_dict()
        for key in ("metrics", "by_k", "standard_errors"):  # the numbers (details differ: the shared real side)
            assert there[key] == alone[key]
        assert there["fake"]["fingerprint"] == alone["fake"]["fingerprint"]
    # The history names where each result is; a second call is refused, and --resume finds both finished.
    assert [json.loads(line)["result_dir"] for line in history.read_text().splitlines()] == [
        f"{out_url}/fake", f"{out_url}/other"
    ]
    assert "summary.json" in one_error_line(CliRunner().invoke(app, args))
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stdout.count("already holds a finished result") == 2
    assert len(history.read_text().splitlines()) == 2  # each result's line written once
    assert not os.path.exists(os.path.dirname(local_side(out_url)))  # nothing left in staging
