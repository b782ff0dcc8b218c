"""What each figure says: titles and captions from the plot data and
``metrics.json``, around the figures of :mod:`largeemb.report.figures` (arrays
in, a figure out). :mod:`largeemb.report.stage` draws and saves them.
"""

from __future__ import annotations

import os

import numpy as np

#: Radii are drawn for this many real points only, for scale: one circle per
#: row hid the points of small sets, and 100 over a backdrop were a faint web.
CIRCLES_SHOWN = 5


def _headline(metrics: dict) -> str:
    k = metrics["params"]["k"][0]
    values = metrics["metrics"]
    return (
        ", ".join(f"{name} {values[name]:.3f}" for name in ("precision", "recall", "density", "coverage")) + f" (k={k})"
    )


def _sets(metrics: dict) -> str:
    """Which sets, how many rows, which metric: for titles."""
    real, fake = metrics["real"], metrics["fake"]

    def name(side):
        return os.path.basename(str(side["source"]).rstrip("/").split("::")[0]) or str(side["source"])

    return (
        f"real {name(real)} ({real['rows']:,} rows) vs fake {name(fake)} ({fake['rows']:,} rows), "
        f"{metrics['params']['metric']}"
    )


def captioned_k_sweep(metrics: dict):
    """k_sweep.png: the metrics against k, with ±1 SE, titled with the sets."""
    from largeemb.report import figures as plots

    return plots.k_sweep_figure(
        metrics["params"]["k"], metrics["by_k"],
        errors={k: v for k, v in metrics.get("standard_errors", {}).items() if k.isdigit()},
        title=f"Metrics against k: {_sets(metrics)}",
    )


def captioned_pca(data: dict, metrics: dict):
    """pca.png: the headline metrics, the axes' variance, and what the points, backdrop and circles are."""
    from largeemb.report import figures as plots

    real_rows, fake_rows = int(data["real_rows"]), int(data["fake_rows"])
    real_coords, fake_coords = data["real_plot_coords"], data["fake_plot_coords"]
    k = metrics["params"]["k"][0]
    dim = metrics["real"]["dim"]
    space = " of unit rows (cosine)" if metrics["params"]["metric"] == "cosine" else ""
    ratio = data["explained_variance_ratio"]
    labels = tuple(
        f"PC {i + 1} ({ratio[i]:.1%} of real variance)" if i < len(ratio) else f"PC {i + 1}" for i in range(2)
    )
    everything = len(real_coords) == real_rows and len(fake_coords) == fake_rows
    radii = data["real_plot_radii"][:, 0]
    # Circles go to the first points of a seeded shuffle, so any real point may get one.
    order = np.random.default_rng(0).permutation(len(radii))
    real_coords, radii = real_coords[order], radii[order][:CIRCLES_SHOWN]
    circles = "[circles]"  # filled in by the figure, as it draws circles or none
    circles_note = (
        f"Black circles: the {k}-NN radius in the full {dim}-dim space{space} "
        "of {drawn} random real points, for scale (a projection only shrinks distances)."
    )
    method = "IncrementalPCA" if str(data["pca_method"]) == "incremental" else "exact PCA"
    if everything:
        caption = (
            f"All {real_rows:,} real and {fake_rows:,} fake rows. {circles} Basis: {method} of the real set{space}."
        )
        backdrop = {}
    else:
        outside = int(data["real_outside"]) + int(data["fake_outside"])
        caption = (
            f"Backdrop: all {real_rows:,} real rows (log density); "
            f"orange lines hold 50/90/99 % of all {fake_rows:,} fake rows. "
            f"Points: seeded subsample of {len(real_coords):,} real and {len(fake_coords):,} fake rows. {circles} "
            f"Basis: {method} of the real set{space}."
            + (f" {outside:,} rows fall beyond the binned range." if outside else "")
        )
        backdrop = {name: data[name] for name in ("x_edges", "y_edges", "real_counts", "fake_counts")}
    return plots.pca_figure(
        real_coords,
        fake_coords,
        real_radii=radii,
        title=f"PCA: {_headline(metrics)}",
        axis_labels=labels,
        caption=caption,
        circles_note=circles_note,
        **backdrop,
    )


def captioned_tsne(data: dict, metrics: dict):
    """tsne.png: which rows were embedded, and how."""
    from largeemb.report import figures as plots

    real, fake = data["real_tsne_coords"], data["fake_tsne_coords"]
    return plots.tsne_figure(
        real,
        fake,
        title=f"t-SNE of {len(real):,} real and {len(fake):,} fake rows\n{_headline(metrics)}",
        caption=(
            f"Seeded subsample (seed {metrics['params']['seed']}) of each set, "
            "embedded together with openTSNE from PCA coordinates. "
            + (
                "Embedded: the unit rows (each row divided by its length, as --metric cosine measures), "
                f"{metrics['real']['dim']}-dim."
                if metrics["params"]["metric"] == "cosine"
                else f"Embedded: the rows as stored, {metrics['real']['dim']}-dim, euclidean."
            )
        ),
    )
