"""How a tile's distances are computed: the tile strategies. :data:`FLOAT32`
(one float32 GEMM), or :class:`ScreenedTiles`: a tile first from bfloat16
operands, float32 only near a cut. The pass decides which a task gets
(:meth:`largeemb.passes.context.PassContext.strategy`); the kernels only call
``strategy.tile``.

A bf16 GEMM (oneDNN, or :func:`largeemb.kernels.bf16.emulated`) gives every
entry of a tile within a proven bound of its float32 value. Entries whose
bf16 value lies above both their row's and their column's cut by more than
that bound are settled (+inf: the callers ignore whatever lies at or above
their cuts); the few others are recomputed in float32, so callers see the
float32 values their proofs are about, and results equal the float32 path's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from largeemb.kernels import bf16
from largeemb.kernels.bf16 import Rounded
from largeemb.kernels.distance import Block, sqdist32, sqdist_error_scale
from largeemb.kernels.roundoff import UNIT_ROUNDOFF32, UNIT_ROUNDOFF_BF16, up32
from largeemb.kernels.tiles import taken_rows

#: Where a bf16 tile leaves more than this share of its entries to recompute,
#: the tile is recomputed whole by the float32 GEMM (clustered data, loose cuts).
RECHECK_WHOLE = 0.05
#: Entries recomputed per gathered float32 chunk (small chunks stay in cache:
#: 4x faster here than 8192).
RECHECK_CHUNK = 1024
#: Rows of a tile whose masks are formed at once (two bool masks of 256 x 2048 stay in L2).
MASK_ROWS = 256
#: Tiles with fewer entries stay float32: screening's fixed costs (rounding
#: terms, gathers, masks) outweigh the faster GEMM there (a 768 x 768 x 512
#: tile took 1.6x the float32 time, 1024 x 1024 about the same, 2048 x 2048
#: 0.85x). Pruned tiles of clustered data are mostly smaller than this.
MIN_SCREEN_ENTRIES = 1 << 21
#: A tile's first rows, screened first: where more than RECHECK_WHOLE of their
#: entries are open (cuts within the bound: tight clusters far from the centre),
#: the rest of the tile goes straight to float32, having cost an eighth of a bf16 GEMM.
PROBE_ROWS = 256


def bf16_error_scale(dim: int) -> float:
    """κ_bf with ``|d2_bf16 - |x' - y'|^2| <= κ_bf (|x'|^2 + |y'|^2)`` for the float32 centred rows x', y'.

    Terms, with u the bfloat16 unit roundoff: rounding both operands of
    x'.y' to bfloat16 changes 2 x'.y' by at most 2(2u + u²) Σ|x'_i||y'_i|
    <= (2u + u²)(|x'|² + |y'|²); the rest is :func:`_sum_scale`. A quarter
    more for slack (the bound is checked on adversarial data in
    ``tests/test_bf16.py``). Screening uses the tighter per-row form of the
    rounding term (:func:`rounding_terms`).
    """
    u = UNIT_ROUNDOFF_BF16
    return 1.25 * ((2 * u + u * u) + _sum_scale(dim))


def _sum_scale(dim: int) -> float:
    """Relative error of a bf16 tile beyond the operands' rounding: each norm is split
    into two bfloat16 parts (2u² relative); products of bfloat16 values are exact in
    float32 and their length-(dim+4) float32 sum adds γ_{dim+4} Σ|terms|, Σ|terms| <=
    2(1 + u)²(|x'|² + |y'|²); the norms fed in were rounded to float32 (u32 each)."""
    u, u32 = UNIT_ROUNDOFF_BF16, UNIT_ROUNDOFF32
    n = dim + 4
    gamma = n * u32 / (1.0 - n * u32)
    return 2 * u * u + 2 * gamma * (1 + u) ** 2 + 2 * u32


def rounding_terms(x: Rounded, y: Rounded) -> tuple[np.ndarray, np.ndarray]:
    """Per-row terms e_x, e_y with ``|2 x.y - 2 x̂.ŷ| <= e_x[i] + e_y[j]`` for every pair of rows.

    Proof: with δx = x - x̂ and δy = y - ŷ, x.y - x̂.ŷ = δx.y + x̂.δy, so by
    Cauchy-Schwarz |2 x.y - 2 x̂.ŷ| <= 2|δx||y| + 2|x̂||δy|, and 2ab <= a²/ρ + ρb²
    for any ρ > 0: e_x = |δx|²/ρ + ρ|x̂|², e_y = ρ|y|² + |δy|²/ρ (upper bounds
    of each, :class:`~largeemb.kernels.bf16.Rounded`). ρ = the rows' rms
    |δ|/|·| makes each term about 2ρ|x|² where the worst case (every
    coordinate off by u, :func:`bf16_error_scale`) charges 2u|x|²: on Gaussian
    data the terms are 0.43 of the worst case's (``tests/test_bf16.py``), and
    the band of entries re-checked in float32 narrows accordingly. The bound
    is tight: on rows whose every coordinate rounds by nearly u it is reached
    within 0.3%.
    """
    size = x.hat_sq.sum() + y.sq.sum()
    spread = x.delta_sq.sum() + y.delta_sq.sum()
    if size == 0.0 or spread == 0.0:  # every row zero, or every value a bfloat16 value
        return np.zeros(len(x.bits)), np.zeros(len(y.bits))
    rho = float(np.sqrt(spread / size))
    return x.delta_sq / rho + rho * x.hat_sq, rho * y.sq + y.delta_sq / rho


def _half_product(gemm, x: Rounded, y: Rounded, row_norms: np.ndarray, col_norms: np.ndarray, out=None) -> np.ndarray:
    """``x̂_i.ŷ_j - (row_norms[i] + col_norms[j]) / 2`` by the bf16 GEMM, each half norm split in two bfloat16 parts.

    That is -1/2 of ``row_norms + col_norms - 2 x̂.ŷ`` (exactly: scaling by -1/2
    commutes with every rounding), so the GEMM needs x̂ and ŷ as they are.
    """
    dim = x.bits.shape[1]
    one = bf16.to_bits(np.ones(1, np.float32))[0]
    left = np.empty((len(x.bits), dim + 4), np.uint16)
    right = np.empty((len(y.bits), dim + 4), np.uint16)
    left[:, :dim], right[:, :dim] = x.bits, y.bits
    left[:, dim], left[:, dim + 1] = bf16.split(-0.5 * row_norms)
    left[:, dim + 2 :] = one
    right[:, dim : dim + 2] = one
    right[:, dim + 2], right[:, dim + 3] = bf16.split(-0.5 * col_norms)
    return gemm(left, right) if out is None else gemm(left, right, out)


def _right_rounded(b_right: np.ndarray) -> Rounded:
    """The right operand's rows y (given as -2y, an exact scaling) rounded to bfloat16."""
    return Rounded.of(b_right[:, : b_right.shape[1] - 2] * np.float32(-0.5))


