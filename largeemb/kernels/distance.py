"""Distances between row blocks: fast float32 tiles with a proven error bound,
and exact float64 distances for the few pairs the bound cannot decide.

The float32 tile comes from one GEMM on augmented rows,
``[x, |x|^2, 1] . [-2y, 1, |y|^2] = |x - y|^2``, after centring both sets on
the real mean so that the cancellation in that formula stays small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels.roundoff import UNIT_ROUNDOFF32

#: Pairs handled per chunk in exact float64 re-checks (bounds their memory).
EXACT_CHUNK = 4096
#: Pairs whose float64 difference is taken at once from rows in memory: small enough to stay in cache
#: (twice as fast as EXACT_CHUNK at dim 512).
CACHED_PAIRS = 512


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
        """Rows as the metric sees them, in a dtype that holds the brute force's float64 values exactly
        (:func:`exact_rows`: float32 data as read, not copied to float64 first)."""
        return exact_rows(self.raw[local_rows], self.metric)

    def panel(self, lo: int, hi: int) -> Block:
        """Rows lo:hi as a Block of their own (views, no copies)."""
        raw = None if self.raw is None else self.raw[lo:hi]
        return Block(self.start + lo, raw, self.metric, self.left[lo:hi], self.sqnorm[lo:hi])

    def panels(self, panel_rows: int) -> list[tuple[int, Block]]:
        """(offset, panel) pairs covering the block: the unit of one GEMM."""
        return [(lo, self.panel(lo, min(lo + panel_rows, self.rows))) for lo in range(0, self.rows, panel_rows)]


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays 0), in float64: what the Vendi score's cosine kernel sees."""
    rows = np.asarray(rows, np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def metric_rows(raw: np.ndarray, metric: str) -> np.ndarray:
    """Rows as float64 in the space the metric measures (unit rows for cosine)."""
    rows = np.asarray(raw, dtype=np.float64)
    if metric == "cosine":
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def exact_rows(raw: np.ndarray, metric: str) -> np.ndarray:
    """The metric's rows in a dtype that holds them exactly: float32 data as read under the euclidean
    metric, else :func:`metric_rows`. float32 to float64 is exact, so differences taken in float64
    (``np.subtract(..., dtype=np.float64)``) are the float64 rows' bit for bit, from half the bytes."""
    if raw.dtype == np.float32 and metric == "euclidean":
        return np.asarray(raw)
    return metric_rows(raw, metric)


def prepare_block(raw: np.ndarray, start: int, centre: np.ndarray, metric: str) -> Block:
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
    return Block(start, raw, metric, left, sqnorm)


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

    ``take_a``/``take_b`` map row indices to metric rows (e.g. ``Block.exact``), float64 or
    :func:`exact_rows`' float32: the difference is taken in float64 either way, bit for bit the same.
    """
    out = np.empty(len(ia), dtype=np.float64)
    for lo in range(0, len(ia), CACHED_PAIRS):
        hi = lo + CACHED_PAIRS
        # exact_pair_dist's operations (and sum order), squared in place: one temporary per chunk, not two.
        diff = np.subtract(take_a(ia[lo:hi]), take_b(ib[lo:hi]), dtype=np.float64)
        np.multiply(diff, diff, out=diff)
        np.sqrt(diff.sum(axis=1), out=out[lo : lo + len(diff)])
    return out


#: Odd 64-bit multipliers of a row hash (fixed: labels never depend on a seed).
HASH_MULTIPLIERS = (
    np.random.default_rng(0x1A76E).integers(0, 2**63, 65536, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
)


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
