"""Encrypted, authenticated scheduler traffic: a TLS cluster gives the in-process result; a
client without a certificate of the cluster's CA, a certificate from another CA, and a plain
tcp:// address are each refused with one clear line (exit 2). Everything on 127.0.0.1."""

import json

import pytest
from distributed import LocalCluster
from distributed.security import Security
from typer.testing import CliRunner

from conftest import mixture, zarr_store
from largeemb.cli import app
from largeemb.config import EvaluateConfig
from largeemb.errors import InputError
from largeemb.run import cluster, graph, session, tls

pytest.importorskip("cryptography")  # Security.temporary() makes the certificates

runner = CliRunner()
ARGS = ["--k", "3,5", "--block-rows", "256", "--no-plots"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls-data")
    real, fake = mixture(900, 8, 1), mixture(800, 8, 2, keep=5, shift=0.1)
    return [zarr_store(root / "real.zarr", real, (300, 8)), zarr_store(root / "fake.zarr", fake, (300, 8))]


def _pem_files(folder, security: Security, name: str) -> list[str]:
    """A Security's CA, certificate and key (PEM text in memory) as the files the options take."""
    paths = []
    for part, text in (
        ("ca", security.tls_ca_file), ("cert", security.tls_client_cert), ("key", security.tls_client_key),
    ):
        path = folder / f"{name}-{part}.pem"
        path.write_text(text)
        path.chmod(0o600)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A scheduler and one worker process that speak TLS only and accept only certificates of
    their CA; (address, the cluster's ca/cert/key files, another CA's files)."""
    folder = tmp_path_factory.mktemp("certificates")
    ours, theirs = Security.temporary(), Security.temporary()
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, protocol="tls://", security=ours, host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local:
        yield local.scheduler_address, _pem_files(folder, ours, "ours"), _pem_files(folder, theirs, "theirs")


def _tls_options(files) -> list[str]:
    return ["--tls-ca-file", files[0], "--tls-cert", files[1], "--tls-key", files[2]]


def _evaluate(stores, out, *extra):
    return runner.invoke(app, ["evaluate", *stores, "--out", str(out), *ARGS, *extra])


def _numbers(out) -> dict:
    written = json.loads((out / "metrics.json").read_text())
    return {"metrics": written["metrics"], "by_k": written["by_k"]}


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[-1]


@pytest.mark.slow
def test_a_tls_cluster_gives_the_in_process_result(stores, tls_cluster, tmp_path):
    address, ours, _ = tls_cluster
    assert address.startswith("tls://")
    plain = _evaluate(stores, tmp_path / "in-process")
    assert plain.exit_code == 0, plain.output
    result = _evaluate(stores, tmp_path / "tls", "--scheduler", address, *_tls_options(ours))
    assert result.exit_code == 0, result.output
    assert _numbers(tmp_path / "tls") == _numbers(tmp_path / "in-process")


def test_a_client_without_the_clusters_certificate_is_refused(stores, tls_cluster, tmp_path):
    address, ours, theirs = tls_cluster
    # The cluster's CA (so this client trusts the scheduler), but a certificate the CA never signed.
    result = _evaluate(stores, tmp_path / "o", "--scheduler", address, *_tls_options([ours[0], theirs[1], theirs[2]]))
    line = _error_line(result)
    assert line.startswith("error: the dask scheduler refused this client's TLS certificate"), line
    assert not (tmp_path / "o" / "metrics.json").exists()
    print(line)


def test_a_scheduler_certificate_from_another_ca_is_refused(stores, tls_cluster, tmp_path):
    address, _, theirs = tls_cluster
    line = _error_line(_evaluate(stores, tmp_path / "o", "--scheduler", address, *_tls_options(theirs)))
    assert line.startswith("error: the dask scheduler's TLS certificate is not signed by the CA this client trusts"), (
        line
    )


def test_a_tls_scheduler_without_certificates_is_refused_before_connecting(stores, tls_cluster, tmp_path):
    address, _, _ = tls_cluster
    line = _error_line(_evaluate(stores, tmp_path / "o", "--scheduler", address))
    assert line.startswith("error: a tls:// scheduler needs a certificate its CA signed"), line


def test_a_tcp_address_to_a_tls_scheduler_fails_with_one_clear_line(stores, tls_cluster, tmp_path, monkeypatch):
    address, _, _ = tls_cluster
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 5)
    line = _error_line(_evaluate(stores, tmp_path / "o", "--scheduler", address.replace("tls://", "tcp://")))
    assert line.startswith("error: the dask scheduler speaks TLS, and this client plain TCP"), line
    assert "tls://" in line


@pytest.mark.slow
def test_workers_with_tls_start_a_local_cluster_that_speaks_tls_only():
    with session.open_run(EvaluateConfig(workers=1, threads_per_worker=1, tls=True)) as run:
        assert run.executor.client.scheduler.address.startswith("tls://")
        assert "over TLS" in run.executor.describe()
        g = graph.Graph("probe")
        assert graph.run(g, [g.unit("one", int, "7")], "probe") == [7]  # tasks run over it
        # Nothing without the run's certificate gets in.
        assert not tls.speaks_tls("tcp://127.0.0.1:9")  # (nothing listens there at all)
        assert tls.speaks_tls(run.executor.client.scheduler.address)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"tls": True}, "TLS options apply to dask clusters only"),
        ({"workers": 2, "tls_cert": "c.pem"}, "--tls-ca-file and --tls-key missing"),
        ({"scheduler": "tcp://127.0.0.1:8786", "tls": True}, "is not a tls:// address"),
        ({"workers": 2, "tls_ca_file": "/nonexistent/ca.pem", "tls_cert": "c", "tls_key": "k"}, "cannot be read"),
    ],
)
def test_tls_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        tls.security_of(EvaluateConfig(**options))


def test_tls_without_certificates_or_cryptography_names_the_extra(monkeypatch):
    def missing():
        raise ImportError("No module named 'cryptography'")

    monkeypatch.setattr(Security, "temporary", staticmethod(missing))
    with pytest.raises(InputError, match=r"pip install 'largeemb\[tls\]'"):
        tls.security_of(EvaluateConfig(workers=2, tls=True))
