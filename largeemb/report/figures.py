"""Figures: arrays in, a matplotlib Figure out.

Pure plotting: no file or store access, no computation beyond what a figure
needs. Every function draws into ``ax`` when given (and returns its figure),
else into a new figure of a readable size. The Agg backend is used, and
nothing is ever shown on screen.
"""

from __future__ import annotations

import numpy as np

REAL_COLOUR, FAKE_COLOUR = "tab:blue", "tab:orange"
#: Colours of the k in ball_counts.png: never blue and orange, which mean real and fake in every other figure.
K_COLOURS = ("tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink", "tab:gray")
#: Characters per title line: longer titles are wrapped, not clipped at the figure's edges.
TITLE_WIDTH = 70
FIGSIZE = (8.0, 7.0)
DPI = 150
#: Share of a set's rows inside each contour line drawn for the fake density.
CONTOUR_SHARES = (0.5, 0.9, 0.99)
#: The density view is cropped to hold all but this share of rows on each side.
CROP_TAIL = 0.0005
METRIC_NAMES = ("precision", "recall", "density", "coverage")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize=FIGSIZE):
    if ax is not None:
        return ax.figure, ax
    fig, ax = _pyplot().subplots(figsize=figsize, dpi=DPI, layout="constrained")
    return fig, ax


def _caption(fig, text: str | None) -> None:
    """A wrapped note under the axes, with room kept for it in the layout."""
    if not text:
        return
    import textwrap

    lines = textwrap.wrap(text, width=int(fig.get_figwidth() * 17))
    height = (len(lines) + 0.8) * 9.0 / 72 / fig.get_figheight()
    fig.text(0.01, 0.008, "\n".join(lines), fontsize=7.5, ha="left", va="bottom", color="0.25")
    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        engine.set(rect=(0, height, 1, 1 - height))


def _marker_size(points: int) -> float:
    """Smaller dots for more points, so a few thousand stay apart and 20,000 do not blob."""
    return float(np.clip(8000.0 / max(points, 1), 2.0, 12.0))


def _interleaved(real: np.ndarray, fake: np.ndarray):
    """Both sets in one seeded random order, so neither is always drawn on top."""
    coords = np.concatenate([real, fake])
    colours = np.array([REAL_COLOUR] * len(real) + [FAKE_COLOUR] * len(fake))
    order = np.random.default_rng(0).permutation(len(coords))
    return coords[order], colours[order]


def _scatter_both(ax, real_coords, fake_coords, alpha, size_scale=1.0):
    coords, colours = _interleaved(real_coords, fake_coords)
    size = _marker_size(len(coords)) * size_scale
    ax.scatter(coords[:, 0], coords[:, 1], s=size, c=colours, alpha=alpha, linewidths=0, rasterized=True)
    # Legend handles drawn apart from the interleaved cloud.
    ax.scatter([], [], s=30, color=REAL_COLOUR, label=f"real ({len(real_coords):,} shown)")
    ax.scatter([], [], s=30, color=FAKE_COLOUR, label=f"fake ({len(fake_coords):,} shown)")


def _share_levels(counts: np.ndarray, shares) -> list[float]:
    """Count thresholds whose upper level sets hold the given shares of all rows."""
    flat = np.sort(counts.ravel())[::-1]
    total = np.cumsum(flat)
    if total[-1] == 0:
        return []
    levels = [float(flat[min(np.searchsorted(total, share * total[-1]), len(flat) - 1)]) for share in shares]
    return sorted(set(level for level in levels if level > 0))


