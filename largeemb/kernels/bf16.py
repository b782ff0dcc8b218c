"""bfloat16 operands for a GEMM with float32 accumulation, and its emulation.

A bf16 GEMM is any callable ``gemm(left_bits (m, k), right_bits (n, k)) ->
(m, n) float32`` on uint16 bit patterns: oneDNN's (:mod:`largeemb.io.onednn`,
the ``bf16`` extra) or :func:`emulated` (a float32 GEMM of the bfloat16
values: the same products, exact in float32, and the same bound on any CPU).
"""

from __future__ import annotations

import numpy as np

#: Unit roundoff of bfloat16 (8 significand bits).
UNIT_ROUNDOFF_BF16 = 2.0**-8


def to_bits(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as uint16 bit patterns.

    Inputs are finite (the input checks reject the rest), so no NaN case.
    In place on one uint32 buffer: as fast here as ml_dtypes' C cast, whose
    import alone takes most of a second.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits >> np.uint32(16)
    rounded &= np.uint32(1)
    rounded += np.uint32(0x7FFF)
    rounded += bits
    rounded >>= np.uint32(16)
    return rounded.astype(np.uint16)


def from_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns as the float32 values they stand for (exact)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values as two bfloat16 parts (hi + lo within 2^-16 relative): norms in a bf16 GEMM."""
    hi = to_bits(values.astype(np.float32))
    lo = to_bits((values - from_bits(hi)).astype(np.float32))
    return hi, lo


def emulated(left_bits: np.ndarray, right_bits: np.ndarray) -> np.ndarray:
    """The same product as oneDNN's, from a float32 GEMM of the bfloat16 values (any CPU)."""
    return from_bits(left_bits) @ from_bits(right_bits).T


