"""PR-cover (Cheema & Urner, AISTATS 2023), as the authors' ``PRCover`` computes it:
k' = C·k nearest rows (k = 3, C = 3: the 9th other row of the same set is a
row's radius) and a threshold of k'/C = 3 rows of the other set, ``<=``.

- cover_precision: the share of fake rows whose k'-NN ball (within the fake
  set) holds at least 3 real rows;
- cover_recall: the share of real rows whose k'-NN ball holds at least 3 fake rows.

Opt-in (``--companions pr_cover``): the radii at k' widen both the self pass
and the cross pass (15-17% more CPU on a metrics-only run, 20,000 rows a set).

Named by the paper's meaning: the authors' code calls precision what it
computes over the first set it is given, the real one (``PRCover(P, Q)``
with P real), i.e. cover_recall here.
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.base import Ball, Found, Needs, Value

NAME = "pr_cover"
COVER_PRECISION, COVER_RECALL = "cover_precision", "cover_recall"
KEYS = (NAME, COVER_PRECISION, COVER_RECALL)
TIMING = "companions"
#: The authors' k and C: balls at k' = C·k, a ball "covered" from k'/C = k rows of the other set.
COVER_K, COVER_C = 3, 3
K_PRIME, THRESHOLD = COVER_C * COVER_K, COVER_K
BALLS = (Ball("fake", K_PRIME, True), Ball("real", K_PRIME, True))


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    """The radii at k' (a reference always keeps them) and the cross pass's counts in those balls."""
    return Needs(k=(K_PRIME,)) if fake is None else Needs(k=(K_PRIME,), balls=BALLS)


def value(found: Found, config) -> Value:
    fake, real = (found.ball(b) for b in BALLS)
    if fake is None or real is None:
        return Value(
            warnings=[f"PR-cover not computed: the reference holds no k={K_PRIME} radii (rebuild it with this version)"]
        )
    return Value(
        metrics={
            COVER_PRECISION: float(np.mean(fake.holds >= THRESHOLD)),
            COVER_RECALL: float(np.mean(real.holds >= THRESHOLD)),
        },
        details={NAME: {"k_prime": K_PRIME, "threshold": THRESHOLD}},
    )