def _crop(edges: np.ndarray, marginal: np.ndarray) -> tuple[float, float]:
    """Axis limits that leave out only the thinnest tails of a marginal count."""
    cumulative = np.cumsum(marginal)
    if cumulative[-1] == 0:
        return float(edges[0]), float(edges[-1])
    lo = np.searchsorted(cumulative, CROP_TAIL * cumulative[-1])
    hi = np.searchsorted(cumulative, (1 - CROP_TAIL) * cumulative[-1])
    low, high = float(edges[lo]), float(edges[min(hi + 1, len(edges) - 1)])
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def pca_figure(
    real_coords: np.ndarray,
    fake_coords: np.ndarray,
    *,
    real_radii: np.ndarray | None = None,
    x_edges: np.ndarray | None = None,
    y_edges: np.ndarray | None = None,
    real_counts: np.ndarray | None = None,
    fake_counts: np.ndarray | None = None,
    title: str = "Real and fake on the real set's first two principal components",
    axis_labels: tuple[str, str] = ("PC 1", "PC 2"),
    caption: str | None = None,
    circles_note: str = "",
    ax=None,
):
    """Both sets on two principal axes.

    ``real_coords``/``fake_coords`` are the points drawn (all rows of a small
    set, or a subsample). ``real_radii`` (one per real point) draws each real
    point's k-NN radius as a circle around the first ``len(real_radii)``
    real points. With ``real_counts``/``fake_counts``
    (2-D histograms of all rows on ``x_edges`` × ``y_edges``) the real
    density is drawn as a log-scaled backdrop and the fake density as contour
    lines holding 50/90/99 % of its rows, with the points on top.
    ``circles_note`` (with ``{drawn}``) replaces ``[circles]`` in the caption
    when circles were drawn; when none were, the caption says nothing of them.
    """
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, LogNorm

    fig, ax = _axes(ax)
    backdrop = real_counts is not None and fake_counts is not None
    if backdrop:
        real_counts = np.asarray(real_counts)
        fake_counts = np.asarray(fake_counts)
        shown = np.ma.masked_equal(real_counts.T, 0)
        if shown.count():
            # Light greys, so that the blue and orange points stay visible on top.
            # From a visible grey: on text embeddings most bins hold 1-3 rows.
            greys = ListedColormap(colormaps["Greys"](np.linspace(0.25, 0.75, 256)))
            image = ax.pcolormesh(
                x_edges, y_edges, shown, cmap=greys, norm=LogNorm(vmin=1, vmax=max(2, shown.max())), rasterized=True,
                zorder=0,
            )
            fig.colorbar(
                image, ax=ax, shrink=0.8, pad=0.01, fraction=0.035, aspect=30,
                label="real rows per bin (all rows, log scale)",
            )
        fake_density = _smoothed(fake_counts)
        levels = _share_levels(fake_density, CONTOUR_SHARES)
        if levels:
            x_mid, y_mid = (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2
            ax.contour(x_mid, y_mid, fake_density.T, levels=levels, colors=FAKE_COLOUR, linewidths=1.2, zorder=2)
            ax.plot([], [], color=FAKE_COLOUR, linewidth=1.2, label="fake density: 50/90/99 % of all rows")
        ax.set_xlim(*_crop(x_edges, real_counts.sum(axis=1) + fake_counts.sum(axis=1)))
        ax.set_ylim(*_crop(y_edges, real_counts.sum(axis=0) + fake_counts.sum(axis=0)))
    _scatter_both(
        ax, np.asarray(real_coords), np.asarray(fake_coords), alpha=0.8 if backdrop else 0.6,
        size_scale=2.0 if backdrop else 1.0,
    )
    if not backdrop:
        ax.autoscale_view()
    drawn = 0
    if real_radii is not None and len(real_radii):
        drawn = _radius_circles(ax, np.asarray(real_coords)[: len(real_radii)], np.asarray(real_radii, np.float64))
    if caption:  # caption and legend agree: circles are described only where some were drawn
        caption = caption.replace("[circles] ", circles_note.format(drawn=drawn) + " " if drawn else "")
    # Equal units on both axes, so circles are circles and PC 2's smaller spread shows.
    ax.set_aspect("equal", adjustable="box" if backdrop else "datalim")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    _legend_below(ax)
    _caption(fig, caption)
    return fig


#: A radius circle is drawn only when its diameter is at most this share of the view's smaller side
#: (larger ones covered most of a small set's points) and its centre lies in the view.
CIRCLE_SHARE = 0.3


def _radius_circles(ax, centres: np.ndarray, radii: np.ndarray) -> int:
    """Radius circles for scale, only those that are readable: a full-dimensional radius
    is often far larger than the 2-D spread, and such a circle covers the data or is a
    faint off-centre arc. The legend says how many were drawn and the median radius;
    returns how many."""
    from matplotlib.collections import EllipseCollection

    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    inside = (centres[:, 0] >= x0) & (centres[:, 0] <= x1) & (centres[:, 1] >= y0) & (centres[:, 1] <= y1)
    fits = (2 * radii <= CIRCLE_SHARE * min(x1 - x0, y1 - y0)) & inside
    median = float(np.median(radii))
    if fits.any():
        diameters = 2 * radii[fits]
        ax.add_collection(
            EllipseCollection(
                diameters, diameters, np.zeros_like(diameters), units="xy", offsets=centres[fits],
                offset_transform=ax.transData, facecolors="none", edgecolors="black", linewidths=1.0, alpha=0.7,
                zorder=3,
            ),
            autolim=False,
        )
        ax.plot([], [], color="black", linewidth=1.0, label=f"k-NN radius (full dim) of {int(fits.sum())} real points")
    else:
        ax.plot([], [], color="none", label=f"k-NN radii (median {median:.3g}) too large for this view: not drawn")
    return int(fits.sum())


def _legend_below(ax, columns: int = 2, **options) -> None:
    """The legend under the axes, in rows of ``columns``: never over the data (it hid a fake contour at 200k rows)."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=columns, fontsize="small", frameon=False, **options)


def _smoothed(counts: np.ndarray) -> np.ndarray:
    """Counts blurred over about one bin, so contour lines follow the density, not bin noise."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.asarray(counts, np.float64), sigma=1.5)


def tsne_figure(
    real_coords: np.ndarray,
    fake_coords: np.ndarray,
    *,
    title: str = "t-SNE of a joint subsample",
    caption: str | None = None,
    ax=None,
):
    """t-SNE coordinates of the joint subsample, real and fake in two colours."""
    fig, ax = _axes(ax)
    _scatter_both(ax, np.asarray(real_coords), np.asarray(fake_coords), alpha=0.6)
    ax.set_xlabel("t-SNE 1 (no units: only neighbourhoods are meaningful)")
    ax.set_ylabel("t-SNE 2")
    ax.set_xticks([])  # t-SNE axes have no units, so no ticks either
    ax.set_yticks([])
    ax.set_title(title)
    _legend_below(ax)
    _caption(fig, caption)
    return fig


def k_sweep_figure(ks, by_k: dict, *, errors: dict | None = None, title: str = "Metrics against k", ax=None):
    """Precision, recall, density and coverage for each evaluated k.

    ``by_k`` maps each k (int or str) to a dict holding the four metrics;
    ``errors``, the same shape, their standard errors (drawn as ±1 SE bars).
    """
    fig, ax = _axes(ax, figsize=(7.0, 5.0))
    ks = sorted(int(k) for k in ks)
    lookup = {int(k): v for k, v in by_k.items()}
    spread = {int(k): v for k, v in (errors or {}).items()}
    for name in METRIC_NAMES:
        bars = [spread[k][name] for k in ks] if spread else None
        ax.errorbar(
            ks, [lookup[k][name] for k in ks], yerr=bars, marker="o", capsize=4,
            label=name + (" (±1 SE)" if spread else ""),
        )
    ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle="--", zorder=0)
    ax.set_xticks(ks)
    ax.set_xlabel("k (nearest neighbours defining each ball)")
    ax.set_ylabel("value (density can exceed 1)")
    ax.set_title(wrapped(title))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _doubling_bins(largest: int) -> list[tuple[int, int]]:
    """Count ranges 0, 1, 2, 3-4, 5-8, 9-16, ...: ball counts are heavy-tailed."""
    bins, low = [(0, 0), (1, 1)], 2
    while low <= largest:
        high = 2 * low - 2 if low > 2 else 2
        bins.append((low, high))
        low = high + 1
    return [(low, min(high, max(largest, 1))) for low, high in bins if low <= max(largest, 1)]


