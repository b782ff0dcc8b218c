"""Every-pair passes of the kernel companions (opt-in), as tasks: Gaussian
kernel sums (KAD, RKE, CMMD), the exact median pairwise distance of a set (KAD's
bandwidth), and each real row's largest |cosine| to the fake set (MiFID).

Each set meets itself once per unordered block pair and the other set once
per block pair; rows are read in float64 and centred on the pass's centre
(which changes no distance) for the GEMMs. The NumPy is
:mod:`largeemb.kernels.pairs`.
"""

from __future__ import annotations

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels import pairs
from largeemb.passes.context import PassContext
from largeemb.run.graph import Graph, run
from largeemb.run.threads import one_thread

#: Bins per selection pass, and the most pairs a window may hold before its distances are collected.
BINS, WINDOW_PAIRS = 16384, 200_000


def _raw(source: Source, block) -> np.ndarray:
    return np.asarray(source.read(block.start, block.stop), np.float64)


def _both(source, block, centre):
    raw = _raw(source, block)
    return raw - centre, raw


def _tiles(g: Graph, name: str, roles: dict, blocks: dict, kinds, func, *args) -> dict:
    """kind ("real", "fake": a set with itself; "cross": real × fake) -> [(tile key, weight)]: each set's
    block pairs a ≤ b once (weight 2 off the diagonal), real × fake every block pair."""
    out = {}
    for kind in kinds:
        if kind == "cross":
            out[kind] = [
                (g.unit(f"{name}-cross-{r.index}-{f.index}", func, roles["real"], r, roles["fake"], f, False, *args),
                 1.0)
                for r in blocks["real"] for f in blocks["fake"]
            ]
            continue
        out[kind] = [
            (g.unit(f"{name}-{kind}-{a.index}-{b.index}", func, roles[kind], a, roles[kind], b, a.index == b.index,
                    *args), 1.0 if a.index == b.index else 2.0)
            for a in blocks[kind] for b in blocks[kind][a.index :]
        ]
    return out


def _gaussian_task(src_a, a, src_b, b, same, centre, gamma, panel_rows) -> float:
    one_thread()
    rows_a = _raw(src_a, a) - centre
    return pairs.gaussian_sum(rows_a, rows_a if same else _raw(src_b, b) - centre, gamma, panel_rows, same)


def gaussian_sums(ctx: PassContext, name: str, real: Source, fake: Source, gamma: float, kinds) -> dict:
    """kind -> Σ exp(−γ d²) over every ordered pair (a set with itself: its diagonal included)."""
    g = Graph(name)
    roles = dict(zip(("real", "fake"), g.share([real, fake])))
    blocks = {"real": ctx.blocks(real), "fake": ctx.blocks(fake)}
    centre = np.asarray(ctx.centre, np.float64)
    tiles = _tiles(g, name, roles, blocks, kinds, _gaussian_task, centre, gamma, ctx.panel_rows)
    sums = run(g, [[key for key, _ in tiles[kind]] for kind in kinds], name)
    return {
        kind: float(sum(w * v for (_, w), v in zip(tiles[kind], found))) for kind, found in zip(kinds, sums)
    }


# -- the exact median pairwise distance of one set ----------------------------


def _norm_task(source, block, centre) -> float:
    one_thread()
    rows = _raw(source, block) - centre
    return float(np.einsum("ij,ij->i", rows, rows).max(initial=0.0))


def _histogram_task(src_a, a, src_b, b, same, centre, lo, width, panel_rows):
    one_thread()
    rows_a = _raw(src_a, a) - centre
    return pairs.histogram(rows_a, rows_a if same else _raw(src_b, b) - centre, same, lo, width, BINS, panel_rows)


def _window_task(src_a, a, src_b, b, same, centre, lo, hi, panel_rows):
    one_thread()
    rows_a, raw_a = _both(src_a, a, centre)
    rows_b, raw_b = (rows_a, raw_a) if same else _both(src_b, b, centre)
    return pairs.window(rows_a, rows_b, raw_a, raw_b, same, lo, hi, panel_rows)


def _add_histograms(a, b):
    return a[0] + b[0], a[1] + b[1]


