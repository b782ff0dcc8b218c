"""Authenticity (Alaa et al. 2022, as dgm-eval's AuthPct computes it): the
share of fake rows whose nearest real row lies closer to another real row
than to them. It needs each real row's nearest other real row (its radius at
k = 1) and each fake row's nearest real row (the per-sample values).
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.base import Found, Needs, Value
from largeemb.metrics.prdc import share_errors

NAME = "authenticity"
#: The per-row flags are kept on the result (and in samples.zarr) under this name.
FLAGS = "fake_authentic"
KEYS = (NAME, FLAGS)
TIMING = "companions"


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    """k = 1 with per-sample values (without them it is not computed); a reference always keeps k = 1 (cheap:
    the same candidates)."""
    return Needs(k=(1,)) if fake is None or config.samples else Needs()


def value(found: Found, config) -> Value:
    if found.per_sample is None:  # it needs each fake row's nearest real row
        return Value()
    nearest_other = found.radii("real", 1)
    if nearest_other is None:
        return Value(
            warnings=["authenticity not computed: the reference holds no k=1 radii (rebuild it with this largeemb)"]
        )
    ps = found.per_sample
    flags = authentic(nearest_other, ps.fake_nearest_real, ps.fake_nearest_dist)
    share = float(np.mean(flags))
    return Value(metrics={NAME: share}, standard_errors_given_real=share_errors(NAME, flags), rows={FLAGS: flags})


def authentic(
    real_nearest_other: np.ndarray, fake_nearest_real: np.ndarray, fake_nearest_dist: np.ndarray
) -> np.ndarray:
    """Per fake row: its nearest real row lies closer to another real row than to it (Alaa et al. 2022).

    As dgm-eval's AuthPct computes it: strict ``<``, and the nearest real row
    is the lowest index among equally near ones.
    """
    return real_nearest_other[fake_nearest_real] < fake_nearest_dist