def bf16_tile(gemm, a: Block, b_right: np.ndarray) -> np.ndarray:
    """The augmented tile from bfloat16 operands, ``|x'|² + |y'|² - 2 x'.y'`` (float32 sums)."""
    return -2 * _half_product(
        gemm, Rounded.of(a.centred), _right_rounded(b_right), a.sqnorm, b_right[:, a.dim + 1].astype(np.float64)
    )


def _lower_half(gemm, a: Block, x: Rounded, b_right: np.ndarray, y: Rounded, out=None) -> np.ndarray:
    """-1/2 of lower bounds of the float32 tile, from bfloat16 operands (``x``: a's rows rounded).

    Lower bound (i, j) is the bf16 value of ``|x'|² + |y'|² - 2 x'.y'`` minus
    the bound on its distance from the float32 value: 1.25 (e_x[i] + e_y[j])
    (:func:`rounding_terms`) and κ(|x'|² + |y'|²), with κ the rest of the bf16
    bound, the float32 bound, 8 u32 more for the split norms' rounding and a
    relative 2^-20 for how the lowered norms were formed. The norms are lowered
    before the GEMM (in float64, then split into two bfloat16 parts), so no
    pass over the tile subtracts anything.
    """
    dim = a.dim
    kappa = 1.25 * _sum_scale(dim) + sqdist_error_scale(dim) + 8 * UNIT_ROUNDOFF32
    e_x, e_y = rounding_terms(x, y)
    col_norms = b_right[:, dim + 1].astype(np.float64)
    return _half_product(gemm, x, y, (1 - kappa) * a.sqnorm - 1.25 * e_x, (1 - kappa) * col_norms - 1.25 * e_y, out)


