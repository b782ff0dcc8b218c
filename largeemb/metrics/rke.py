"""RKE mode count (Jalali et al., NeurIPS 2023): the order-2 Rényi kernel
entropy's exponential, as mjalali/renyi-kernel-entropy's ``rke.py`` defines it,

    rke = n² / Σ_{i, i'} k(x_i, x_i')²,   k(x, y) = exp(−‖x − y‖² / (2σ²)),

over every ordered pair, i = i' included (its ``compute_rke_mc_frobenius_norm``
loops over all i, j; ``compute_rke_mc`` draws i and j independently, so i = j
too). The reference estimates it from 1,000,000 random pairs by default;
largeemb sums every pair exactly (k² = exp(−‖x − y‖²/σ²), float64), for each
set: ``rke_real``, ``rke_fake``. Opt-in (``--companions rke``).

σ: ``--rke-bandwidth``, else one σ for both sets: half the root-mean-square
distance between two distinct real rows, √(2 tr Σ_real) / 2 (from the moments
pass's float64 sums: no read of its own). The reference has no default; one σ for both sets
keeps the two counts comparable. Recorded in the details.
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.base import Found, Needs, Pass, Value
from largeemb.passes.pairs import gaussian_sums

NAME = "rke"
REAL, FAKE = "rke_real", "rke_fake"
KEYS = (REAL, FAKE, NAME)
TIMING = NAME


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    if fake is None:
        return Needs()

    def rke_pass(ctx, real, fake, real_moments, fake_moments):
        if config.rke_bandwidth is None:  # the mean of ‖x_i − x_i'‖² over i ≠ i' is 2 tr Σ
            sigma, rule = float(np.sqrt(2.0 * real_moments.total_variance()) / 2.0), "default"
        else:
            sigma, rule = float(config.rke_bandwidth), "given"
        # k² = exp(−d²/σ²): the Gaussian sums at γ = 1/σ².
        return sigma, rule, gaussian_sums(ctx, NAME, real, fake, 1.0 / sigma**2, ("real", "fake"))

    return Needs(passes=(Pass(NAME, rke_pass, moments=True),))


def value(found: Found, config) -> Value:
    sigma, rule, sums = found.extra[NAME]
    n, m = found.real.rows, found.fake.rows
    return Value(
        metrics={REAL: n**2 / sums["real"], FAKE: m**2 / sums["fake"]},
        details={
            NAME: {
                "bandwidth": sigma,
                "bandwidth_from": (
                    "half the RMS distance of two real rows" if rule == "default" else "--rke-bandwidth"
                ),
                "order": 2,
                "pairs": "every ordered pair, i = i' included",
                "source": "mjalali/renyi-kernel-entropy rke.py",
            }
        },
    )
