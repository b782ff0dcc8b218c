"""The ``largeemb`` command line: parse, call the Python API, print.

Heavy modules (faiss, dask, zarr, matplotlib) are imported inside the
commands, so ``largeemb --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Optional

import typer

from typer.core import TyperCommand, TyperGroup

from largeemb.config import CLUSTERS, COMPANIONS, DEFAULT_MAX_JOBS, METRICS, PCA_METHODS, PRECISIONS, EvaluateConfig
from largeemb.errors import InputError
from largeemb.version import __version__

DEFAULTS = EvaluateConfig()
DEMO_ROWS, DEMO_DIM = 20_000, 128


def _plain_usage(pieces: list[str]) -> list[str]:
    """``REAL FAKE`` as usage lines have always read, not typer's ``{REAL} {FAKE}``."""
    return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


class _Command(TyperCommand):
    def collect_usage_pieces(self, ctx):
        return _plain_usage(super().collect_usage_pieces(ctx))


class _Group(TyperGroup):
    def collect_usage_pieces(self, ctx):
        return _plain_usage(super().collect_usage_pieces(ctx))


#: Plain help (no rich panels, whose type column shows ``<bool>`` for flags);
#: ``-h`` as well as ``--help``, as most tools accept.
_APP_OPTIONS = dict(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None, cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(
    name="largeemb",
    help="Exact precision, recall, density, coverage and Fréchet distance for millions of embeddings, out of core.",
    **_APP_OPTIONS,
)


def _choices(values) -> str:
    """Metavar listing an option's choices, e.g. ``[euclidean|cosine]`` (the config validates them)."""
    return f"[{'|'.join(values)}]"


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


Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")]


def _force(what: str):
    """``--force``, with what it replaces in this command."""
    return Annotated[bool, typer.Option("--force", help=what)]


#: --force in each command says what it replaces there.
ForceResult = _force('Replace the result already in --out (metrics, samples, plots) and discard unfinished work there.')
ForceFigures = _force("Replace figures already in another --out directory (RUN's own figures are always redrawn).")
ForceStore = _force('Replace DST if it exists.')
ForceDemo = _force("Replace a result already in --out (the demo's own data is always rewritten).")
ForceReference = _force('Replace the reference already in --out.')
Metric = Annotated[str, typer.Option(metavar=_choices(METRICS), help="Distance (cosine L2-normalises rows first).")]
Precision = Annotated[
    str,
    typer.Option(
        metavar=_choices(PRECISIONS),
        help="How tiles multiply first; results are exact either way. bf16 screens tiles in bfloat16 (needs largeemb[bf16]); "
        "auto: bf16 on CPUs with AVX512-BF16 or AMX when the extra is installed, else float32.",
    ),
]


def _parse_k(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"--k must be whole numbers separated by commas, got {text!r}", "on the command line", "e.g. --k 5 or --k 3,5,10") from None


def _parse_names(text: str) -> tuple[str, ...]:
    if text.strip() == "all":
        return COMPANIONS
    return () if text.strip() in ("", "none") else tuple(part.strip() for part in text.split(","))


def _run(debug: bool, action):
    """Run ``action``; any failure becomes one ``error:`` line and its exit status.

    2: bad input or usage (also a full disk or a permission problem while
    writing); 3: a store that could not be read; 130 on Ctrl-C, 143 on SIGTERM
    (what SLURM and Kubernetes send first), both unwound like an error, so the
    lock and staging go and the previous result stays.
    """
    import signal

    previous = _terminate_as_interrupt(signal)
    try:
        return action()
    except InputError as exc:
        if debug:
            raise
        _fail(f"error: {exc}", exc.exit_code)
    except OSError as exc:
        if debug:
            raise
        from largeemb.io.output import write_failure

        _fail(f"error: {write_failure(exc)}", 2)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        _fail(f"error: {'terminated (SIGTERM)' if terminated else 'interrupted'}, nothing was published", 143 if terminated else 130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound exactly like Ctrl-C."""


def _terminate_as_interrupt(signal):
    """Handle SIGTERM like SIGINT while a command runs (main thread only); the handler it replaced."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminate)


def _fail(line: str, code: int):
    """Print the one error line, then keep anything else (destructors of clients and
    sessions, dying worker processes) off the terminal: the line is the whole story."""
    typer.echo(line, err=True)
    if sys.stderr is sys.__stderr__:  # not under a test runner that captures stderr
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    raise typer.Exit(code)


def _print_metrics(result) -> None:
    """The numbers and warnings, as soon as they exist (before the plots are drawn)."""
    typer.echo("  ".join(f"{name} {value:.4f}" for name, value in result.metrics.items()))
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)


def _report(result, out: str) -> None:
    """What was written, once it is published."""
    typer.echo(f"wrote {os.path.join(out, 'metrics.json')}")
    if result.projection is not None:
        typer.echo(f"wrote plots to {out} (redraw them with `largeemb plot {out}`)")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


class _LogFormatter(logging.Formatter):
    """``largeemb: ...`` on a terminal; with a timestamp in batch logs (stderr not a terminal)."""

    def format(self, record):
        line = f"largeemb: {record.getMessage()}"
        if sys.stderr.isatty():
            return line
        return f"{self.formatTime(record, '%Y-%m-%d %H:%M:%S')} {line}"


def _log_to_stderr() -> None:
    """Progress and run notes go to stderr as ``largeemb: ...`` lines."""
    logger = logging.getLogger("largeemb")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_LogFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _evaluate_to(real, fake, out: str, config: EvaluateConfig, **options):
    from largeemb.api import evaluate_to

    _log_to_stderr()
    printed = []

    def on_metrics(result):
        _print_metrics(result)
        printed.append(len(result.warnings))

    result = evaluate_to(real, fake, out, config, on_metrics=on_metrics, **options)
    for warning in result.warnings[printed[0] if printed else 0 :]:  # e.g. a failed plot stage
        typer.echo(f"warning: {warning}", err=True)
    return result


Real = Annotated[
    str, typer.Argument(metavar="REAL", help="Real embeddings: zarr array or group (local path or fsspec URL), .npy or .npz file.", show_default=False)
]
RealArray = Annotated[
    Optional[str], typer.Option("--real-array", "--real-key", metavar="NAME", help="Array name when REAL is a zarr group or an .npz file (default: the only array).")
]
BlockRows = Annotated[
    Optional[int],
    typer.Option(metavar="N", help="Rows per streamed block (one task); GEMMs run in 2048-row panels inside it. Default: 4096, more for sets over 262,144 rows."),
]
Scheduler = Annotated[Optional[str], typer.Option(metavar="ADDRESS", help="Run on the running dask cluster at this address (e.g. tcp://host:8786).")]
Workers = Annotated[Optional[int], typer.Option(metavar="N", help="Start a LocalCluster of N worker processes (default: run in-process).")]
ThreadsPerWorker = Annotated[
    Optional[int], typer.Option(metavar="N", help="Task threads per worker (in-process: of this process); default: cores / workers.")
]
# Worker jobs of a batch system, and TLS: declared once, taken by name in each command (_batch_and_tls).
Cluster = Annotated[
    Optional[str],
    typer.Option(metavar=_choices(CLUSTERS), help="Submit dask worker jobs to this batch system (needs largeemb[jobqueue]): 0 to --max-jobs, as the work needs them, configured by the site's jobqueue.yaml."),
]
MaxJobs = Annotated[Optional[int], typer.Option(metavar="N", help=f"With --cluster: at most N worker jobs at a time (default {DEFAULT_MAX_JOBS}).")]
JobCores = Annotated[Optional[int], typer.Option(metavar="N", help="With --cluster: cores per worker job (default: jobqueue.KIND.cores in the dask config).")]
JobMemory = Annotated[Optional[str], typer.Option(metavar="SIZE", help="With --cluster: memory per worker job, e.g. 32GB (default: jobqueue.KIND.memory).")]
JobWalltime = Annotated[
    Optional[str], typer.Option(metavar="TIME", help="With --cluster: walltime per worker job, e.g. 04:00:00 (default: jobqueue.KIND.walltime); workers retire before it and are replaced.")
]
Tls = Annotated[bool, typer.Option("--tls", help="Encrypt and authenticate the scheduler traffic of the cluster this job starts (--workers, --cluster); throw-away certificates unless given.")]
TlsCaFile = Annotated[Optional[str], typer.Option("--tls-ca-file", metavar="PEM", help="TLS: the cluster's CA certificate (default: distributed.comm.tls.ca-file in the dask config).")]
TlsCert = Annotated[Optional[str], typer.Option("--tls-cert", metavar="PEM", help="TLS: this job's certificate, signed by that CA (default: distributed.comm.tls.client.cert).")]
TlsKey = Annotated[Optional[str], typer.Option("--tls-key", metavar="PEM", help="TLS: the certificate's private key (default: distributed.comm.tls.client.key).")]
BATCH_AND_TLS = ("cluster", "max_jobs", "job_cores", "job_memory", "job_walltime", "tls", "tls_ca_file", "tls_cert", "tls_key")


def _batch_and_tls(params: dict) -> dict:
    """A command's batch-job and TLS options (from its ``locals()``), as config fields."""
    return {name: params[name] for name in BATCH_AND_TLS}


Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from the finished tasks kept in OUT/.work (a finished run: say so and exit 0).")]


@app.command(cls=_Command)
def evaluate(
    real: Real,
    fake: Annotated[str, typer.Argument(metavar="FAKE", help="Fake (generated) embeddings, same forms as REAL.", show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", metavar="DIR", help="Directory for metrics.json and plots.")],
    k: Annotated[str, typer.Option(metavar="K[,K...]", help="Neighbour count(s), e.g. 5 or 3,5,10; the first is primary.")] = ",".join(map(str, DEFAULTS.k)),
    metric: Metric = DEFAULTS.metric,
    precision: Precision = DEFAULTS.precision,
    inclusive: Annotated[bool, typer.Option("--inclusive", help="Count a point on a ball's boundary as inside (<= instead of <).")] = DEFAULTS.inclusive,
    real_array: RealArray = None,
    fake_array: Annotated[Optional[str], typer.Option("--fake-array", "--fake-key", metavar="NAME", help="Array name when FAKE is a zarr group or an .npz file.")] = None,
    block_rows: BlockRows = DEFAULTS.block_rows,
    samples: Annotated[bool, typer.Option("--samples/--no-samples", help="Write per-sample values to samples.zarr.")] = DEFAULTS.samples,
    pca: Annotated[str, typer.Option(metavar=_choices(PCA_METHODS), help="PCA basis of the plots: exact from streamed moments, or scikit-learn's IncrementalPCA.")] = DEFAULTS.pca,
    tsne_samples: Annotated[int, typer.Option(metavar="N", help="Rows of each set in the joint t-SNE subsample (0 skips t-SNE).")] = DEFAULTS.tsne_samples,
    plot_samples: Annotated[int, typer.Option(metavar="N", help="Rows of each set drawn as points on pca.png.")] = DEFAULTS.plot_samples,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write metrics.json only: no projections, no figures.")] = not DEFAULTS.plots,
    prune: Annotated[bool, typer.Option("--prune/--no-prune", help="Skip tile work that provably changes nothing (results are exact either way).")] = DEFAULTS.prune,
    companions: Annotated[
        str, typer.Option(metavar="NAMES", help=f"Companion metrics, comma-separated from {','.join(COMPANIONS)} ('none': no companions, 'all': every one).")
    ] = ",".join(DEFAULTS.companions),
    kid: Annotated[bool, typer.Option("--kid", help="KID as the unbiased MMD² over every pair (a pass of its own, about as long as an unpruned run).")] = DEFAULTS.kid,
    kid_subsets: Annotated[int, typer.Option(metavar="N", help="Also KID's subset estimator (torch-fidelity, clean-fid): this many seeded subsets (0: off).")] = DEFAULTS.kid_subsets,
    kid_subset_size: Annotated[int, typer.Option(metavar="N", help="Rows of each set in a KID subset.")] = DEFAULTS.kid_subset_size,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads_per_worker: ThreadsPerWorker = None,
    cluster: Cluster = None, max_jobs: MaxJobs = None, job_cores: JobCores = None, job_memory: JobMemory = None, job_walltime: JobWalltime = None,
    tls: Tls = False, tls_ca_file: TlsCaFile = None, tls_cert: TlsCert = None, tls_key: TlsKey = None,
    resume: Resume = False,
    force: ForceResult = False,
    debug: Debug = False,
):
    """Evaluate FAKE against REAL and write metrics.json, samples.zarr and plots to --out."""
    batch_and_tls = _batch_and_tls(locals())

    def action():
        config = EvaluateConfig(
            k=_parse_k(k), metric=metric, precision=precision, inclusive=inclusive, block_rows=block_rows, samples=samples,
            pca=pca, tsne_samples=tsne_samples, plot_samples=plot_samples, plots=not no_plots, prune=prune,
            companions=_parse_names(companions), kid=kid, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
            workers=workers, threads_per_worker=threads_per_worker, scheduler=scheduler, **batch_and_tls,
        )
        if resume and not force and _finished(out):
            return
        _report(_evaluate_to(real, fake, out, config, real_array=real_array, fake_array=fake_array, force=force, resume=resume), out)

    _run(debug, action)


def _finished(out: str) -> bool:
    """A requeued ``--resume`` job whose run already published its result: nothing to do."""
    from largeemb.api import finished_run

    done = finished_run(out)
    if done:
        typer.echo(f"{out} already holds a finished result ({done}); nothing to resume (pass --force to run again)")
    return bool(done)


@app.command(cls=_Command)
def plot(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Output directory of a `largeemb evaluate` run.", show_default=False)],
    out: Annotated[Optional[str], typer.Option("--out", "-o", metavar="DIR", help="Directory for the figures (default: RUN itself).")] = None,
    force: ForceFigures = False,
    debug: Debug = False,
):
    """Redraw every plot of a finished run from its saved data, without recomputing distances."""
    from largeemb.report.stage import redraw

    def action():
        for path in redraw(run, out, force=force):
            typer.echo(f"wrote {path}")

    _run(debug, action)


@app.command(cls=_Command)
def synth(
    dst: Annotated[str, typer.Argument(metavar="DST", help="Zarr store to write.", show_default=False)],
    rows: Annotated[int, typer.Option(metavar="N", help="Number of rows.")],
    dim: Annotated[int, typer.Option(metavar="D", help="Embedding dimension.")],
    seed: Annotated[int, typer.Option(metavar="S", help="Seed of the samples (mode centres depend only on dim and modes).")] = 0,
    shift: Annotated[float, typer.Option(metavar="X", help="Constant added to every coordinate.")] = 0.0,
    modes: Annotated[int, typer.Option(metavar="N", help="Gaussian mixture modes.")] = 10,
    drop_modes: Annotated[int, typer.Option(metavar="M", help="Leave out the last M modes (mode collapse).")] = 0,
    force: ForceStore = False,
    debug: Debug = False,
):
    """Write reproducible synthetic embeddings (a Gaussian mixture) to a zarr store."""
    from largeemb.io.synth import write_synth

    _run(debug, lambda: typer.echo(f"wrote {write_synth(dst, rows, dim, seed=seed, shift=shift, modes=modes, drop_modes=drop_modes, force=force)}"))


@app.command(cls=_Command)
def convert(
    src: Annotated[str, typer.Argument(metavar="SRC", help="NumPy .npy or .npz file (memory-mapped or streamed, never unpickled).", show_default=False)],
    dst: Annotated[str, typer.Argument(metavar="DST", help="Zarr store to write.", show_default=False)],
    key: Annotated[Optional[str], typer.Option(metavar="NAME", help="Array name inside an .npz file (default: the only array).")] = None,
    force: ForceStore = False,
    debug: Debug = False,
):
    """Convert a .npy or .npz file into a chunked zarr array without loading it whole."""
    from largeemb.io.synth import convert_npy

    _run(debug, lambda: typer.echo(f"wrote {convert_npy(src, dst, key=key, force=force)}"))


@app.command(cls=_Command)
def demo(
    out: Annotated[str, typer.Option("--out", "-o", metavar="DIR", help="Directory for the demo data and results.")] = "largeemb-demo",
    rows: Annotated[int, typer.Option(metavar="N", help="Rows of each synthetic set.")] = DEMO_ROWS,
    dim: Annotated[int, typer.Option(metavar="D", help="Embedding dimension.")] = DEMO_DIM,
    force: ForceDemo = False,
    debug: Debug = False,
):
    """Write a real set and a shifted, partly mode-dropped fake set, then evaluate them."""
    from largeemb.io.synth import write_synth

    def action():
        data = os.path.join(out, "data")
        real = write_synth(os.path.join(data, "real.zarr"), rows, dim, seed=0, force=force or _ours(data))
        fake = write_synth(os.path.join(data, "fake.zarr"), rows, dim, seed=1, shift=0.05, drop_modes=3, force=force or _ours(data))
        typer.echo(f"demo data: {real} (real), {fake} (fake: shifted by 0.05, 3 of 10 modes dropped)")
        _report(_evaluate_to(real, fake, out, DEFAULTS, force=force), out)

    _run(debug, action)


@app.command(cls=_Command)
def worst(
    out: Annotated[str, typer.Argument(metavar="DIR", help="The --out directory of an evaluate run.", show_default=False)],
    n: Annotated[int, typer.Option("--n", metavar="N", help="Rows to list on each side (at least 1).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts) instead of tables.")] = False,
    debug: Debug = False,
):
    """List the fake rows least supported by the real set and the real rows least covered."""
    import json

    from largeemb.io.samples import FAKE_ORDER, REAL_ORDER, read_samples, worst_rows

    def action():
        if n < 1:
            raise InputError(f"--n must be at least 1, got {n}", "on the command line", "pass e.g. --n 20")
        samples = read_samples(out)
        fake, real = worst_rows(samples, n)
        k = samples["k"][0]
        if as_json:
            typer.echo(json.dumps({"k": k, "fake": fake, "real": real, "fake_sorted_by": FAKE_ORDER, "real_sorted_by": REAL_ORDER}, indent=2))
            return
        typer.echo(f"fake rows least supported by the real set (k={k}), sorted by {FAKE_ORDER}:")
        _table(fake)
        typer.echo(f"real rows least covered by the fake set (k={k}), sorted by {REAL_ORDER}:")
        _table(real)

    _run(debug, action)


def _table(rows: list[dict]) -> None:
    """Columns named as the arrays in samples.zarr (and the keys of --json), right-aligned."""
    if not rows:
        return
    cells = [[f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v) for v in row.values()] for row in rows]
    widths = [max(len(name), *(len(c[i]) for c in cells)) for i, name in enumerate(rows[0])]
    typer.echo("  ".join(name.rjust(w) for name, w in zip(rows[0], widths)))
    for c in cells:
        typer.echo("  ".join(v.rjust(w) for v, w in zip(c, widths)))


reference_app = typer.Typer(help="Build or inspect a reference cache of the real set (radii per k, moments, fingerprint).", **_APP_OPTIONS)
app.add_typer(reference_app, name="reference")


@reference_app.command("build", cls=_Command)
def reference_build(
    real: Real,
    out: Annotated[str, typer.Option("--out", "-o", metavar="REF", help="Directory for the reference.")],
    k: Annotated[str, typer.Option(metavar="K[,K...]", help="Neighbour counts to store radii for, e.g. 3,5,10.")] = "3,5,10",
    metric: Metric = DEFAULTS.metric,
    precision: Precision = DEFAULTS.precision,
    real_array: RealArray = None,
    block_rows: BlockRows = DEFAULTS.block_rows,
    scheduler: Scheduler = None,
    workers: Workers = None,
    threads_per_worker: ThreadsPerWorker = None,
    cluster: Cluster = None, max_jobs: MaxJobs = None, job_cores: JobCores = None, job_memory: JobMemory = None, job_walltime: JobWalltime = None,
    tls: Tls = False, tls_ca_file: TlsCaFile = None, tls_cert: TlsCert = None, tls_key: TlsKey = None,
    resume: Resume = False,
    force: ForceReference = False,
    debug: Debug = False,
):
    """Compute the real set's radii, moments and fingerprint once, for nightly evaluate runs."""
    from largeemb.api import build_reference

    batch_and_tls = _batch_and_tls(locals())
    def action():
        from largeemb.io.reference import is_reference

        _log_to_stderr()
        if resume and not force and is_reference(out):
            typer.echo(f"{out} already holds a finished reference; nothing to resume (pass --force to build it again)")
            return
        ref = build_reference(
            real, out, _parse_k(k), metric=metric, precision=precision, block_rows=block_rows, real_array=real_array, force=force, resume=resume,
            scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker, **batch_and_tls,
        )
        typer.echo(f"wrote reference {ref.path} (k={','.join(map(str, ref.k))}, {ref.source.rows} rows); use it as REAL in `largeemb evaluate`")

    _run(debug, action)


@reference_app.command("info", cls=_Command)
def reference_info(
    ref: Annotated[str, typer.Argument(metavar="REF", help="A reference directory.", show_default=False)],
    debug: Debug = False,
):
    """Print what a reference holds and where its source is."""
    import json

    from largeemb.io.reference import load_reference

    _run(debug, lambda: typer.echo(json.dumps(load_reference(ref, open_store=False).info(), indent=2)))


@reference_app.command("move", cls=_Command)
def reference_move(
    ref: Annotated[str, typer.Argument(metavar="REF", help="A reference directory.", show_default=False)],
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Where the real set it was built from lives now.", show_default=False)],
    debug: Debug = False,
):
    """Point a reference at its real set's new place (the content is checked against the fingerprint on every use)."""
    from largeemb.io.reference import move_reference

    _run(debug, lambda: typer.echo(f"{ref} now reads its source at {move_reference(ref, source)}"))


def _ours(data_dir: str) -> bool:
    """Demo data is ours to rewrite; results are not (they need --force)."""
    return os.path.isdir(data_dir)


def main():  # console-script entry point
    app(prog_name="largeemb")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