@dataclass
class ScreenCounts:
    """Entries of screened tiles, and how many of them were recomputed in float32."""

    entries: int = 0
    rechecked: int = 0

    def as_dict(self) -> dict:
        share = self.rechecked / self.entries if self.entries else 0.0
        return {"entries": self.entries, "rechecked_float32": self.rechecked, "share": share}


class Float32Tiles:
    """Every tile from the float32 GEMM (:func:`~largeemb.kernels.distance.sqdist32`): every entry is finite."""

    def tile(
        self, a: Block, b_right: np.ndarray, row_cut, col_cut, a_rows=None, b_rows=None
    ) -> tuple[np.ndarray, None]:
        return sqdist32(a, b_right), None


#: The float32 strategy (it holds nothing: one serves every task).
FLOAT32 = Float32Tiles()


@dataclass(eq=False)
class ScreenedTiles:
    """Tiles screened with a bf16 GEMM (:meth:`tile`). One per task: it holds the GEMM, each
    block's rows rounded to bfloat16 once (``round_blocks``; else each tile rounds its own
    rows: pruned tiles, mostly under MIN_SCREEN_ENTRIES), the float32 re-checks' gather
    buffers, and the counts of what it screened.
    """

    gemm: Callable
    round_blocks: bool = True
    counts: ScreenCounts = field(default_factory=ScreenCounts)
    _rounded: dict = field(default_factory=dict, repr=False)  # id(block) -> (block, its rows rounded)
    _buffers: tuple | None = field(default=None, repr=False)

    def _rows(self, operand, origin, lo: int, hi: int, of_operand) -> Rounded:
        """Rows lo:hi of a tile operand rounded to bfloat16: from its block's, rounded once
        (``origin``: (block, the operand's block-local rows)), or from the operand itself."""
        if origin is None or not self.round_blocks:
            return of_operand(operand[lo:hi])
        block, rows = origin
        # A panel is a view of its block's arrays (a within-block part, too): round the whole block's rows
        # once and take the panel's, rather than rounding each part's rows again.
        left = block.left
        root = left.base if isinstance(left.base, np.ndarray) and left.base.ndim == 2 else left
        if root.shape[1] != left.shape[1] or root.strides != left.strides:
            root = left
        offset = (left.__array_interface__["data"][0] - root.__array_interface__["data"][0]) // root.strides[0]
        held = self._rounded.get(id(root))
        if held is None:  # the array is kept with its rows, so that its id is not reused meanwhile
            held = self._rounded[id(root)] = (root, Rounded.of(root[:, : block.dim]))
        return taken_rows(held[1], rows[lo:hi] + offset)

    def tile(
        self, a: Block, b_right: np.ndarray, row_cut: np.ndarray, col_cut: np.ndarray, a_rows=None, b_rows=None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """float32 squared distances of the entries that can lie below a cut, +inf for the rest;
        and the flat indices of the finite entries, ascending (None: every entry is finite).

        An entry (i, j) can matter when its float32 value (what :func:`sqdist32`
        gives, within its own bound of the exact one) could be below ``row_cut[i]``
        or ``col_cut[j]``; the caller's proofs hold for any float32 value within
        that bound, and every entry shown as +inf has float32 value at or above
        both cuts, where the caller ignores it. The tile comes first from bfloat16
        operands: an entry whose bf16 value is at least its cut plus both error
        bounds is settled, the others are recomputed in float32 (the whole tile,
        when more than RECHECK_WHOLE of it; tiles under MIN_SCREEN_ENTRIES are
        float32 from the start). ``a_rows``/``b_rows``: (block, block-local rows)
        the operands were taken from, so that each block's rows are rounded once.
        Callers select from the open entries' list instead of scanning the whole
        tile again (:func:`below`).
        """
        if a.rows * len(b_right) < MIN_SCREEN_ENTRIES:
            return sqdist32(a, b_right), None
        # Each entry's own rows count, not a block's largest: one far row must not open
        # every entry. A tiny absolute term covers subnormals flushed to zero (oneDNN
        # runs with FTZ/DAZ). lower < cut is half > -cut/2 (exact scalings).
        y = self._rows(b_right, b_rows, 0, len(b_right), _right_rounded)
        tiny = np.float32((a.dim + 4) * 2.0**-120)
        row_floor = (up32(row_cut) + tiny) * np.float32(-0.5)
        col_floor = (up32(col_cut) + tiny) * np.float32(-0.5)
        half = np.empty((a.rows, len(b_right)), np.float32)
        probe = min(PROBE_ROWS, a.rows)
        x = self._rows(a.centred, a_rows, 0, probe, Rounded.of)
        _lower_half(self.gemm, a.panel(0, probe), x, b_right, y, half[:probe])
        open_entries = _open_entries(half[:probe], row_floor[:probe], col_floor)
        if probe < a.rows and len(open_entries) <= RECHECK_WHOLE * probe * half.shape[1]:
            x = self._rows(a.centred, a_rows, probe, a.rows, Rounded.of)
            _lower_half(self.gemm, a.panel(probe, a.rows), x, b_right, y, half[probe:])
            rest = _open_entries(half[probe:], row_floor[probe:], col_floor)
            open_entries = np.concatenate([open_entries, rest + probe * half.shape[1]])
        elif probe < a.rows:  # the probe says: mostly open
            open_entries = None
        self.counts.entries += half.size
        if open_entries is None or len(open_entries) > RECHECK_WHOLE * half.size:
            self.counts.rechecked += half.size
            return sqdist32(a, b_right), None
        self.counts.rechecked += len(open_entries)
        rows, cols = np.divmod(open_entries, half.shape[1])
        values = self._recomputed(a, b_right, rows, cols)
        half.fill(np.inf)
        half.ravel()[open_entries] = values
        return half, open_entries

    def _recomputed(self, a: Block, b_right: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float32 values of single entries (any summation order is within the float32 bound).

        The gathered rows go into two buffers kept for the task: fresh 2 MB arrays
        per chunk cost page faults that made small tiles' re-checks 9x slower
        (``mode="clip"``: unbuffered; the indices come from the tile, always in range).
        """
        width = a.left.shape[1]
        if self._buffers is None or self._buffers[0].shape[1] != width:
            self._buffers = (np.empty((RECHECK_CHUNK, width), np.float32), np.empty((RECHECK_CHUNK, width), np.float32))
        out = np.empty(len(rows), np.float32)
        for lo in range(0, len(rows), RECHECK_CHUNK):
            hi = min(lo + RECHECK_CHUNK, len(rows))
            left, right = self._buffers[0][: hi - lo], self._buffers[1][: hi - lo]
            np.take(a.left, rows[lo:hi], axis=0, out=left, mode="clip")
            np.take(b_right, cols[lo:hi], axis=0, out=right, mode="clip")
            out[lo:hi] = np.einsum("ij,ij->i", left, right)
        return out


#: How a pass's tiles are computed: :data:`FLOAT32`, or a :class:`ScreenedTiles` of its own task.
TileStrategy = Float32Tiles | ScreenedTiles


def below(dist: np.ndarray, open_entries: np.ndarray | None, cut: np.ndarray, by_columns: bool) -> np.ndarray:
    """Flat indices, ascending, of the entries of ``dist`` below their row's cut (their column's, ``by_columns``).

    ``open_entries``: the finite entries of a screened tile (:meth:`ScreenedTiles.tile`):
    only those are compared; None: the whole tile.
    """
    if open_entries is None:
        return np.flatnonzero(dist < (cut[None, :] if by_columns else cut[:, None]))
    cols = dist.shape[1]
    owner = open_entries % cols if by_columns else open_entries // cols
    return open_entries[dist.ravel()[open_entries] < cut[owner]]


def _open_entries(half: np.ndarray, row_floor: np.ndarray, col_floor: np.ndarray) -> np.ndarray:
    """Flat indices of the entries above their row's or their column's floor, a few rows at a time."""
    cols = half.shape[1]
    above = np.empty((min(MASK_ROWS, len(half)), cols), bool)
    above_col = np.empty_like(above)
    found = []
    for lo in range(0, len(half), MASK_ROWS):
        part = half[lo : lo + MASK_ROWS]
        mask, mask_col = above[: len(part)], above_col[: len(part)]
        np.greater(part, row_floor[lo : lo + MASK_ROWS, None], out=mask)
        np.greater(part, col_floor[None, :], out=mask_col)
        mask |= mask_col
        found.append(np.flatnonzero(mask) + lo * cols)
    return np.concatenate(found) if found else np.empty(0, np.int64)

