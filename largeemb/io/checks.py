"""Input checks that need more than one array's header: the pair's shapes,
what the moments pass found (NaN/inf, overflow, zero rows), and the spread.

The checks of a single store (path, array, 2-D, dtype, missing chunks) are
in :mod:`largeemb.io.store`; all of them raise :class:`InputError`.
"""

from __future__ import annotations

import numpy as np

from largeemb.errors import InputError
from largeemb.io.store import Source
from largeemb.kernels.distance import largest_safe_value
from largeemb.kernels.moments import Moments, SegmentCheck

#: Below this many rows k-NN radii are unstable (Naeem et al. 2020).
SMALL_SET_ROWS = 1000
#: Above this dim the float64 covariance of each set takes noticeable memory.
LARGE_DIM = 4096
#: Below this spread, squared distances of centred rows fall out of float32's
#: normal range and its error bound no longer holds.
SMALLEST_SPREAD = 1e-15


def check_pair(real: Source, fake: Source, max_k: int) -> list[str]:
    """Refuse a pair that cannot be compared; warnings for one that can, with caveats."""
    if real.dim != fake.dim:
        raise InputError(
            f"real and fake embeddings differ in dim ({real.dim} vs {fake.dim})",
            f"in {real.name} and {fake.name}",
            "embed both sets with the same network",
        )
    for src, role in ((real, "real"), (fake, "fake")):
        if max_k >= src.rows:
            raise InputError(
                f"k={max_k} needs more than {max_k} {role} rows, got {src.rows}",
                f"in {src.name}",
                "use a smaller --k or more rows",
            )
    warnings = []
    for src, role in ((real, "real"), (fake, "fake")):
        if src.rows < SMALL_SET_ROWS:
            warnings.append(f"{role} set has only {src.rows} rows: k-NN radii are unstable below ~{SMALL_SET_ROWS}")
        if src.dtype.startswith(("int", "uint")):
            warnings.append(f"{role} array has integer dtype {src.dtype}: cast to float")
    if real.dim > LARGE_DIM:
        warnings.append(f"dim {real.dim} > {LARGE_DIM}: each covariance takes {real.dim**2 * 8 / 2**20:.0f} MiB")
    return warnings


def checked_moments(check: SegmentCheck, source: Source, role: str, metric: str) -> Moments:
    """The moments of a set whose streamed rows were all usable; else the first bad row, named."""
    if check.first_nonfinite >= 0:
        raise InputError(
            f"{role} embeddings contain NaN or inf (first at row {check.first_nonfinite})",
            f"in {source.name}",
            "fix or drop those rows before evaluating",
        )
    if check.first_too_large >= 0:
        raise InputError(
            f"{role} row {check.first_too_large} holds a value beyond ±{largest_safe_value(source.dim, metric):.3g}, "
            "where distances would overflow",
            f"in {source.name}",
            "rescale the embeddings (e.g. L2-normalise them or use --metric cosine)",
        )
    if metric == "cosine" and check.first_zero >= 0:
        raise InputError(
            f"{role} row {check.first_zero} is all zeros, which has no direction for the cosine metric",
            f"in {source.name}",
            "drop zero rows or use --metric euclidean",
        )
    return check.moments


def check_scale(real_moments: Moments, fake_moments: Moments, real: Source, fake: Source) -> None:
    """Refuse data whose spread float32 cannot resolve (all-identical rows are fine)."""
    spread = max(float(np.sqrt(max(m.total_variance(), 0.0) / len(m.mean))) for m in (real_moments, fake_moments))
    if 0.0 < spread < SMALLEST_SPREAD:
        raise InputError(
            f"embeddings vary by only ~{spread:.1e} around their mean, too little for the float32 distance tiles",
            f"in {real.name} and {fake.name}",
            "multiply both sets by the same large power of two (distances scale, metrics do not change)",
        )
