"""P-precision and P-recall (Park & Kim 2023): each row's probability of lying
in the other set's support, 1 - Π(d/R) over that set's rows within a common
radius R; R is PPR_A times the set's mean k-NN radius at k = PPR_K.

The cross pass sums log(d/R) per row over the pairs within R
(:class:`largeemb.kernels.prob.ProbPartial`); this module picks R and turns
the sums into the two scores.
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.base import Found, Needs, Value

NAME = "p_precision_recall"
P_PRECISION, P_RECALL = "p_precision", "p_recall"
KEYS = (NAME, P_PRECISION, P_RECALL)
TIMING = "companions"
#: The authors' defaults: the common radius is PPR_A times the mean k-NN radius at k = PPR_K.
PPR_A, PPR_K = 1.2, 4


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    """The radii at k = PPR_K (a reference always keeps them: cheap, the same candidates) and the cross pass's sums."""
    return Needs(k=(PPR_K,), prob_radii=(PPR_K, prob_radius))


def value(found: Found, config) -> Value:
    prob = found.memberships.prob
    if prob is None:
        return Value(
            warnings=[
                f"P-precision/recall not computed: the reference holds no k={PPR_K} radii "
                "(rebuild it with this largeemb)"
            ]
        )
    real_radius, fake_radius = found.prob_radii
    return Value(
        metrics={
            P_PRECISION: prob_score(prob.fake_log, prob.fake_zero), P_RECALL: prob_score(prob.real_log, prob.real_zero),
        },
        details={NAME: {"real_radius": real_radius, "fake_radius": fake_radius}},
    )


def prob_radius(radii_at_k: np.ndarray) -> float:
    """The common radius of P-precision / P-recall: a · mean k-NN radius (k = PPR_K)."""
    return float(PPR_A * np.mean(radii_at_k))


def prob_score(log_sum: np.ndarray, met_zero: np.ndarray) -> float:
    """mean over rows of 1 - Π(d/R): P-precision over fake rows, P-recall over real rows."""
    product = np.where(met_zero, 0.0, np.exp(log_sum))
    return float(np.mean(1.0 - product))
