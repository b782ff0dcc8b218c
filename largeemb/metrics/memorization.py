"""Memorisation audit of every fake row: how close it lies to its nearest real
row, against how close that real row lies to its own nearest other real row.

Per fake row j with nearest real row i (lowest index on ties), the calibrated
nearest-neighbour ratio

    ratio_j = d(fake_j, real_i) / d(real_i, its nearest other real row)

and the row counts as memorised when ratio_j < 1/3, or when it is an exact copy
(d = 0: also where real_i has copies of its own, whose radius is 0). 1/3 is the
threshold of the nearest-over-second-nearest memorisation test (Yoon et al.
2023); here the denominator is the real row's own nearest-neighbour distance
(a calibrated variant), which authenticity already needs (the real radii at
k = 1 and each fake row's nearest real row, from the settle pass): the audit
costs no pass. The share with ratio < 1 (nearer to the real row than any
other real row is) is reported beside it: about 1 − authenticity.
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.authenticity import needs as authenticity_needs
from largeemb.metrics.base import Found, Needs, Value
from largeemb.metrics.prdc import share_errors

NAME = "memorization"
#: The per-row ratios are kept on the result (and in samples.zarr) under this name.
RATIOS = "fake_memorization_ratio"
KEYS = (NAME, RATIOS)
TIMING = "companions"
THRESHOLD = 1.0 / 3.0
RULE = (
    "d(fake row, its nearest real row) / d(that real row, its nearest other real row) < threshold, "
    "or an exact copy (distance 0)"
)


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    """Authenticity's: k = 1 and the per-sample nearest real rows."""
    return authenticity_needs(config, real, fake)


def value(found: Found, config) -> Value:
    if found.per_sample is None:
        return Value()
    nearest_other = found.radii("real", 1)
    if nearest_other is None:
        return Value(warnings=["memorization not computed: the reference holds no k=1 radii (rebuild it)"])
    ps = found.per_sample
    ratio = ratios(nearest_other, ps.fake_nearest_real, ps.fake_nearest_dist)
    flags = ratio < THRESHOLD  # an exact copy's ratio is 0
    share = float(np.mean(flags))
    return Value(
        metrics={NAME: share},
        details={
            NAME: {
                "rule": RULE,
                "threshold": THRESHOLD,
                "memorized_rows": int(flags.sum()),
                "exact_copies": int(np.count_nonzero(ps.fake_nearest_dist == 0)),
                "share_ratio_below_1": float(np.mean(ratio < 1.0)),
                "source": "calibrated nearest-neighbour ratio; the threshold of Yoon et al. 2023's 1/3 test",
            }
        },
        standard_errors_given_real=share_errors(NAME, flags),
        rows={RATIOS: ratio},
    )


def ratios(real_nearest_other: np.ndarray, fake_nearest_real: np.ndarray, fake_nearest_dist: np.ndarray):
    """Per fake row: its nearest-real distance over that real row's own nearest-other distance (inf where
    that is 0 and the fake row is not a copy; 0 for a copy)."""
    own = real_nearest_other[fake_nearest_real].astype(np.float64)
    dist = np.asarray(fake_nearest_dist, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(own > 0, dist / np.where(own > 0, own, 1.0), np.inf)
    out[dist == 0] = 0.0
    return out