def _merged_empty(bins: list[tuple[int, int]], bincounts: np.ndarray) -> list[tuple[int, int]]:
    """Each run of ranges that no fake row falls in (for any k) becomes one range, so gaps take one slot."""
    merged: list[tuple[int, int]] = []
    empty_before = False
    for low, high in bins:
        empty = low > 0 and not bincounts[:, low : high + 1].any()
        if empty and empty_before:
            merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
        empty_before = empty
    return merged


def ball_count_figure(ks, bincounts: np.ndarray, *, title: str | None = None, ax=None):
    """Share of fake rows by the number of real k-NN balls holding them, one bar colour per k.

    ``bincounts[q, c]`` is the number of fake rows inside exactly ``c`` real
    balls for the q-th k. Counts are grouped in doubling ranges; rows in no
    ball at all are the 1 - precision share.
    """
    fig, ax = _axes(ax, figsize=(8.0, 5.0))
    bincounts = np.asarray(bincounts, np.float64)
    rows = bincounts[0].sum()
    bins = _merged_empty(_doubling_bins(bincounts.shape[1] - 1), bincounts)
    width = 0.8 / len(ks)
    for q, k in enumerate(ks):
        shares = [bincounts[q, low : high + 1].sum() / rows for low, high in bins]
        ax.bar(np.arange(len(bins)) + (q - (len(ks) - 1) / 2) * width, shares, width=width,
               color=K_COLOURS[q % len(K_COLOURS)], label=f"k={k}: {shares[0]:.1%} in no ball")
    ax.set_xticks(np.arange(len(bins)), [str(low) if low == high else f"{low}-{high}" for low, high in bins],
                  rotation=45 if len(bins) > 10 else 0)
    ax.set_xlabel("real k-NN balls holding a fake row")
    ax.set_ylabel("share of fake rows")
    ax.set_title(wrapped(title or f"Ball counts of {int(rows):,} fake rows (density = mean count / k)"))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    return fig


