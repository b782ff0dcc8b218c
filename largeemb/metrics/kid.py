"""KID (Bińkowski et al. 2018): the unbiased MMD² with k(x, y) = (x·y/d + 1)³.

Two estimators, each opt-in: over every pair (``kid``: per-row kernel sums
from a pass of their own, :func:`largeemb.passes.kid.kid_stage`, with the
first-order standard error), and the mean and spread over seeded subsets
(``kid_subsets``: torch-fidelity's and clean-fid's estimator).
"""

from __future__ import annotations

import numpy as np

from largeemb.errors import InputError
from largeemb.kernels.kid import mmd2_unbiased
from largeemb.metrics.base import Found, Needs, Pass, Value
from largeemb.passes.kid import kid_stage, kid_subsets_stage

NAME = "kid"
SUBSETS, SE = "kid_subsets", "kid_se"
MEAN, STD = "kid_subsets_mean", "kid_subsets_std"
KEYS = (NAME, SUBSETS, SE, MEAN, STD)
TIMING = "companions"


def chosen(config) -> bool:
    return bool(config.kid or config.kid_subsets)


def needs(config, real, fake) -> Needs:
    """The KID pass over every pair and/or one task per seeded subset; subsets no larger than either set."""
    if fake is None:
        return Needs()
    if config.kid_subsets and config.kid_subset_size > min(real.rows, fake.rows):
        raise InputError(
            f"KID subsets of {config.kid_subset_size} rows need at least that many rows in each set",
            f"in {real.name} ({real.rows} rows) and {fake.name} ({fake.rows} rows)",
            "pass a smaller --kid-subset-size",
        )
    passes = ()
    if config.kid:
        passes += (Pass(NAME, kid_stage),)
    if config.kid_subsets:

        def subsets(ctx, real, fake):
            return kid_subsets_stage(real, fake, config.kid_subsets, config.kid_subset_size, config.kid_subset_seed)

        passes += (Pass(SUBSETS, subsets),)
    return Needs(passes=passes)


def value(found: Found, config) -> Value:
    out = Value()
    sums = found.extra.get(NAME)
    if sums is not None:
        out.metrics[NAME], out.details[SE] = kid_from_row_sums(
            sums.real_self, sums.real_cross, sums.fake_self, sums.fake_cross
        )
        out.standard_errors[NAME] = out.details[SE]
    subsets = found.extra.get(SUBSETS)
    if subsets is not None:
        out.metrics[MEAN] = float(np.mean(subsets))
        out.metrics[STD] = float(np.std(subsets))
        out.details[SUBSETS] = {
            "subsets": config.kid_subsets, "rows": config.kid_subset_size, "seed": config.kid_subset_seed,
        }
    return out


def kid_from_row_sums(real_self, real_cross, fake_self, fake_cross) -> tuple[float, float]:
    """KID (unbiased MMD²) over every pair, and its standard error.

    ``real_self[i]`` = Σ_{i'≠i} k(x_i, x_i'), ``real_cross[i]`` = Σ_j k(x_i, y_j);
    likewise for the fake rows. The standard error is the first-order
    (Hoeffding) one of a two-sample U-statistic: each row's own term,
    h(x_i) = real_self[i]/(n-1) - real_cross[i]/m, varies around its mean, and
    var(MMD²) ≈ 4 var(h(x))/n + 4 var(h(y))/m.
    """
    n, m = len(real_self), len(fake_self)
    value = mmd2_unbiased(real_self.sum(), fake_self.sum(), real_cross.sum(), n, m)
    h_real = real_self / (n - 1) - real_cross / m
    h_fake = fake_self / (m - 1) - fake_cross / n
    se = 2.0 * np.sqrt(np.var(h_real, ddof=1) / n + np.var(h_fake, ddof=1) / m)
    return float(value), float(se)
