"""``largeemb plot RUN RUN ...``: the fakes of several results on one PCA basis (checkpoint overlays).

Results that share the real set (same fingerprint, same PCA basis: the
exact PCA of the real covariance) project every row on the same axes, so
their saved plot coordinates can be drawn together without reading the
embeddings: the real subsample in grey, each run's fake subsample in its own
colour, in the order given (e.g. checkpoint order).
"""

from __future__ import annotations

import os

import numpy as np

from largeemb.errors import InputError
from largeemb.io.lock import OutputLock
from largeemb.io.output import Staging
from largeemb.report.stage import check_figure_options, load_run

OVERLAY = "overlay"


def draw_overlay(runs: list[str], out: str, force: bool = False, fmt: str = "png", dpi: int | None = None) -> str:
    """Write ``out/overlay.<fmt>`` from the results in ``runs``; refuses runs that do not share a real set and basis."""
    from largeemb.report import figures

    check_figure_options(fmt, dpi)
    loaded = [(run, *load_run(run)) for run in runs]
    first_run, first, first_metrics = loaded[0]
    for run, data, metrics in loaded[1:]:
        if metrics["real"].get("fingerprint") != first_metrics["real"].get("fingerprint"):
            raise InputError(
                "the results were made against different real sets", f"{run} and {first_run}",
                "overlay only results of one real set or reference",
            )
        if not (np.array_equal(data["pca_components"], first["pca_components"])
                and np.array_equal(data["pca_mean"], first["pca_mean"])):
            raise InputError(
                "the results' PCA bases differ (--pca incremental, or another --metric)", f"{run} and {first_run}",
                "overlay results evaluated with the same --metric and the default --pca moments",
            )
    name = f"{OVERLAY}.{fmt}"
    path = os.path.join(out, name)
    if os.path.exists(path) and not force:
        raise InputError(f"{name} already exists", f"in {out}", "choose another --out or pass --force to replace it")
    ratio = first["explained_variance_ratio"]
    labels = tuple(f"PC {i + 1} ({ratio[i]:.1%} of real variance)" for i in range(2))
    fakes = [(_label(run, metrics), data["fake_plot_coords"]) for run, data, metrics in loaded]
    fig = figures.overlay_figure(first["real_plot_coords"], fakes, axis_labels=labels,
                                 title=f"Fake sets of {len(runs)} results on the real set's PCA basis")
    os.makedirs(out, exist_ok=True)
    with OutputLock(out), Staging(out) as staging:
        figures.save(fig, staging.file(name), dpi)
        staging.publish(force=True, last=name)
    return path


def _label(run: str, metrics: dict) -> str:
    run_record = metrics.get("run") or {}
    return str(run_record.get("label") or os.path.basename(os.path.normpath(run)))
