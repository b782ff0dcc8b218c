"""CMMD (Jayasumana et al., CVPR 2024): the MMD of a Gaussian RBF kernel, σ = 10, times 1000.

As google-research/cmmd's ``distance.mmd`` computes it, with k(x, y) =
exp(−‖x − y‖² / (2σ²)) and every pair of each set with itself, its own
diagonal included (the biased estimator):

    cmmd = 1000 · (mean k(R, R) + mean k(F, F) − 2 · mean k(R, F))

Opt-in (``--companions cmmd``): a pass of its own over every pair, like full
KID, in float64 (rows moved by the pass's centre first, which changes no
distance). The rows are taken as given: the reference normalises its CLIP
embeddings before, largeemb does not.
"""

from __future__ import annotations

import numpy as np

from largeemb.io.store import Source
from largeemb.metrics.base import Found, Needs, Pass, Value
from largeemb.passes.context import PassContext
from largeemb.run.graph import Graph, run
from largeemb.run.threads import one_thread

NAME = "cmmd"
KEYS = (NAME,)
TIMING = NAME
#: The reference's bandwidth and scale.
SIGMA, SCALE = 10.0, 1000.0


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    return Needs(passes=(Pass(NAME, kernel_sums),)) if fake is not None else Needs()


def value(found: Found, config) -> Value:
    real_real, fake_fake, real_fake = found.extra[NAME]
    n, m = found.real.rows, found.fake.rows
    return Value(
        metrics={NAME: SCALE * (real_real / n**2 + fake_fake / m**2 - 2 * real_fake / (n * m))},
        details={NAME: {"sigma": SIGMA, "scale": SCALE, "estimator": "biased (V-statistic), as google-research/cmmd"}},
    )


def rbf_sum(x: np.ndarray, y: np.ndarray, panel_rows: int = 2048) -> float:
    """Σ over every (x, y) pair of exp(−‖x − y‖² / (2σ²)), in float64, ``panel_rows`` rows of x at a time."""
    y_sq = np.einsum("ij,ij->i", y, y)
    total = 0.0
    for start in range(0, len(x), panel_rows):
        part = x[start : start + panel_rows]
        sq = np.einsum("ij,ij->i", part, part)[:, None] + y_sq[None, :] - 2.0 * (part @ y.T)
        total += float(np.exp(-np.maximum(sq, 0.0) / (2.0 * SIGMA**2)).sum())
    return total


def _rows(source: Source, block, centre) -> np.ndarray:
    return np.asarray(source.read(block.start, block.stop), np.float64) - centre


def _pair_task(src_a, a, src_b, b, centre, panel_rows: int) -> float:
    """The kernel sum of block a against block b (``src_b`` None: against itself)."""
    one_thread()
    rows_a = _rows(src_a, a, centre)
    return rbf_sum(rows_a, rows_a if src_b is None else _rows(src_b, b, centre), panel_rows)


def kernel_sums(ctx: PassContext, real: Source, fake: Source) -> tuple[float, float, float]:
    """(Σ k(R, R), Σ k(F, F), Σ k(R, F)) over every ordered pair: each set's block pairs once,
    doubled off the diagonal."""
    g = Graph(NAME)
    blocks = {"real": ctx.blocks(real), "fake": ctx.blocks(fake)}
    sources = dict(zip(("real", "fake"), g.share([real, fake])))
    centre = np.asarray(ctx.centre, np.float64)
    parts = {"real": [], "fake": [], "cross": []}
    for role in ("real", "fake"):
        for a in blocks[role]:
            for b in blocks[role][a.index :]:
                same = a.index == b.index
                tile = g.unit(
                    f"{NAME}-{role}-{a.index}-{b.index}", _pair_task, sources[role], a,
                    None if same else sources[role], b, centre, ctx.panel_rows,
                )
                parts[role].append((tile, 1.0 if same else 2.0))
    for r in blocks["real"]:
        for f in blocks["fake"]:
            tile = g.unit(
                f"{NAME}-cross-{r.index}-{f.index}", _pair_task, sources["real"], r, sources["fake"], f, centre,
                ctx.panel_rows,
            )
            parts["cross"].append((tile, 1.0))
    sums = run(g, [[tile for tile, _ in parts[kind]] for kind in ("real", "fake", "cross")], NAME)
    return tuple(
        float(sum(weight * value for (_, weight), value in zip(parts[kind], found)))
        for kind, found in zip(("real", "fake", "cross"), sums)
    )
