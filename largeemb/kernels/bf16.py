"""bfloat16 operands for a GEMM with float32 accumulation, and its emulation.

A bf16 GEMM is any callable ``gemm(left_bits (m, k), right_bits (n, k), out=None)
-> (m, n) float32`` on uint16 bit patterns (written into ``out`` when given): oneDNN's (:mod:`largeemb.io.onednn`,
the ``bf16`` extra) or :func:`emulated` (a float32 GEMM of the bfloat16
values: the same products, exact in float32, and the same bound on any CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from largeemb.kernels.roundoff import UNIT_ROUNDOFF32


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


def emulated(left_bits: np.ndarray, right_bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The same product as oneDNN's, from a float32 GEMM of the bfloat16 values (any CPU)."""
    return np.matmul(from_bits(left_bits), from_bits(right_bits).T, out=out)


@dataclass(frozen=True)
class Rounded:
    """Rows x rounded to bfloat16 once per block: what every screened tile needs of them.

    ``bits``: x̂ as bit patterns; per row, upper bounds of |δ|² (δ = x - x̂,
    exact in float32 by Sterbenz), of |x̂|² and of |x|² (from |x̂| + |δ|). The
    float32 sums of squares are raised by their own bound γ_dim (x̂² is exact:
    8-bit significands).
    """

    bits: np.ndarray
    delta_sq: np.ndarray
    hat_sq: np.ndarray
    sq: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray) -> Rounded:
        bits = to_bits(rows)
        raise_ = 1.0 + 2.0 * (rows.shape[1] + 2) * UNIT_ROUNDOFF32  # float32 sums of squares raised by their bound
        hat = from_bits(bits)
        delta = rows - hat
        delta_sq = np.einsum("ij,ij->i", delta, delta).astype(np.float64) * raise_
        hat_sq = np.einsum("ij,ij->i", hat, hat).astype(np.float64) * raise_
        return cls(bits, delta_sq, hat_sq, (np.sqrt(hat_sq) + np.sqrt(delta_sq)) ** 2 * (1.0 + 2.0**-50))

    def __getitem__(self, rows) -> Rounded:
        """The same rows as ``array[rows]`` would take (a slice is a view)."""
        return Rounded(*(getattr(self, f.name)[rows] for f in fields(self)))
