"""MiFID (Bai et al. 2021): FD divided by a memorisation penalty, as
torchmetrics' ``image/mifid.py`` computes it.

For each real row, the minimum over the fake rows of the cosine distance
1 − |cos| (torchmetrics takes the absolute cosine), then the mean over the real
rows: m. The penalty is m when m < ε = 0.1, else 1 (no penalty), and

    mifid = fd / (penalty + 1e-14)   (0 when fd ≤ 1e-8).

Opt-in (``--companions mifid``): a pass of its own over every real × fake pair,
rows scaled to unit length in float64; each real row keeps only its largest
|cos| (no matrix). torchmetrics leaves out rows whose entries sum to 0 (zero
image features); largeemb leaves out rows of zero length, the rows whose
cosine is undefined. FD is largeemb's (unbiased covariances, as torchmetrics').
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.base import Found, Needs, Pass, Value
from largeemb.metrics.fd import frechet_once
from largeemb.passes.pairs import nearest_cosine

NAME = "mifid"
KEYS = (NAME,)
TIMING = NAME
#: torchmetrics' cosine_distance_eps, the guard added to the penalty, and the FD below which MiFID is 0.
EPSILON, GUARD, FD_FLOOR = 0.1, 10e-15, 1e-8


def chosen(config) -> bool:
    return NAME in config.companions


def _pass(ctx, real, fake):
    return nearest_cosine(ctx, NAME, real, fake)


def needs(config, real, fake) -> Needs:
    return Needs(passes=(Pass(NAME, _pass),)) if fake is not None else Needs()


def value(found: Found, config) -> Value:
    best, nonzero = found.extra[NAME]
    distance = float(np.mean(1.0 - best[nonzero])) if nonzero.any() else 1.0
    penalty = distance if distance < EPSILON else 1.0
    fd = frechet_once(found)
    return Value(
        metrics={NAME: fd / (penalty + GUARD) if fd > FD_FLOOR else 0.0},
        details={
            NAME: {
                "mean_min_cosine_distance": distance,
                "penalty": penalty,
                "epsilon": EPSILON,
                "direction": "min over fake rows for each real row, then the mean over real rows",
                "real_rows_left_out": int(np.count_nonzero(~nonzero)),
                "source": "torchmetrics image/mifid.py",
            }
        },
    )
