"""Unit roundoffs of the three arithmetics the kernels prove bounds in, and the
one rounding helper those proofs share.

u is half the gap between 1 and the next representable number: every
correctly rounded operation is off by at most u relative (bounds in
:mod:`largeemb.kernels.distance`, :mod:`largeemb.kernels.screen`,
:mod:`largeemb.kernels.prune`, :mod:`largeemb.kernels.cross`).
"""

from __future__ import annotations

import numpy as np

#: float32 (24 significand bits).
UNIT_ROUNDOFF32 = 2.0**-24
#: float64 (53 significand bits).
UNIT_ROUNDOFF64 = 2.0**-53
#: bfloat16 (8 significand bits).
UNIT_ROUNDOFF_BF16 = 2.0**-8


def up32(values) -> np.ndarray:
    """float32 values no smaller than the float64 ones (inf stays inf): a safe cut for float32 tile values."""
    return np.nextafter(np.asarray(values, np.float64).astype(np.float32), np.float32(np.inf))