def overlay_figure(real_coords: np.ndarray, fakes: list[tuple[str, np.ndarray]], *, axis_labels=("PC 1", "PC 2"),
                   title: str = "", ax=None):
    """The real points in grey and each run's fake points in a colour of its own (viridis, in run order)."""
    fig, ax = _axes(ax)
    ax.scatter(real_coords[:, 0], real_coords[:, 1], s=4, c="0.7", linewidths=0, rasterized=True,
               label=f"real ({len(real_coords):,} shown)")
    from matplotlib import colormaps

    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(fakes)))
    for colour, (label, coords) in zip(colours, fakes):
        ax.scatter(coords[:, 0], coords[:, 1], s=4, color=colour, alpha=0.6, linewidths=0, rasterized=True,
                   label=f"{label} ({len(coords):,} shown)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(wrapped(title))
    _legend_below(ax, columns=3, markerscale=3)
    return fig


def wrapped(title: str) -> str:
    """A title in lines of at most TITLE_WIDTH characters (its own line breaks kept)."""
    import textwrap

    return "\n".join(textwrap.fill(line, TITLE_WIDTH) for line in title.split("\n"))


def save(fig, path: str, dpi: int | None = None) -> None:
    """Write a figure (PNG, SVG or PDF, by the path's suffix) and release its memory."""
    fig.savefig(path, dpi=dpi or DPI)
    _pyplot().close(fig)
