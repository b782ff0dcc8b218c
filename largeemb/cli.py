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

from largeemb.config import METRICS, PCA_METHODS, EvaluateConfig
from largeemb.errors import InputError

DEFAULTS = EvaluateConfig()
DEMO_ROWS, DEMO_DIM = 20_000, 128

app = typer.Typer(
    name="largeemb",
    help="Exact precision, recall, density, coverage and Fréchet distance for millions of embeddings, out of core.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing result or store.")]


def _parse_k(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"--k must be whole numbers separated by commas, got {text!r}", "on the command line", "e.g. --k 5 or --k 3,5,10") from None


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


def _report(result, out: str) -> None:
    metrics = result.metrics
    typer.echo("  ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
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


def _log_to_stderr() -> None:
    """Progress and run notes go to stderr as ``largeemb: ...`` lines."""
    logger = logging.getLogger("largeemb")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("largeemb: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _evaluate_to(real, fake, out: str, config: EvaluateConfig, **options):
    from largeemb.api import evaluate_to

    _log_to_stderr()
    return evaluate_to(real, fake, out, config, **options)


@app.command()
def evaluate(
    real: Annotated[str, typer.Argument(help="Real embeddings: zarr array or group, local path or fsspec URL.")],
    fake: Annotated[str, typer.Argument(help="Fake (generated) embeddings, same forms as REAL.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Directory for metrics.json and plots.")],
    k: Annotated[str, typer.Option(help="Neighbour count(s), e.g. 5 or 3,5,10; the first is primary.")] = ",".join(map(str, DEFAULTS.k)),
    metric: Annotated[str, typer.Option(help=f"Distance: {' or '.join(METRICS)} (cosine L2-normalises rows).")] = DEFAULTS.metric,
    inclusive: Annotated[bool, typer.Option("--inclusive", help="Count a point on a ball's boundary as inside (<= instead of <).")] = DEFAULTS.inclusive,
    real_array: Annotated[Optional[str], typer.Option(help="Array name when REAL is a group.")] = None,
    fake_array: Annotated[Optional[str], typer.Option(help="Array name when FAKE is a group.")] = None,
    block_rows: Annotated[
        Optional[int], typer.Option(help="Rows per streamed block (one task); GEMMs run in 2048-row panels inside it. Default: 4096, more for sets over 262,144 rows.")
    ] = DEFAULTS.block_rows,
    samples: Annotated[bool, typer.Option("--samples/--no-samples", help="Write per-sample values to samples.zarr.")] = DEFAULTS.samples,
    pca: Annotated[str, typer.Option(help=f"PCA basis of the plots: {' or '.join(PCA_METHODS)} (exact from streamed moments, or scikit-learn's IncrementalPCA).")] = DEFAULTS.pca,
    tsne_samples: Annotated[int, typer.Option(help="Rows of each set in the joint t-SNE subsample (0 skips t-SNE).")] = DEFAULTS.tsne_samples,
    plot_samples: Annotated[int, typer.Option(help="Rows of each set drawn as points on pca.png.")] = DEFAULTS.plot_samples,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write metrics.json only: no projections, no figures.")] = not DEFAULTS.plots,
    prune: Annotated[bool, typer.Option("--prune/--no-prune", help="Skip tile work that provably changes nothing (results are exact either way).")] = DEFAULTS.prune,
    scheduler: Annotated[Optional[str], typer.Option(help="Run on the running dask cluster at this address (e.g. tcp://host:8786).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Start a LocalCluster of N worker processes (default: run in-process).")] = None,
    threads_per_worker: Annotated[
        Optional[int], typer.Option(help="Task threads per worker (in-process: of this process); default: cores / workers.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from the finished tasks kept in OUT/.work.")] = False,
    force: Force = False,
    debug: Debug = False,
):
    """Evaluate FAKE against REAL and write metrics.json, samples.zarr and plots to --out."""

    def action():
        config = EvaluateConfig(
            k=_parse_k(k), metric=metric, inclusive=inclusive, block_rows=block_rows, samples=samples,
            pca=pca, tsne_samples=tsne_samples, plot_samples=plot_samples, plots=not no_plots, prune=prune,
            workers=workers, threads_per_worker=threads_per_worker, scheduler=scheduler,
        )
        _report(_evaluate_to(real, fake, out, config, real_array=real_array, fake_array=fake_array, force=force, resume=resume), out)

    _run(debug, action)


@app.command()
def plot(
    run: Annotated[str, typer.Argument(help="Output directory of a `largeemb evaluate` run.")],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Directory for the figures (default: RUN itself).")] = None,
    force: Force = False,
    debug: Debug = False,
):
    """Redraw every plot of a finished run from its saved data, without recomputing distances."""
    from largeemb.report.stage import redraw

    def action():
        for path in redraw(run, out, force=force):
            typer.echo(f"wrote {path}")

    _run(debug, action)


@app.command()
def synth(
    dst: Annotated[str, typer.Argument(help="Zarr store to write.")],
    rows: Annotated[int, typer.Option(help="Number of rows.")],
    dim: Annotated[int, typer.Option(help="Embedding dimension.")],
    seed: Annotated[int, typer.Option(help="Seed of the samples (mode centres depend only on dim and modes).")] = 0,
    shift: Annotated[float, typer.Option(help="Constant added to every coordinate.")] = 0.0,
    modes: Annotated[int, typer.Option(help="Gaussian mixture modes.")] = 10,
    drop_modes: Annotated[int, typer.Option(help="Leave out the last N modes (mode collapse).")] = 0,
    force: Force = False,
    debug: Debug = False,
):
    """Write reproducible synthetic embeddings (a Gaussian mixture) to a zarr store."""
    from largeemb.io.synth import write_synth

    _run(debug, lambda: typer.echo(f"wrote {write_synth(dst, rows, dim, seed=seed, shift=shift, modes=modes, drop_modes=drop_modes, force=force)}"))


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="NumPy .npy file (read memory-mapped, never with pickle).")],
    dst: Annotated[str, typer.Argument(help="Zarr store to write.")],
    force: Force = False,
    debug: Debug = False,
):
    """Convert a .npy file into a chunked zarr array without loading it whole."""
    from largeemb.io.synth import convert_npy

    _run(debug, lambda: typer.echo(f"wrote {convert_npy(src, dst, force=force)}"))


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", "-o", help="Directory for the demo data and results.")] = "largeemb-demo",
    rows: Annotated[int, typer.Option(help="Rows of each synthetic set.")] = DEMO_ROWS,
    dim: Annotated[int, typer.Option(help="Embedding dimension.")] = DEMO_DIM,
    force: Force = False,
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


