"""The plot stage: plot data (``projection.npz``), t-SNE and figures.

``write_plots(result, directory)`` writes them for an evaluation;
``redraw(directory)`` draws the figures again from a finished run's saved
data (``stage``). The figure functions (arrays in, a matplotlib figure out)
are in ``figures``, what each figure says in ``captions``, t-SNE in ``tsne``.
For runs: ``trend`` (the history's figure), ``page`` (``report.html``),
``html`` (self-contained pages), ``definitions`` (a line per metric) and ``overlay`` (several runs'
fakes on one PCA basis).
"""

from largeemb.report.stage import redraw, write_plots

__all__ = ["redraw", "write_plots"]
