"""The ``largeemb`` command line: parse, call the Python API, print.

Heavy modules (faiss, dask, zarr, matplotlib) are imported inside the
commands, so ``largeemb --help`` stays fast. Options shared by several
commands are declared in :mod:`largeemb.cli_options`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from largeemb.cli_options import (
    APP_OPTIONS,
    DEFAULTS,
    Baseline,
    BlockRows,
    Cluster,
    Command,
    Debug,
    FailIf,
    FailOnRegression,
    FakeLabels,
    ForceDemo,
    ForceFigures,
    ForceResult,
    ForceStore,
    History,
    JobCores,
    JobMemory,
    JobWalltime,
    Label,
    MaxJobs,
    Metric,
    Precision,
    Real,
    RealArray,
    RealLabels,
    Resume,
    Scheduler,
    ThreadsPerWorker,
    Tls,
    TlsCaFile,
    TlsCert,
    TlsKey,
    Workers,
    batch_and_tls,
    choices,
    parse_k,
    parse_labels,
    parse_names,
)
from largeemb.cli_process import run_action
from largeemb.cli_reference import reference_app
from largeemb.cli_runs import evaluate_and_report
from largeemb.cli_series import add_series_commands
from largeemb.cli_worst import add_worst_command
from largeemb.config import COMPANIONS, PCA_METHODS, EvaluateConfig
from largeemb.errors import InputError
from largeemb.version import __version__

DEMO_ROWS, DEMO_DIM = 20_000, 128

app = typer.Typer(
    name="largeemb",
    help="Exact precision, recall, density, coverage and Fréchet distance for millions of embeddings, out of core.",
    **APP_OPTIONS,
)


def _version(value: bool):
    if value:
        typer.echo(f"largeemb {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_version)
    ] = False,
):
    """Exact precision, recall, density, coverage and Fréchet distance for millions of embeddings, out of core."""


@app.command(cls=Command)
def evaluate(
    real: Real,
    fake: Annotated[
        list[str],
        typer.Argument(
            metavar="FAKE...",
            help="Fake (generated) embeddings, same forms as REAL; several: one result each in DIR/NAME.",
            show_default=False,
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", metavar="DIR",
            help="Directory for metrics.json, report.html and plots (several fakes: DIR/NAME/ each, DIR/summary.json); "
            "or s3://bucket/prefix, gs://...: staged locally, then uploaded with metrics.json last.",
        ),
    ],
    k: Annotated[
        str, typer.Option(metavar="K[,K...]", help="Neighbour count(s), e.g. 5 or 3,5,10; the first is primary.")
    ] = ",".join(map(str, DEFAULTS.k)),
    metric: Metric = DEFAULTS.metric,
    precision: Precision = DEFAULTS.precision,
    inclusive: Annotated[
        bool, typer.Option("--inclusive", help="Count a point on a ball's boundary as inside (<= instead of <).")
    ] = DEFAULTS.inclusive,
    real_array: RealArray = None,
    fake_array: Annotated[
        str | None,
        typer.Option(
            "--fake-array", "--fake-key", metavar="NAME", help="Array name when FAKE is a zarr group or an .npz file."
        ),
    ] = None,
    real_labels: RealLabels = None, fake_labels: FakeLabels = None,
    block_rows: BlockRows = DEFAULTS.block_rows,
    samples: Annotated[
        bool, typer.Option("--samples/--no-samples", help="Write per-sample values to samples.zarr.")
    ] = DEFAULTS.samples,
    standard_errors: Annotated[
        bool,
        typer.Option(
            "--standard-errors/--no-standard-errors",
            help="Standard errors of precision, recall, density and coverage (random splits; about 2.1x the CPU).",
        ),
    ] = DEFAULTS.standard_errors,
    pca: Annotated[
        str,
        typer.Option(
            metavar=choices(PCA_METHODS),
            help="PCA basis of the plots: exact from streamed moments, or scikit-learn's IncrementalPCA.",
        ),
    ] = DEFAULTS.pca,
    tsne_samples: Annotated[
        int, typer.Option(metavar="N", help="Rows of each set in the joint t-SNE subsample (0 skips t-SNE).")
    ] = DEFAULTS.tsne_samples,
    plot_samples: Annotated[
        int, typer.Option(metavar="N", help="Rows of each set drawn as points on pca.png.")
    ] = DEFAULTS.plot_samples,
    no_plots: Annotated[
        bool, typer.Option("--no-plots", help="Write metrics.json only: no projections, no figures.")
    ] = not DEFAULTS.plots,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune/--no-prune", help="Skip tile work that provably changes nothing (results are exact either way)."
        ),
    ] = DEFAULTS.prune,
    companions: Annotated[
        str,
        typer.Option(
            metavar="NAMES",
            help=f"Companion metrics, comma-separated from {','.join(COMPANIONS)} "
            "('none': no companions, 'all': every one).",
        ),
    ] = ",".join(DEFAULTS.companions),
    kid: Annotated[
        bool,
        typer.Option(
            "--kid",
            help="KID as the unbiased MMD² over every pair (a pass of its own, about as long as an unpruned run).",
        ),
    ] = DEFAULTS.kid,
    kid_subsets: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Also KID's subset estimator (torch-fidelity, clean-fid): this many seeded subsets (0: off).",
        ),
    ] = DEFAULTS.kid_subsets,
    kid_subset_size: Annotated[
        int, typer.Option(metavar="N", help="Rows of each set in a KID subset.")
    ] = DEFAULTS.kid_subset_size,
    kad_bandwidth: Annotated[
        float | None,
        typer.Option(metavar="SIGMA", help="KAD's Gaussian bandwidth (default: the fake set's median pair distance)."),
    ] = DEFAULTS.kad_bandwidth,
    rke_bandwidth: Annotated[
        float | None,
        typer.Option(metavar="SIGMA", help="RKE's Gaussian bandwidth (default: half the RMS real pair distance)."),
    ] = DEFAULTS.rke_bandwidth,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads_per_worker: ThreadsPerWorker = None,
    cluster: Cluster = None, max_jobs: MaxJobs = None, job_cores: JobCores = None, job_memory: JobMemory = None,
    job_walltime: JobWalltime = None, tls: Tls = False, tls_ca_file: TlsCaFile = None, tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    label: Label = None,
    history: History = None,
    fail_if: FailIf = None,
    fail_on_regression: FailOnRegression = None,
    baseline: Baseline = None,
    resume: Resume = False,
    force: ForceResult = False,
    debug: Debug = False,
):
    """Evaluate each FAKE against REAL and write metrics.json, report.html, samples.zarr and plots to --out.

    Exit status: 0; 2 bad input; 3 a store could not be read; 4 every result was published but a gate
    (--fail-if, --fail-on-regression) failed; 130/143 interrupted.
    """
    jobs_and_tls = batch_and_tls(locals())

    def action():
        config = EvaluateConfig(
            k=parse_k(k), metric=metric, precision=precision, inclusive=inclusive, block_rows=block_rows,
            samples=samples, standard_errors=standard_errors,
            pca=pca, tsne_samples=tsne_samples, plot_samples=plot_samples, plots=not no_plots,
            prune=prune, companions=parse_names(companions), kid=kid, kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size, kad_bandwidth=kad_bandwidth, rke_bandwidth=rke_bandwidth,
            workers=workers, threads_per_worker=threads_per_worker,
            scheduler=scheduler, **jobs_and_tls,
        )
        from largeemb.series.gates import parse_gates

        code = evaluate_and_report(
            real, fake, out, config, real_array=real_array, fake_array=fake_array, real_labels=real_labels,
            fake_labels=fake_labels, force=force, resume=resume,
            labels=parse_labels(label), history=history, gates=parse_gates(fail_if) if fail_if else (),
            regression_z=fail_on_regression, baseline=baseline,
        )
        if code:
            raise typer.Exit(code)

    run_action(debug, action)


@app.command(cls=Command)
def plot(
    run: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN...",
            help="Output directory of a `largeemb evaluate` run; several (with --out): their fakes on one PCA basis.",
            show_default=False,
        ),
    ],
    out: Annotated[
        str | None, typer.Option("--out", "-o", metavar="DIR", help="Directory for the figures (default: RUN itself).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", metavar="[png|svg|pdf]", help="File format of the figures.")] = "png",
    dpi: Annotated[int | None, typer.Option(metavar="N", help="Raster resolution (default 150).")] = None,
    force: ForceFigures = False,
    debug: Debug = False,
):
    """Redraw every plot of a finished run from its saved data, without recomputing distances; with several
    runs of one real set, draw their fake sets together (overlay.png)."""
    from largeemb.report.overlay import draw_overlay
    from largeemb.report.stage import redraw

    def action():
        if len(run) > 1:
            if out is None:
                raise InputError("several runs need --out for their overlay", "on the command line", "pass --out DIR")
            typer.echo(f"wrote {draw_overlay(run, out, force=force, fmt=fmt, dpi=dpi)}")
            return
        for path in redraw(run[0], out, force=force, fmt=fmt, dpi=dpi):
            typer.echo(f"wrote {path}")

    run_action(debug, action)


@app.command(cls=Command)
def synth(
    dst: Annotated[str, typer.Argument(metavar="DST", help="Zarr store to write.", show_default=False)],
    rows: Annotated[int, typer.Option(metavar="N", help="Number of rows.")],
    dim: Annotated[int, typer.Option(metavar="D", help="Embedding dimension.")],
    seed: Annotated[
        int, typer.Option(metavar="S", help="Seed of the samples (mode centres depend only on dim and modes).")
    ] = 0,
    shift: Annotated[float, typer.Option(metavar="X", help="Constant added to every coordinate.")] = 0.0,
    modes: Annotated[int, typer.Option(metavar="N", help="Gaussian mixture modes.")] = 10,
    drop_modes: Annotated[int, typer.Option(metavar="M", help="Leave out the last M modes (mode collapse).")] = 0,
    force: ForceStore = False,
    debug: Debug = False,
):
    """Write reproducible synthetic embeddings (a Gaussian mixture) to a zarr store."""
    from largeemb.io.synth import write_synth

    run_action(
        debug,
        lambda: typer.echo(
            "wrote "
            f"{write_synth(dst, rows, dim, seed=seed, shift=shift, modes=modes, drop_modes=drop_modes, force=force)}"
        ),
    )


@app.command(cls=Command)
def convert(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC", help="NumPy .npy or .npz file (memory-mapped or streamed, never unpickled).",
            show_default=False,
        ),
    ],
    dst: Annotated[str, typer.Argument(metavar="DST", help="Zarr store to write.", show_default=False)],
    key: Annotated[
        str | None, typer.Option(metavar="NAME", help="Array name inside an .npz file (default: the only array).")
    ] = None,
    force: ForceStore = False,
    debug: Debug = False,
):
    """Convert a .npy or .npz file into a chunked zarr array without loading it whole."""
    from largeemb.io.synth import convert_npy

    run_action(debug, lambda: typer.echo(f"wrote {convert_npy(src, dst, key=key, force=force)}"))


@app.command(cls=Command)
def demo(
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="DIR", help="Directory for the demo data and results.")
    ] = "largeemb-demo",
    rows: Annotated[int, typer.Option(metavar="N", help="Rows of each synthetic set.")] = DEMO_ROWS,
    dim: Annotated[int, typer.Option(metavar="D", help="Embedding dimension.")] = DEMO_DIM,
    force: ForceDemo = False,
    debug: Debug = False,
):
    """Write a real set and a shifted, partly mode-dropped fake set, then evaluate them."""
    from largeemb.io.synth import write_synth

    def action():
        data = os.path.join(out, "data")
        ours = _ours(data)  # an earlier demo's data: its result here is the demo's own to replace
        real = write_synth(os.path.join(data, "real.zarr"), rows, dim, seed=0, force=force or ours)
        fake = write_synth(
            os.path.join(data, "fake.zarr"), rows, dim, seed=1, shift=0.05, drop_modes=3, force=force or ours
        )
        typer.echo(f"demo data: {real} (real), {fake} (fake: shifted by 0.05, 3 of 10 modes dropped)")
        code = evaluate_and_report(real, [fake], out, DEFAULTS, force=force or ours)
        if code:
            raise typer.Exit(code)

    run_action(debug, action)


app.add_typer(reference_app, name="reference")
add_series_commands(app)  # history, compare, report
add_worst_command(app)


def _ours(data_dir: str) -> bool:
    """Demo data is ours to rewrite; results are not (they need --force)."""
    return os.path.isdir(data_dir)


def main():  # console-script entry point
    app(prog_name="largeemb")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