@app.command()
def worst(
    out: Annotated[str, typer.Argument(help="The --out directory of an evaluate run.")],
    n: Annotated[int, typer.Option("--n", help="Rows to list on each side.")] = 20,
    debug: Debug = False,
):
    """List the fake rows least supported by the real set and the real rows least covered."""
    from largeemb.io.samples import read_samples, worst_rows

    def action():
        samples = read_samples(out)
        fake, real = worst_rows(samples, n)
        typer.echo(f"fake rows least supported by the real set (k={samples['k'][0]}):")
        typer.echo(f"{'row':>10} {'balls':>6} {'realism':>10} {'nearest real':>13} {'distance':>10}")
        for r in fake:
            typer.echo(f"{r['row']:>10} {r['ball_count']:>6} {r['realism']:>10.4f} {r['nearest_real']:>13} {r['nearest_real_dist']:>10.4f}")
        typer.echo("real rows least covered by the fake set:")
        typer.echo(f"{'row':>10} {'covered':>8} {'nearest fake':>13} {'radius':>10}")
        for r in real:
            typer.echo(f"{r['row']:>10} {str(r['covered']):>8} {r['nearest_fake_dist']:>13.4f} {r['radius']:>10.4f}")

    _run(debug, action)


reference_app = typer.Typer(help="Build or inspect a reference cache of the real set (radii per k, moments, fingerprint).", no_args_is_help=True)
app.add_typer(reference_app, name="reference")


@reference_app.command("build")
def reference_build(
    real: Annotated[str, typer.Argument(help="Real embeddings: zarr array or group, local path or fsspec URL.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Directory for the reference.")],
    k: Annotated[str, typer.Option(help="Neighbour counts to store radii for, e.g. 3,5,10.")] = "3,5,10",
    metric: Annotated[str, typer.Option(help=f"Distance: {' or '.join(METRICS)}.")] = DEFAULTS.metric,
    real_array: Annotated[Optional[str], typer.Option(help="Array name when REAL is a group.")] = None,
    block_rows: Annotated[Optional[int], typer.Option(help="Rows per streamed block (default: as for evaluate).")] = DEFAULTS.block_rows,
    force: Force = False,
    debug: Debug = False,
):
    """Compute the real set's radii, moments and fingerprint once, for nightly evaluate runs."""
    from largeemb.api import build_reference

    def action():
        ref = build_reference(real, out, _parse_k(k), metric=metric, block_rows=block_rows, real_array=real_array, force=force)
        typer.echo(f"wrote reference {ref.path} (k={','.join(map(str, ref.k))}, {ref.source.rows} rows); use it as REAL in `largeemb evaluate`")

    _run(debug, action)


@reference_app.command("info")
def reference_info(
    ref: Annotated[str, typer.Argument(help="A reference directory.")],
    debug: Debug = False,
):
    """Print what a reference holds and where its source is."""
    import json

    from largeemb.io.reference import load_reference

    _run(debug, lambda: typer.echo(json.dumps(load_reference(ref).info(), indent=2)))


def _ours(data_dir: str) -> bool:
    """Demo data is ours to rewrite; results are not (they need --force)."""
    return os.path.isdir(data_dir)


def main():  # console-script entry point
    app(prog_name="largeemb")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
