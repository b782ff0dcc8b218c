"""The plot stage: an evaluation's projection becomes saved plot data
(``projection.npz``) and figures; ``redraw`` makes the figures again from
that data and ``metrics.json`` alone, without touching the embeddings. What
each figure says (titles, captions) is :mod:`largeemb.report.captions`.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from largeemb.errors import InputError
from largeemb.io.lock import OutputLock
from largeemb.io.output import Staging
from largeemb.io.results import read_metrics

PROJECTION_FILE = "projection.npz"
PCA_PNG, TSNE_PNG, K_SWEEP_PNG, BALL_COUNTS_PNG = "pca.png", "tsne.png", "k_sweep.png", "ball_counts.png"
#: Every file this stage may write (part of ``api.RESULT_FILES``, so a
#: --force run removes those of an earlier run that it does not write again).
PLOT_FILES = (PROJECTION_FILE, PCA_PNG, TSNE_PNG, K_SWEEP_PNG, BALL_COUNTS_PNG)
PLOT_DATA_VERSION = 1


def plot_data(result) -> dict[str, np.ndarray]:
    """Everything the figures need, as named arrays; runs t-SNE on the joint subsample."""
    from largeemb.report.tsne import iterations, tsne
    from largeemb.run.progress import Progress

    p = result.projection
    real_tsne = fake_tsne = np.zeros((0, 2))
    if len(p.real.tsne_index) and len(p.fake.tsne_index):
        label = f"t-SNE of {len(p.real.tsne_index) + len(p.fake.tsne_index):,} points"
        with Progress(label, iterations(), unit="iterations") as progress:
            embedding = tsne(
                np.concatenate([p.real.tsne_rows, p.fake.tsne_rows]),
                np.concatenate([p.real.tsne_init, p.fake.tsne_init]),
                seed=result.params["seed"],
                progress=progress,
            )
        real_tsne, fake_tsne = embedding[: len(p.real.tsne_index)], embedding[len(p.real.tsne_index) :]
    counts = result.fake_counts
    ball_counts = np.zeros((counts.shape[1], int(counts.max()) + 1), dtype=np.int64)
    for q in range(counts.shape[1]):
        ball_counts[q] = np.bincount(counts[:, q], minlength=ball_counts.shape[1])
    return {
        "version": np.array(PLOT_DATA_VERSION),
        "pca_method": np.array(p.method),
        "real_rows": np.array(result.real["rows"]),
        "fake_rows": np.array(result.fake["rows"]),
        "ks": np.array(result.params["k"]),
        "pca_mean": p.basis.mean,
        "pca_components": p.basis.components,
        "explained_variance": p.basis.explained_variance,
        "explained_variance_ratio": p.basis.explained_variance_ratio,
        "x_edges": p.real.histogram.x_edges,
        "y_edges": p.real.histogram.y_edges,
        "real_counts": p.real.histogram.counts,
        "fake_counts": p.fake.histogram.counts,
        "real_outside": np.array(p.real.histogram.outside),
        "fake_outside": np.array(p.fake.histogram.outside),
        "real_plot_index": p.real.plot_index,
        "fake_plot_index": p.fake.plot_index,
        "real_plot_coords": p.real.plot_coords,
        "fake_plot_coords": p.fake.plot_coords,
        "real_plot_radii": result.real_radii[p.real.plot_index],
        "real_tsne_index": p.real.tsne_index,
        "fake_tsne_index": p.fake.tsne_index,
        "real_tsne_coords": real_tsne,
        "fake_tsne_coords": fake_tsne,
        "ball_counts": ball_counts,
    }


@dataclass
class Plotted:
    """What :func:`write_plots` did: the names of the files it wrote, and its timings (``tsne``, ``plots``)."""

    files: list[str]
    timings_s: dict[str, float]


def write_plots(result, directory: str) -> Plotted:
    """Save plot data and draw every figure into ``directory`` (a staging directory).

    Returns the files written and the stage's timings (the caller adds them to
    the result's: :meth:`largeemb.result.EvaluationResult.add_timings`).
    """
    if result.projection is None:
        raise InputError(
            "the result holds no plot data (it was evaluated with plots=False)", "in write_plots()",
            "evaluate again with plots=True",
        )
    os.makedirs(directory, exist_ok=True)
    start = time.perf_counter()
    data = plot_data(result)
    tsne_done = time.perf_counter()
    with open(os.path.join(directory, PROJECTION_FILE), "wb") as fh:
        np.savez_compressed(fh, **data)
        fh.flush()
        os.fsync(fh.fileno())
    written = [PROJECTION_FILE] + draw(data, result.to_dict(), directory)
    return Plotted(written, {"tsne": tsne_done - start, "plots": time.perf_counter() - tsne_done})


def load_run(directory: str) -> tuple[dict[str, np.ndarray], dict]:
    """Plot data and metrics of a finished run; a clear error when there is none."""
    metrics = read_metrics(directory)
    data_path = os.path.join(directory, PROJECTION_FILE)
    if not os.path.isfile(data_path):
        raise InputError(
            f"the run holds no plot data ({PROJECTION_FILE} is missing; was it run with --no-plots?)",
            f"in {directory}",
            "rerun `largeemb evaluate` without --no-plots",
        )
    try:
        with np.load(data_path, allow_pickle=False) as npz:
            data = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the saved run ({exc})", f"in {directory}", "rerun `largeemb evaluate`") from None
    if int(data.get("version", -1)) != PLOT_DATA_VERSION:
        raise InputError(
            f"{PROJECTION_FILE} has plot data version {data.get('version')}, this largeemb reads {PLOT_DATA_VERSION}",
            f"in {directory}",
            "rerun `largeemb evaluate` with this version",
        )
    return data, metrics


#: Formats ``largeemb plot --format`` writes (matplotlib's savefig by file suffix).
FORMATS = ("png", "svg", "pdf")


def in_format(name: str, fmt: str) -> str:
    """``pca.png`` as ``pca.svg`` (or .pdf)."""
    return f"{os.path.splitext(name)[0]}.{fmt}"


def check_figure_options(fmt: str, dpi: int | None) -> None:
    """``--format`` and ``--dpi`` of ``largeemb plot``, checked before any figure is drawn (one run or several)."""
    if fmt not in FORMATS:
        raise InputError(f"cannot draw figures as {fmt!r}", "in --format", f"choose one of {', '.join(FORMATS)}")
    if dpi is not None and not 20 <= dpi <= 1200:
        raise InputError(f"--dpi {dpi} is out of range", "on the command line", "pass a value from 20 to 1200")


def redraw(
    directory: str, out: str | None = None, force: bool = False, fmt: str = "png", dpi: int | None = None
) -> list[str]:
    """Draw every figure of the run in ``directory`` again, into ``out`` (default: the same directory).

    The run's own figures are replaced; figures in another directory only with ``force``. ``fmt``: png,
    svg or pdf; ``dpi``: the raster resolution (default the figures' own).
    """
    check_figure_options(fmt, dpi)
    data, metrics = load_run(directory)
    out = out or directory
    elsewhere = os.path.isdir(out) and not os.path.samefile(out, directory)
    if elsewhere and not force:
        taken = [in_format(name, fmt) for name in PLOT_FILES if os.path.exists(os.path.join(out, in_format(name, fmt)))]
        if taken:
            raise InputError(
                f"{', '.join(taken)} already exist", f"in {out}", "choose another --out or pass --force to replace them"
            )
    # The same lock as evaluate's: never publish figures beside another run's metrics.json.
    os.makedirs(out, exist_ok=True)
    with ExitStack() as held:
        for claimed in dict.fromkeys(os.path.realpath(d) for d in (directory, out)):
            held.enter_context(OutputLock(claimed))
        data, metrics = load_run(directory)  # again: a run may have published between the first read and the lock
        staging = held.enter_context(Staging(out))
        written = draw(data, metrics, staging.path, fmt, dpi)
        staging.publish(force=True, last=in_format(PCA_PNG, fmt))  # replaces figures only; metrics.json stays
    return [os.path.join(out, name) for name in written]


# -- figures from plot data --------------------------------------------------------


def draw(data: dict, metrics: dict, directory: str, fmt: str = "png", dpi: int | None = None) -> list[str]:
    """Draw pca.png, tsne.png, ball_counts.png and (several k) k_sweep.png (or .svg, .pdf); returns their names."""
    from largeemb.report import captions
    from largeemb.report import figures as plots
    from largeemb.run.progress import Progress

    ks = [int(k) for k in data["ks"]]
    # Each figure is drawn and saved in turn, so only one is in memory at a time.
    figures = [(PCA_PNG, lambda: captions.captioned_pca(data, metrics))]
    if len(data["real_tsne_coords"]):
        figures.append((TSNE_PNG, lambda: captions.captioned_tsne(data, metrics)))
    figures.append((BALL_COUNTS_PNG, lambda: plots.ball_count_figure(ks, data["ball_counts"])))
    if len(ks) > 1:
        figures.append((K_SWEEP_PNG, lambda: captions.captioned_k_sweep(metrics)))
    written = []
    with Progress("figures", len(figures), unit="figures") as progress:
        for name, figure in figures:
            name = in_format(name, fmt)
            plots.save(figure(), os.path.join(directory, name), dpi)
            written.append(name)
            progress.advance()
    return written
