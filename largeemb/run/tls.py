"""Encrypted, authenticated scheduler traffic: the ``distributed.security.Security`` a run uses.

Dask's scheduler and workers run whatever code a connected client sends, so on
a shared machine or network anyone who can reach the scheduler's port can run
code as the job's user. With TLS every peer (scheduler, workers, this client)
must show a certificate signed by the cluster's CA, and the traffic is
encrypted.

Where the certificates come from, first found wins: the options
(``tls_ca_file``, ``tls_cert``, ``tls_key``; one certificate and key for every
role), then dask's config (``distributed.comm.tls.ca-file``,
``distributed.comm.tls.client.cert`` / ``.key``, and the scheduler's and
workers' entries), then, for a cluster this job starts itself (``--workers``,
``--cluster``), throw-away ones made for the run (``Security.temporary()``,
which needs the ``cryptography`` package: ``pip install 'largeemb[tls]'``).
"""

from __future__ import annotations

import os
import socket
import ssl

from largeemb.errors import InputError

TLS_OPTIONS = "--tls-ca-file, --tls-cert and --tls-key"
#: Seconds a probe for TLS on a scheduler's port may take.
PROBE_TIMEOUT_S = 3


def wanted(config) -> bool:
    """The run asks for TLS: ``--tls``, a certificate option, or a ``tls://`` scheduler."""
    files = (config.tls_ca_file, config.tls_cert, config.tls_key)
    return bool(config.tls or any(files) or (config.scheduler or "").startswith("tls://"))


def security_of(config):
    """The Security of the run's scheduler traffic, or None for plain TCP."""
    if not wanted(config):
        return None
    from distributed.security import Security

    files = (config.tls_ca_file, config.tls_cert, config.tls_key)
    scheduler = config.scheduler or ""
    if scheduler and not scheduler.startswith("tls://"):
        raise InputError(
            f"TLS asked for, but --scheduler {scheduler} is not a tls:// address",
            "in the job configuration",
            "pass the scheduler's tls://host:port address (the one its log or scheduler file shows)",
        )
    if any(files):
        missing = [name for name, value in zip(("--tls-ca-file", "--tls-cert", "--tls-key"), files) if not value]
        if missing:
            raise InputError(f"{' and '.join(missing)} missing", "in the TLS options", f"pass all of {TLS_OPTIONS}")
        for name, path in zip(("--tls-ca-file", "--tls-cert", "--tls-key"), files):
            if not os.access(path, os.R_OK):
                raise InputError(f"{name} {path} cannot be read", "in the TLS options", "pass a readable PEM file")
        ca, cert, key = files
        return Security(
            tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert, tls_scheduler_key=key,
            tls_worker_cert=cert, tls_worker_key=key, require_encryption=True,
        )
    configured = Security()  # distributed.comm.tls.* from the dask config (files or environment)
    if configured.tls_ca_file and configured.tls_client_cert:
        return configured
    if scheduler:
        raise InputError(
            "a tls:// scheduler needs a certificate its CA signed",
            f"at --scheduler {scheduler}",
            f"pass {TLS_OPTIONS} (or set distributed.comm.tls.ca-file and "
            "distributed.comm.tls.client.cert/key in the dask config)",
        )
    return temporary()


def temporary():
    """Certificates made for this run alone (a CA and one certificate for every role)."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        raise InputError(
            "--tls without certificates needs throw-away ones, made with the cryptography package, "
            "which is not installed",
            "in this Python environment",
            f"pip install 'largeemb[tls]', or pass {TLS_OPTIONS}",
        ) from None


def speaks_tls(address: str) -> bool:
    """Whether the server at ``host:port`` answers a TLS handshake (a plain-TCP dask scheduler does not)."""
    from distributed.comm import parse_address, parse_host_port

    host, port = parse_host_port(parse_address(address)[1])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking whether it speaks TLS, not trusting it
    try:
        with (
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:
        return "alert" in str(exc).lower()  # the server answered in TLS (it refused this probe's certificate)
    except OSError:
        return False
