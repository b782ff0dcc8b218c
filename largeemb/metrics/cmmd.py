"""CMMD (Jayasumana et al., CVPR 2024): the MMD of a Gaussian RBF kernel, σ = 10, times 1000.

As google-research/cmmd's ``distance.mmd`` computes it, with k(x, y) =
exp(−‖x − y‖² / (2σ²)) and every pair of each set with itself, its own
diagonal included (the biased estimator):

    cmmd = 1000 · (mean k(R, R) + mean k(F, F) − 2 · mean k(R, F))

Opt-in (``--companions cmmd``): a pass of its own over every pair, in float64:
the Gaussian kernel sums KAD and RKE take too (rows moved by the pass's
centre first, which changes no distance). The rows are taken as given: the
reference normalises its CLIP embeddings before, largeemb does not.
"""

from __future__ import annotations

from largeemb.metrics.base import Found, Needs, Pass, Value
from largeemb.passes.pairs import gaussian_sums

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
    sums = found.extra[NAME]
    n, m = found.real.rows, found.fake.rows
    return Value(
        metrics={NAME: SCALE * (sums["real"] / n**2 + sums["fake"] / m**2 - 2 * sums["cross"] / (n * m))},
        details={NAME: {"sigma": SIGMA, "scale": SCALE, "estimator": "biased (V-statistic), as google-research/cmmd"}},
    )


def kernel_sums(ctx, real, fake) -> dict:
    """kind ("real", "fake", "cross") -> Σ k over every ordered pair (a set with itself: its diagonal included),
    k = exp(−γ d²) with γ = 1/(2σ²): KAD's and RKE's Gaussian sums (:func:`largeemb.passes.pairs.gaussian_sums`)."""
    return gaussian_sums(ctx, NAME, real, fake, 1.0 / (2.0 * SIGMA**2), ("real", "fake", "cross"))
