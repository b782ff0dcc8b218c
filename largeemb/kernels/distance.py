"""Distances between row blocks: fast float32 tiles with a proven error bound,
and exact float64 distances for the few pairs the bound cannot decide.

The float32 tile comes from one GEMM on augmented rows,
``[x, |x|^2, 1] . [-2y, 1, |y|^2] = |x - y|^2``, after centring both sets on
the real mean so that the cancellation in that formula stays small.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

UNIT_ROUNDOFF32 = 2.0**-24
UNIT_ROUNDOFF64 = 2.0**-53
#: Pairs handled per chunk in exact float64 re-checks (bounds their memory).
EXACT_CHUNK = 4096


def sqdist_error_scale(dim: int, unit: float = UNIT_ROUNDOFF32) -> float:
    """κ with ``|d2_float32 - d2_exact| <= κ (|x'|^2 + |y'|^2)`` for centred x', y'.

    Terms: rounding x - c to float32 (about 4u), the length-(dim+2) float32
    inner product (γ_{dim+2} times Σ|terms| <= 2(|x'|^2+|y'|^2)), and the
    rounding of the norms and of the result; the whole is doubled for slack.
    With ``unit=UNIT_ROUNDOFF64`` the same bound holds for the float64 GEMM
    formula ``|x'|^2 + |y'|^2 - 2 x'.y'`` on float64 centred rows.
    """
    n = dim + 2
    gamma = n * unit / (1.0 - n * unit)
    return 2.0 * (2.0 * gamma + 8.0 * unit)


def largest_safe_value(dim: int, metric: str) -> float:
    """Largest |value| whose distances stay finite in the arithmetic that computes them.

    Euclidean tiles hold squared distances of centred rows in float32, with
    terms up to about 4 dim (2 |x|)²; a 4x margin on top. Cosine rows are
    normalised in float64, where only the norm can overflow.
    """
    if metric == "cosine":
        return float(np.sqrt(np.finfo(np.float64).max / (dim + 2)) / 4)
    return float(np.sqrt(np.finfo(np.float32).max / (64.0 * (dim + 2))))


@dataclass(frozen=True)
class Gathered:
    """Rows ``index`` of a stored array, gathered only when read (exact re-checks read few)."""

    array: np.ndarray
    index: np.ndarray

    def __getitem__(self, rows) -> np.ndarray:
        return self.array[self.index[rows]]


@dataclass(frozen=True)
class Block:
    """A run of rows ready for the distance kernels (a read block, or a panel of one)."""

    start: int
    raw: np.ndarray | Gathered | None  # rows as stored (exact float64 values come from here); None where unneeded
    metric: str
    left: np.ndarray  # float32 [x - c, |x - c|^2, 1]
    sqnorm: np.ndarray  # float64 |x - c|^2 of the float32 centred rows
    bf16_gemm: Callable | None = None  # screened tiles multiply first with it (None: float32 only)

    @property
    def rows(self) -> int:
        return self.left.shape[0]

    @property
    def dim(self) -> int:
        return self.left.shape[1] - 2

    @property
    def centred(self) -> np.ndarray:
        return self.left[:, : self.dim]

    def right(self) -> np.ndarray:
        """float32 [-2 (x - c), 1, |x - c|^2]: the other GEMM operand."""
        dim = self.dim
        right = np.empty_like(self.left)
        np.multiply(self.centred, -2.0, out=right[:, :dim])
        right[:, dim] = 1.0
        right[:, dim + 1] = self.left[:, dim]
        return right

    def exact(self, local_rows: np.ndarray) -> np.ndarray:
        """float64 rows as the metric sees them: the values a brute force uses."""
        return metric_rows(self.raw[local_rows], self.metric)

    def panel(self, lo: int, hi: int) -> "Block":
        """Rows lo:hi as a Block of their own (views, no copies)."""
        raw = None if self.raw is None else self.raw[lo:hi]
        return Block(self.start + lo, raw, self.metric, self.left[lo:hi], self.sqnorm[lo:hi], self.bf16_gemm)

    def panels(self, panel_rows: int) -> list[tuple[int, "Block"]]:
        """(offset, panel) pairs covering the block: the unit of one GEMM."""
        return [(lo, self.panel(lo, min(lo + panel_rows, self.rows))) for lo in range(0, self.rows, panel_rows)]


def metric_rows(raw: np.ndarray, metric: str) -> np.ndarray:
    """Rows as float64 in the space the metric measures (unit rows for cosine)."""
    rows = np.asarray(raw, dtype=np.float64)
    if metric == "cosine":
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def prepare_block(raw: np.ndarray, start: int, centre: np.ndarray, metric: str, bf16_gemm: Callable | None = None) -> Block:
    """Centre a block and lay it out for the augmented GEMM.

    ``centre`` must be float32. float32 rows are centred in float32 (one
    rounding per entry, the same bound as rounding a float64 difference);
    other dtypes and the cosine metric go through float64 first.
    """
    rows, dim = raw.shape
    left = np.empty((rows, dim + 2), dtype=np.float32)
    centred = left[:, :dim]
    if raw.dtype == np.float32 and metric == "euclidean":
        np.subtract(raw, centre, out=centred)
    else:
        centred[...] = metric_rows(raw, metric) - centre
    sqnorm = np.einsum("ij,ij->i", centred, centred, dtype=np.float64)
    left[:, dim] = sqnorm
    left[:, dim + 1] = 1.0
    return Block(start, raw, metric, left, sqnorm, bf16_gemm)


def sqdist32(a: Block, b_right: np.ndarray) -> np.ndarray:
    """float32 squared distances between all rows of ``a`` and of ``b`` (one GEMM).

    ``b_right`` is ``b.right()``, built once per panel by the caller.
    """
    return a.left @ b_right.T


def exact_pair_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 distances between matching rows of ``a`` and ``b``, as a brute force computes them."""
    diff = a - b
    return np.sqrt((diff * diff).sum(axis=1))


