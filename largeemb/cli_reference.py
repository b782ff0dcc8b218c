"""``largeemb reference build | info | move``: the reference cache of the real set."""

from __future__ import annotations

from typing import Annotated

import typer

from largeemb.cli_options import (
    APP_OPTIONS,
    DEFAULTS,
    BlockRows,
    Cluster,
    Command,
    Debug,
    ForceReference,
    JobCores,
    JobMemory,
    JobWalltime,
    MaxJobs,
    Metric,
    Precision,
    Real,
    RealArray,
    Resume,
    Scheduler,
    ThreadsPerWorker,
    Tls,
    TlsCaFile,
    TlsCert,
    TlsKey,
    Workers,
    batch_and_tls,
    parse_k,
)
from largeemb.cli_process import log_to_stderr, run_action

reference_app = typer.Typer(
    help="Build or inspect a reference cache of the real set (radii per k, moments, fingerprint).", **APP_OPTIONS
)


@reference_app.command("build", cls=Command)
def reference_build(
    real: Real,
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="REF", help="Directory (or s3://, gs:// prefix) for the reference.")
    ],
    k: Annotated[
        str, typer.Option(metavar="K[,K...]", help="Neighbour counts to store radii for, e.g. 3,5,10.")
    ] = "3,5,10",
    metric: Metric = DEFAULTS.metric,
    precision: Precision = DEFAULTS.precision,
    real_array: RealArray = None,
    block_rows: BlockRows = DEFAULTS.block_rows,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads_per_worker: ThreadsPerWorker = None,
    cluster: Cluster = None, max_jobs: MaxJobs = None, job_cores: JobCores = None, job_memory: JobMemory = None,
    job_walltime: JobWalltime = None, tls: Tls = False, tls_ca_file: TlsCaFile = None, tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    resume: Resume = False,
    force: ForceReference = False,
    debug: Debug = False,
):
    """Compute the real set's radii, moments and fingerprint once, for nightly evaluate runs."""
    from largeemb.api import build_reference

    jobs_and_tls = batch_and_tls(locals())

    def action():
        from largeemb.io.reference import is_reference

        log_to_stderr()
        if resume and not force and is_reference(out):
            typer.echo(f"{out} already holds a finished reference; nothing to resume (pass --force to build it again)")
            return
        ref = build_reference(
            real, out, parse_k(k), metric=metric, precision=precision, block_rows=block_rows, real_array=real_array,
            force=force, resume=resume, scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker,
            **jobs_and_tls,
        )
        from largeemb.metrics.prdc import radius_warnings

        asked = parse_k(k)
        for line in radius_warnings(ref.radii(asked), None, asked, inclusive=False):
            typer.echo(f"warning: {line}", err=True)
        typer.echo(
            f"wrote reference {ref.path} (k={','.join(map(str, asked))}, {ref.source.rows} rows); "
            "use it as REAL in `largeemb evaluate`"
        )

    run_action(debug, action)


@reference_app.command("info", cls=Command)
def reference_info(
    ref: Annotated[str, typer.Argument(metavar="REF", help="A reference directory.", show_default=False)],
    debug: Debug = False,
):
    """Print what a reference holds and where its source is."""
    import json

    from largeemb.io.reference import load_reference

    run_action(debug, lambda: typer.echo(json.dumps(load_reference(ref, open_store=False).info(), indent=2)))


@reference_app.command("move", cls=Command)
def reference_move(
    ref: Annotated[str, typer.Argument(metavar="REF", help="A reference directory.", show_default=False)],
    source: Annotated[
        str,
        typer.Argument(metavar="SOURCE", help="Where the real set it was built from lives now.", show_default=False),
    ],
    debug: Debug = False,
):
    """Point a reference at its real set's new place (the content is checked against the fingerprint on every use)."""
    from largeemb.io.reference import move_reference

    run_action(debug, lambda: typer.echo(f"{ref} now reads its source at {move_reference(ref, source)}"))