def _self_pass(ctx: PassContext, name: str, source: Source, combine, func, *args):
    """``func`` over the set's unordered block pairs, its results merged by ``combine`` in a fixed tree."""
    g = Graph(name)
    (role,) = g.share([source])
    centre = np.asarray(ctx.centre, np.float64)
    tiles = _tiles(g, name, {"fake": role}, {"fake": ctx.blocks(source)}, ("fake",), func, centre, *args)
    return run(g, g.tree([key for key, _ in tiles["fake"]], combine, f"{name}-add"), name)


def median_sq_distance(ctx: PassContext, name: str, source: Source) -> float:
    """The lower median (torch.median's) of the squared distances of every unordered pair of rows, exactly.

    Passes over every pair count the squared distances in ``BINS`` bins of a
    window that narrows to the bin holding the median, until it holds at most
    ``WINDOW_PAIRS`` pairs (or cannot narrow: ties); then one more pass
    collects the window's distances and picks the median among them
    (:func:`largeemb.kernels.pairs.pick`); a window too tight for the GEMM's
    rounding to decide widens by a bin and collects again.
    """
    n = source.rows
    rank = (n * (n - 1) // 2 - 1) // 2
    g = Graph(f"{name}-norms")
    (role,) = g.share([source])
    centre = np.asarray(ctx.centre, np.float64)
    norms = run(g, [g.unit(f"{name}-norm-{b.index}", _norm_task, role, b, centre) for b in ctx.blocks(source)], name)
    top = 4.0 * max(norms) * (1.0 + 1e-9)  # (‖a‖ + ‖b‖)² ≤ 4 max ‖x‖²: every squared distance lies below
    if top == 0.0:
        return 0.0  # every row is the same
    lo, width = 0.0, top / BINS
    # Each pass narrows the window BINS-fold (its units named by pass: a resumed run reloads the same pass).
    for step in range(40):
        below, counts = _self_pass(
            ctx, f"{name}-count{step}", source, _add_histograms, _histogram_task, lo, width, ctx.panel_rows
        )
        bin_ = int(np.searchsorted(np.cumsum(counts) + below, rank, side="right"))
        bin_ = min(bin_, BINS - 1)
        lo += bin_ * width
        if counts[bin_] <= WINDOW_PAIRS or width / BINS <= 1e-13 * top:
            break
        width /= BINS
    hi = lo + width
    for step in range(8):
        window = _self_pass(ctx, f"{name}-window{step}", source, pairs.merged_window, _window_task, lo, hi,
                            ctx.panel_rows)
        value = pairs.pick(*window, rank, lo, hi)
        if value is not None:
            return value
        lo, hi = max(lo - width, 0.0), hi + width
        width *= 2
    raise RuntimeError(f"{name}: the median pairwise distance could not be isolated")  # never met


# -- MiFID: each real row's largest |cosine| to the fake set ------------------


def _cosine_task(real, r, fake, f, panel_rows):
    """Each real row's max |cos| over the tile's nonzero fake rows; NaN for a zero real row (NaN wins every
    np.maximum, so the merged maxima also say which real rows are zero: no second read of the real set)."""
    one_thread()
    real_unit, real_nonzero = pairs.unit_rows(_raw(real, r))
    fake_unit, fake_nonzero = pairs.unit_rows(_raw(fake, f))
    best = pairs.max_abs_cosine(real_unit, fake_unit[fake_nonzero], panel_rows)
    best[~real_nonzero] = np.nan
    return best


def nearest_cosine(ctx: PassContext, name: str, real: Source, fake: Source) -> tuple[np.ndarray, np.ndarray]:
    """(each real row's max |cos| over the nonzero fake rows, which real rows are nonzero)."""
    g = Graph(name)
    real_role, fake_role = g.share([real, fake])
    fake_blocks = ctx.blocks(fake)
    best = [
        g.tree([g.unit(f"{name}-{r.index}-{f.index}", _cosine_task, real_role, r, fake_role, f, ctx.panel_rows)
                for f in fake_blocks], np.maximum, f"{name}-max")
        for r in ctx.blocks(real)
    ]
    best = np.concatenate(run(g, best, name))
    nonzero = ~np.isnan(best)
    return np.where(nonzero, best, 0.0), nonzero
