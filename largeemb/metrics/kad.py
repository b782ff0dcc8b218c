"""KAD, the kernel audio distance (Chung et al. 2025, "KAD: No More FAD!"), as
kadtk's ``kad.py`` computes it: the unbiased MMD² of a Gaussian kernel, times 100.

    k(x, y) = exp(−γ‖x − y‖²),  γ = 1 / (2σ² + 1e-8),
    kad = 100 · (Σ_{i≠i'} k(R) / n(n−1) + Σ_{j≠j'} k(F) / m(m−1) − 2 Σ k(R, F) / nm)

σ is the median distance over every pair of rows of the **fake** (evaluated)
set: kadtk's code takes ``median_pairwise_distance(y)`` with y its eval set
(its README says the reference set; the code is followed), with torch.median's
lower median of ``torch.pdist``. kadtk computes that in float32 (or on a
random subsample when asked); largeemb finds it exactly over every pair by
selection passes (:func:`largeemb.passes.pairs.median_sq_distance`), or takes
``--kad-bandwidth``. Opt-in (``--companions kad``).
"""

from __future__ import annotations

import numpy as np

from largeemb.errors import InputError
from largeemb.kernels.kid import mmd2_unbiased
from largeemb.metrics.base import Found, Needs, Pass, Value
from largeemb.passes.pairs import gaussian_sums, median_sq_distance

NAME = "kad"
KEYS = (NAME,)
TIMING = NAME
#: kadtk's SCALE_FACTOR and the eps of its γ.
SCALE, EPS = 100.0, 1e-8


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    if fake is None:
        return Needs()
    if min(real.rows, fake.rows) < 2:  # the unbiased estimator divides by n(n − 1)
        raise InputError(
            "KAD needs at least 2 rows in each set", f"in {real.name} and {fake.name}", "pass larger sets"
        )

    def kad_pass(ctx, real, fake):
        if config.kad_bandwidth is None:
            sigma, rule = float(np.sqrt(median_sq_distance(ctx, f"{NAME}-median", fake))), "median"
        else:
            sigma, rule = float(config.kad_bandwidth), "given"
        gamma = 1.0 / (2.0 * sigma**2 + EPS)
        sums = gaussian_sums(ctx, NAME, real, fake, gamma, ("real", "fake", "cross"))
        return sigma, rule, sums

    return Needs(passes=(Pass(NAME, kad_pass),))


def value(found: Found, config) -> Value:
    sigma, rule, sums = found.extra[NAME]
    n, m = found.real.rows, found.fake.rows
    # A set with itself: its diagonal (n terms of exactly 1) left out, as kadtk does.
    kad = SCALE * mmd2_unbiased(sums["real"] - n, sums["fake"] - m, sums["cross"], n, m)
    bandwidth = (
        "median pairwise distance of the fake set (exact, lower median)" if rule == "median" else "--kad-bandwidth"
    )
    return Value(
        metrics={NAME: float(kad)},
        details={NAME: {"bandwidth": sigma, "bandwidth_from": bandwidth, "scale": SCALE, "gamma_eps": EPS,
                        "estimator": "unbiased MMD² (kadtk)", "source": "kadtk kad.py"}},
    )
