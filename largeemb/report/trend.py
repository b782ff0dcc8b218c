"""The trend figure of a history file: one panel per metric against run order.

Arrays in, a matplotlib figure out, like :mod:`largeemb.report.figures`.
"""

from __future__ import annotations

import numpy as np

from largeemb.report.figures import DPI, _pyplot

#: A 95% band is the value ± this many standard errors (normal approximation).
Z95 = 1.959964
#: At most this many x tick labels are written; the rest are thinned out evenly.
MAX_TICK_LABELS = 30
SERIES_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def trend_figure(labels, values: dict, errors: dict | None = None, *, series=None, series_names=None, baseline=None,
                 title: str = "Metrics by run", axes=None):
    """One panel per entry of ``values`` (name -> one value per run, NaN where absent), runs in order on x.

    ``errors``: name -> standard errors (NaN or absent: no band), drawn as 95%
    bands; ``series``: per run, the index of its series (runs against
    different real sets are never joined by a line); ``series_names``: a
    legend entry per series; ``baseline``: the index of the baseline run,
    marked by a vertical line and a dotted level in each panel. ``axes``: one
    matplotlib axes per panel (default: a new figure, panels stacked).
    """
    names = list(values)
    runs = len(labels)
    x = np.arange(runs)
    series = np.zeros(runs, dtype=int) if series is None else np.asarray(series)
    if axes is None:
        fig, axes = _pyplot().subplots(len(names), 1, sharex=True, dpi=DPI, layout="constrained",
                                       figsize=(max(7.0, min(16.0, 4.0 + 0.3 * runs)), 1.9 * len(names) + 1.2))
        axes = np.atleast_1d(axes)
    fig = axes[0].figure
    for ax, name in zip(axes, names):
        y = np.asarray(values[name], dtype=float)
        err = np.asarray((errors or {}).get(name, np.full(runs, np.nan)), dtype=float)
        for s in np.unique(series):
            on = series == s
            colour = SERIES_COLOURS[int(s) % len(SERIES_COLOURS)]
            label = series_names[int(s)] if series_names is not None else None
            ax.plot(x[on], y[on], marker="o", markersize=4, color=colour, label=label if ax is axes[0] else None)
            band = on & np.isfinite(err)
            if band.sum() > 1:
                ax.fill_between(
                    x[band], (y - Z95 * err)[band], (y + Z95 * err)[band], color=colour, alpha=0.18, linewidth=0
                )
            elif band.any():  # a lone run: a band of one point is invisible, so a bar
                ax.errorbar(x[band], y[band], yerr=Z95 * err[band], color=colour, capsize=4, linewidth=1)
        if baseline is not None:
            s = series[baseline]
            colour = SERIES_COLOURS[int(s) % len(SERIES_COLOURS)]
            ax.axvline(baseline, color="0.35", linestyle="--", linewidth=0.9)
            if np.isfinite(y[baseline]):
                # The baseline's level across its own series only: other real sets are other yardsticks.
                ax.hlines(
                    y[baseline], x[series == s].min() - 0.4, x[series == s].max() + 0.4, color=colour, linestyle=":",
                    linewidth=1,
                )
                ax.plot(
                    [baseline], [y[baseline]], marker="*", markersize=12, color=colour, markeredgecolor="black",
                    zorder=3,
                )
        ax.set_ylabel(name + ("\n(lower is better)" if name.lower() == "fd" else ""))
        ax.grid(alpha=0.3)
    step = max(1, int(np.ceil(runs / MAX_TICK_LABELS)))
    shown = x[::step]
    axes[-1].set_xticks(
        shown, [str(labels[i]) for i in shown], rotation=45 if runs > 8 else 0, ha="right" if runs > 8 else "center"
    )
    axes[-1].set_xlabel("run (in the order the history file holds them)")
    axes[-1].set_xlim(-0.5, runs - 0.5)
    note = "bands: 95% (±1.96 standard errors with the real set fixed)"
    if baseline is not None:
        note += f"\nstar, dashed and dotted lines: the baseline run {labels[baseline]} and its values"
    axes[0].set_title(note, fontsize="small", color="0.3")
    fig.suptitle(title)
    if series_names is not None and len(series_names) > 1:
        fig.legend(
            loc="outside upper center", ncols=min(3, len(series_names)), fontsize="small",
            title="real set (fingerprint, source)", title_fontsize="small",
        )
    return fig