def exact_pairs(take_a, take_b, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """float64 distances ``|A[ia] - B[ib]|`` in bounded chunks.

    ``take_a``/``take_b`` map row indices to float64 metric rows (e.g. ``Block.exact``).
    """
    out = np.empty(len(ia), dtype=np.float64)
    for lo in range(0, len(ia), EXACT_CHUNK):
        hi = lo + EXACT_CHUNK
        out[lo:hi] = exact_pair_dist(take_a(ia[lo:hi]), take_b(ib[lo:hi]))
    return out




#: Odd 64-bit multipliers of a row hash (fixed: labels never depend on a seed).
HASH_MULTIPLIERS = np.random.default_rng(0x1A76E).integers(0, 2**63, 65536, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def copy_labels(rows: np.ndarray) -> np.ndarray:
    """One label per row, equal exactly for byte-identical rows (float64 rows).

    A 64-bit multiplicative hash of each row's bits groups them (ten times
    faster than ``np.unique(axis=0)``, which sorts whole rows); every row is
    then compared with its group's first row, and any collision falls back
    to ``np.unique(axis=0)``.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if rows.shape[1] > len(HASH_MULTIPLIERS):
        return np.unique(rows, axis=0, return_inverse=True)[1].ravel()
    bits = rows.view(np.uint64)
    key = (bits * HASH_MULTIPLIERS[: rows.shape[1]]).sum(axis=1)  # wraps modulo 2**64
    _, first, label = np.unique(key, return_index=True, return_inverse=True)
    if not (bits == bits[first[label]]).all():  # a collision: two different rows, one hash
        return np.unique(rows, axis=0, return_inverse=True)[1].ravel()
    return label.ravel()


# -- reduced-precision screening -------------------------------------------------

#: Where a bf16 tile leaves more than this share of its entries to recompute,
#: the tile is recomputed whole by the float32 GEMM (clustered data, loose cuts).
RECHECK_WHOLE = 0.05
#: Entries recomputed per gathered float32 chunk (small chunks stay in cache:
#: 4x faster here than 8192).
RECHECK_CHUNK = 1024


def bf16_error_scale(dim: int) -> float:
    """κ_bf with ``|d2_bf16 - |x' - y'|^2| <= κ_bf (|x'|^2 + |y'|^2)`` for the float32 centred rows x', y'.

    Terms, with u the bfloat16 unit roundoff: rounding both operands of
    x'.y' to bfloat16 changes 2 x'.y' by at most 2(2u + u²) Σ|x'_i||y'_i|
    <= (2u + u²)(|x'|² + |y'|²); the rest is :func:`_bf16_sum_scale`. A
    quarter more for slack (the bound is checked on adversarial data in
    ``tests/test_bf16.py``). Screening uses the tighter per-row form of the
    rounding term (:func:`bf16_rounding_terms`).
    """
    u = 2.0**-8
    return 1.25 * ((2 * u + u * u) + _bf16_sum_scale(dim))


def _bf16_sum_scale(dim: int) -> float:
    """Relative error of a bf16 tile beyond the operands' rounding: each norm is split
    into two bfloat16 parts (2u² relative); products of bfloat16 values are exact in
    float32 and their length-(dim+4) float32 sum adds γ_{dim+4} Σ|terms|, Σ|terms| <=
    2(1 + u)²(|x'|² + |y'|²); the norms fed in were rounded to float32 (u32 each)."""
    u, u32 = 2.0**-8, UNIT_ROUNDOFF32
    n = dim + 4
    gamma = n * u32 / (1.0 - n * u32)
    return 2 * u * u + 2 * gamma * (1 + u) ** 2 + 2 * u32


def _rounding_sums(rows: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds of |δ|² and |x̂|² per row, for x̂ = ``rows`` rounded to bfloat16 (``bits``) and δ = rows - x̂.

    δ is exact in float32 (Sterbenz); the float32 sums of squares are raised by
    their own relative bound γ_dim (and x̂² is exact: 8-bit significands).
    """
    from largeemb.kernels import bf16

    raise_ = 1.0 + 2.0 * (rows.shape[1] + 2) * UNIT_ROUNDOFF32
    rounded = bf16.from_bits(bits)
    delta = rows - rounded
    return (
        np.einsum("ij,ij->i", delta, delta).astype(np.float64) * raise_,
        np.einsum("ij,ij->i", rounded, rounded).astype(np.float64) * raise_,
    )


def bf16_rounding_terms(x, x_bits, y, y_bits) -> tuple[np.ndarray, np.ndarray]:
    """Per-row terms e_x, e_y with ``|2 x.y - 2 x̂.ŷ| <= e_x[i] + e_y[j]`` for every pair of rows.

    x̂, ŷ are the float32 rows x, y rounded to bfloat16 (``x_bits``, ``y_bits``).
    Proof: with δx = x - x̂ and δy = y - ŷ, x.y - x̂.ŷ = δx.y + x̂.δy, so by
    Cauchy-Schwarz |2 x.y - 2 x̂.ŷ| <= 2|δx||y| + 2|x̂||δy|, and 2ab <= a²/ρ + ρb²
    for any ρ > 0: e_x = |δx|²/ρ + ρ|x̂|², e_y = ρ|y|² + |δy|²/ρ, with
    |y|² <= (|ŷ| + |δy|)². ρ = the rows' rms |δ|/|·| makes each term about
    2ρ|x|² where the worst case (every coordinate off by u,
    :func:`bf16_error_scale`) charges 2u|x|²: on Gaussian data the terms are
    0.43 of the worst case's (``tests/test_bf16.py``), and the band of entries
    re-checked in float32 narrows accordingly. The bound is tight: on rows
    whose every coordinate rounds by nearly u it is reached within 0.3%.
    """
    dx2, xh2 = _rounding_sums(x, x_bits)
    dy2, yh2 = _rounding_sums(y, y_bits)
    y2 = (np.sqrt(yh2) + np.sqrt(dy2)) ** 2 * (1.0 + 4 * UNIT_ROUNDOFF64)
    size = xh2.sum() + y2.sum()
    if size == 0.0 or dx2.sum() + dy2.sum() == 0.0:  # every row zero, or every value a bfloat16 value
        return np.zeros(len(x)), np.zeros(len(y))
    rho = float(np.sqrt((dx2.sum() + dy2.sum()) / size))
    return dx2 / rho + rho * xh2, rho * y2 + dy2 / rho


def _bf16_lower(a: Block, b_right: np.ndarray) -> np.ndarray:
    """Lower bounds of the float32 tile from bfloat16 operands.

    Entry (i, j) is the bf16 value of ``|x'|² + |y'|² - 2 x'.y'`` minus the
    bound on its distance from the float32 value: 1.25 (e_x[i] + e_y[j])
    (:func:`bf16_rounding_terms`) and κ(|x'|² + |y'|²), with κ the rest of
    the bf16 bound, the float32 bound, 8 u32 more for the split norms'
    rounding and a relative 2^-20 for how the lowered norms were formed. The
    norms are lowered before the GEMM (in float64, then split into two
    bfloat16 parts), so no pass over the tile subtracts anything.
    """
    dim = a.dim
    kappa = 1.25 * _bf16_sum_scale(dim) + sqdist_error_scale(dim) + 8 * UNIT_ROUNDOFF32
    x_bits, y_bits = _bf16_rows(a, b_right)
    row_terms, col_terms = bf16_rounding_terms(a.centred, x_bits, b_right[:, :dim], y_bits)
    col_terms /= 4.0  # the right rows are -2y: |δ(-2y)|² = 4|δy|², |-2y|² = 4|y|²
    col_norms = b_right[:, dim + 1].astype(np.float64)
    return _bf16_product(a, x_bits, y_bits, (1 - kappa) * a.sqnorm - 1.25 * row_terms, (1 - kappa) * col_norms - 1.25 * col_terms)


def _bf16_tile(a: Block, b_right: np.ndarray) -> np.ndarray:
    """The augmented tile from bfloat16 operands, ``|x'|² + |y'|² - 2 x'.y'`` (float32 sums)."""
    x_bits, y_bits = _bf16_rows(a, b_right)
    return _bf16_product(a, x_bits, y_bits, a.sqnorm, b_right[:, a.dim + 1].astype(np.float64))


def _bf16_rows(a: Block, b_right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both operands' rows rounded to bfloat16 (bit patterns); -2y: scaling by 2 commutes with the rounding."""
    from largeemb.kernels import bf16

    return bf16.to_bits(a.centred), bf16.to_bits(b_right[:, : a.dim])


def _bf16_product(a: Block, x_bits, y_bits, row_norms: np.ndarray, col_norms: np.ndarray) -> np.ndarray:
    """``row_norms[i] + col_norms[j] + x̂_i.(-2ŷ_j)`` by the bf16 GEMM: each norm split in two bfloat16 parts."""
    from largeemb.kernels import bf16

    dim = a.dim
    one = bf16.to_bits(np.ones(1, np.float32))[0]
    left = np.empty((len(x_bits), dim + 4), np.uint16)
    right = np.empty((len(y_bits), dim + 4), np.uint16)
    left[:, :dim], right[:, :dim] = x_bits, y_bits
    left[:, dim], left[:, dim + 1] = bf16.split(row_norms)
    left[:, dim + 2 :] = one
    right[:, dim : dim + 2] = one
    right[:, dim + 2], right[:, dim + 3] = bf16.split(col_norms)
    return a.bf16_gemm(left, right)


def _recomputed(a: Block, b_right: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32 values of single entries (any summation order is within the float32 bound)."""
    out = np.empty(len(rows), np.float32)
    for lo in range(0, len(rows), RECHECK_CHUNK):
        hi = lo + RECHECK_CHUNK
        out[lo:hi] = np.einsum("ij,ij->i", a.left[rows[lo:hi]], b_right[cols[lo:hi]])
    return out


@dataclass
class ScreenCounts:
    """Entries of screened tiles, and how many of them were recomputed in float32."""

    entries: int = 0
    rechecked: int = 0

    def __add__(self, other: "ScreenCounts") -> "ScreenCounts":
        return ScreenCounts(self.entries + other.entries, self.rechecked + other.rechecked)

    def as_dict(self) -> dict:
        share = self.rechecked / self.entries if self.entries else 0.0
        return {"entries": self.entries, "rechecked_float32": self.rechecked, "share": share}


_counts = threading.local()


@contextmanager
def screen_counting():
    """Count the screened entries of the tiles this thread computes inside the block."""
    outer = getattr(_counts, "value", None)
    _counts.value = counts = ScreenCounts()
    try:
        yield counts
    finally:
        _counts.value = outer
        if outer is not None:
            outer.entries += counts.entries
            outer.rechecked += counts.rechecked


def screened_sqdist(a: Block, b_right: np.ndarray, row_cut: np.ndarray, col_cut: np.ndarray) -> np.ndarray:
    """float32 squared distances of the entries that can lie below a cut, +inf for the rest.

    An entry (i, j) can matter when its float32 value (what :func:`sqdist32`
    gives, within its own bound of the exact one) could be below ``row_cut[i]``
    or ``col_cut[j]``; the caller's proofs hold for any float32 value within
    that bound, and every entry shown as +inf has float32 value at or above
    both cuts, where the caller ignores it. Without ``a.bf16_gemm`` this is
    :func:`sqdist32` itself; with one (oneDNN, or :func:`largeemb.kernels.bf16.emulated`)
    the tile comes first from bfloat16 operands: an entry whose bf16 value is
    at least its cut plus both error bounds is settled, the others are
    recomputed in float32 (the whole tile, when more than RECHECK_WHOLE of it).
    """
    if a.bf16_gemm is None:
        return sqdist32(a, b_right)
    # Each entry's own rows count, not a block's largest: one far row must not open
    # every entry. A tiny absolute term covers subnormals flushed to zero (oneDNN
    # runs with FTZ/DAZ).
    lower = _bf16_lower(a, b_right)
    tiny = np.float32((a.dim + 4) * 2.0**-120)
    open_entries = _open_entries(lower, _up32(row_cut) + tiny, _up32(col_cut) + tiny)
    counts = getattr(_counts, "value", None)
    if counts is not None:
        counts.entries += lower.size
    if len(open_entries) > RECHECK_WHOLE * lower.size:
        if counts is not None:
            counts.rechecked += lower.size
        return sqdist32(a, b_right)
    if counts is not None:
        counts.rechecked += len(open_entries)
    rows, cols = np.divmod(open_entries, lower.shape[1])
    values = _recomputed(a, b_right, rows, cols)
    lower.fill(np.inf)
    lower.ravel()[open_entries] = values
    return lower


#: Rows of a tile whose masks are formed at once (two bool masks of 256 x 2048 stay in L2).
MASK_ROWS = 256


def _open_entries(lower: np.ndarray, row_cut: np.ndarray, col_cut: np.ndarray) -> np.ndarray:
    """Flat indices of the entries below their row's or their column's cut, a few rows at a time."""
    cols = lower.shape[1]
    below = np.empty((min(MASK_ROWS, len(lower)), cols), bool)
    below_col = np.empty_like(below)
    found = []
    for lo in range(0, len(lower), MASK_ROWS):
        part = lower[lo : lo + MASK_ROWS]
        mask, mask_col = below[: len(part)], below_col[: len(part)]
        np.less(part, row_cut[lo : lo + MASK_ROWS, None], out=mask)
        np.less(part, col_cut[None, :], out=mask_col)
        mask |= mask_col
        found.append(np.flatnonzero(mask) + lo * cols)
    return np.concatenate(found) if found else np.empty(0, np.int64)


def _up32(values: np.ndarray) -> np.ndarray:
    """float32 values no smaller than the float64 ones (inf stays inf)."""
    return np.nextafter(np.asarray(values, np.float64).astype(np.float32), np.float32(np.inf))
