"""Streamed float64 moments and the Fréchet distance.

Sums are taken per fixed row segment about a fixed shift (the set's first
row), then merged in a fixed binary tree, so the float64 result does not depend
on how the work was chunked or scheduled. A segment's chunk function
(:func:`segment_check`) and its combine (:func:`merge_checks`) sit side by
side, with the content digests that fingerprint a set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh

from largeemb.kernels.distance import largest_safe_value, metric_rows, unit_rows


@dataclass
class Lattice:
    """Every value of a set is an integer multiple of ``2**exp``, and no row's squared norm exceeds ``max_sqnorm``.

    ``exp`` is None when some value is off every coarse enough lattice (more
    than :data:`LATTICE_BITS` significant bits: real embeddings, at once).
    Such sets (one-hot, quantised, integer or small dyadic embeddings) have
    float32 tiles that make no rounding error at all (:meth:`exact`).
    """

    exp: int | None
    max_sqnorm: float

    def merge(self, other: Lattice) -> Lattice:
        exp = None if self.exp is None or other.exp is None else min(self.exp, other.exp)
        return Lattice(exp, max(self.max_sqnorm, other.max_sqnorm))

    def exact(self) -> bool:
        """Whether float32 tiles of these rows, centred on 0, equal the float64 brute force's squares.

        Proof. Let q = 2**exp and M = max_sqnorm, with 4M <= 2**24 q². Every
        value is n q (|n| <= 2**11, so exact in float32, and x - 0 = x). A
        squared norm is a multiple of q² below 2**24 q²: exact in float64 and
        in float32. The augmented GEMM sums the terms -2 x_i y_i, |x|², |y|²
        (each a multiple of q²); any partial sum, in any order, with or
        without FMA, is a multiple of q² of magnitude at most
        Σ|terms| <= |x|² + |y|² + 2Σ|x_i y_i| <= 2(|x|² + |y|²) <= 4M, so it
        is representable and every operation is exact: the tile holds
        D = |x - y|² exactly (so does faiss's ``|x|² + |y|² - 2 x.y`` and any
        float32 sum of (x_i - y_i)²). The brute force's float64 differences,
        squares and sum are exact too, so its distance is fl(√D), and √ is
        correctly rounded, hence monotone; it is also injective on these D:
        two of them differ by at least q², a relative gap >= q²/(4M) >= 2**-24,
        far above float64's 2**-53. So comparing tile values compares
        brute-force distances (ties included), and √(tile value) *is* the
        brute-force distance. The bounds on exp keep q² and 4M normal floats.
        """
        return self.exp is not None and -60 <= self.exp <= 50 and 4.0 * self.max_sqnorm <= 2.0 ** (24 + 2 * self.exp)


#: Values with more significant bits than this are off any lattice :meth:`Lattice.exact`
#: accepts (|n| <= 2**11 there), so a set is rejected at its first such value.
LATTICE_BITS = 12


def lattice_of(rows: np.ndarray) -> Lattice:
    """The coarsest power-of-two lattice holding every value of these float64 rows.

    A value v = m 2**e (frexp, 0.5 <= |m| < 1) has 53-bit integer mantissa
    m 2**53, whose lowest set bit 2**t puts v on the lattice of 2**(e - 53 + t),
    with e - (e - 53 + t) significant bits. The first row is tried alone
    first, so real embeddings cost one row.
    """
    sqnorm = float(np.einsum("ij,ij->i", rows, rows).max(initial=0.0))
    exp = None
    for part in (rows[:1], rows):
        values = part[part != 0]
        if not len(values):
            exp = 1 << 20  # all zeros: on every lattice
            continue
        m, e = np.frexp(values)
        mant = (m * 2.0**53).astype(np.int64)
        low = np.frexp((mant & -mant).astype(np.float64))[1] - 1 + e - 53
        if int((e - low).max()) > LATTICE_BITS:
            return Lattice(None, sqnorm)
        exp = int(low.min())
    return Lattice(exp, sqnorm)


@dataclass
class Moments:
    """Shifted sums of a row set: count, Σ(x - s), Σ(x - s)(x - s)ᵀ, and Σ of metric rows m.

    When the metric sees other rows than the stored ones (unit rows for
    cosine), Σ(m - t)(m - t)ᵀ about a metric shift t is kept too, in the same
    pass, for the plots' PCA of what the metric sees. The companion metrics
    add, when asked: Σ u uᵀ of the unit rows u = x/|x| (0 for a zero row;
    the Vendi score), and per *shell* of nested seeded subsamples
    (:func:`subsample_shells`) the same count and shifted sums (FD∞).
    """

    count: int
    shift: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    metric_sum: np.ndarray
    metric_shift: np.ndarray | None = None
    metric_s2: np.ndarray | None = None
    unit_s2: np.ndarray | None = None
    shell_count: np.ndarray | None = None  # (shells,)
    shell_s1: np.ndarray | None = None  # (shells, dim)
    shell_s2: np.ndarray | None = None  # (shells, dim, dim)
    lattice: Lattice | None = None  # None where unknown (e.g. loaded from a reference)

    @classmethod
    def of_rows(
        cls, rows: np.ndarray, shift: np.ndarray, metric_rows: np.ndarray, metric_shift=None, unit: bool = False,
        shells=None,
    ) -> Moments:
        """``shells``: (shell of each row, shell count), or None.

        The whole set's sums are taken directly even with shells, in the same
        order as without: a set's moments never depend on the companions asked for.
        """
        x = rows - shift
        out = cls(len(rows), shift, x.sum(axis=0), x.T @ x, metric_rows.sum(axis=0))
        if shells is not None:
            which, count = shells
            out.shell_count = np.bincount(which, minlength=count).astype(np.int64)
            out.shell_s1, out.shell_s2 = np.zeros((count, x.shape[1])), np.zeros((count, x.shape[1], x.shape[1]))
            for s in np.flatnonzero(out.shell_count):
                part = x[which == s]
                out.shell_s1[s], out.shell_s2[s] = part.sum(axis=0), part.T @ part
        if metric_shift is not None:
            m = metric_rows - metric_shift
            out.metric_shift, out.metric_s2 = metric_shift, m.T @ m
        if unit and metric_shift is None:  # under cosine the metric rows are the unit rows: derived, see unit_moment
            u = unit_rows(rows)
            out.unit_s2 = u.T @ u
        return out

    def merge(self, other: Moments) -> Moments:
        def add(a, b):
            return None if a is None else a + b

        return Moments(
            self.count + other.count,
            self.shift,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.metric_sum + other.metric_sum,
            self.metric_shift,
            add(self.metric_s2, other.metric_s2),
            add(self.unit_s2, other.unit_s2),
            add(self.shell_count, other.shell_count),
            add(self.shell_s1, other.shell_s1),
            add(self.shell_s2, other.shell_s2),
            None if self.lattice is None or other.lattice is None else self.lattice.merge(other.lattice),
        )

    def of_metric_rows(self) -> Moments:
        """The moments of the metric rows (None when they were not taken)."""
        if self.metric_s2 is None:
            return None
        s1 = self.metric_sum - self.count * self.metric_shift
        return Moments(self.count, self.metric_shift, s1, self.metric_s2, self.metric_sum)

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.s1 / self.count

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (n - 1 in the denominator, like ``np.cov``)."""
        return _cov(self.count, self.s1, self.s2)

    def total_variance(self) -> float:
        """tr(cov), without forming the dim × dim covariance."""
        return float((np.trace(self.s2) - self.s1 @ self.s1 / self.count) / (self.count - 1))

    def variance_along(self, axis: np.ndarray) -> float:
        """aᵀ cov a for a vector a, without forming the dim × dim covariance."""
        along = float(self.s1 @ axis)
        return float((axis @ self.s2 @ axis - along * along / self.count) / (self.count - 1))

    def unit_moment(self) -> np.ndarray | None:
        """Σ u uᵀ of the unit rows (Vendi): taken in the pass, or, under cosine, from the
        metric rows' shifted sums (Σ uuᵀ = Σ(u-t)(u-t)ᵀ + t sᵀ + s tᵀ - n t tᵀ), not a second product."""
        if self.unit_s2 is not None or self.metric_s2 is None:
            return self.unit_s2
        t, s = self.metric_shift, self.metric_sum
        return self.metric_s2 + np.outer(t, s) + np.outer(s, t) - self.count * np.outer(t, t)

    @property
    def metric_mean(self) -> np.ndarray:
        return self.metric_sum / self.count

    def nested(self):
        """(rows, mean, covariance) of each nested subsample: shells 0..j for j = 0, 1, …"""
        count, s1, s2 = np.cumsum(self.shell_count), np.cumsum(self.shell_s1, axis=0), np.cumsum(self.shell_s2, axis=0)
        return [(int(c), self.shift + a / c, _cov(c, a, b)) for c, a, b in zip(count, s1, s2)]


def _cov(count, s1, s2) -> np.ndarray:
    centred = s1 / count
    cov = (s2 - count * np.outer(centred, centred)) / (count - 1)
    return (cov + cov.T) / 2


def leading_axes(cov: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n leading eigenvalues and eigenvectors (columns) of a covariance, largest first.

    Only those n are computed (LAPACK ``dsyevx``), not the whole spectrum.
    """
    dim = cov.shape[0]
    n = min(n, dim)
    values, vectors = eigh(cov, subset_by_index=(dim - n, dim - 1), driver="evx")
    return values[::-1], vectors[:, ::-1]


def covariance_factor(cov: np.ndarray) -> np.ndarray:
    """F with F Fᵀ = Σ: the Cholesky factor, or, where Σ is singular, its symmetric square root.

    Cholesky costs a small fraction of a full eigendecomposition (at dim 512,
    milliseconds against most of a second), and FD∞ reuses it for 15 fake subsamples.
    """
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # rank-deficient (n <= dim, duplicates): the symmetric root serves
        vals, vecs = np.linalg.eigh(cov)
        return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mean_a, cov_a, mean_b, cov_b, factor_a=None) -> float:
    """|μa - μb|² + tr(Σa + Σb - 2 (Σa Σb)^½), via a symmetric eigenproblem.

    With Σa = F Fᵀ, Σa Σb is similar to Fᵀ Σb F (F⁻¹ Σa Σb F), which is
    symmetric positive semi-definite: tr((Σa Σb)^½) is the sum of square
    roots of its eigenvalues. Only eigenvalues are computed, no complex
    arithmetic and no general matrix square root. ``factor_a``: F, when it is
    known (:func:`covariance_factor`).
    """
    if np.array_equal(mean_a, mean_b) and np.array_equal(cov_a, cov_b):
        return 0.0  # exactly, not a rounding-sized remainder of tr(Σ) - tr(Σ)
    factor = covariance_factor(cov_a) if factor_a is None else factor_a
    trace_sqrt = _trace_sqrt(factor.T @ cov_b @ factor)
    diff = mean_a - mean_b
    # Identical sets give a rounding-sized negative; FD is a squared distance, so
    # clip at 0 as pytorch-fid and clean-fid do (no "-0.0000" for equal inputs).
    return max(0.0, float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt))


def frechet_distance_few_rows(mean_a, cov_a, rows_b: np.ndarray) -> float:
    """As :func:`frechet_distance`, where set b has fewer rows than dimensions.

    With A the centred rows of b over √(n-1), Σb = AᵀA, and the non-zero
    eigenvalues of Σa Σb are those of A Σa Aᵀ (n × n): tr((Σa Σb)^½) costs
    O(n·dim² + n³) instead of O(dim³) (dim 10,000 with 300 rows: 1,286 s before).
    """
    rows_b = np.asarray(rows_b, dtype=np.float64)
    mean_b = rows_b.mean(axis=0)
    factor = (rows_b - mean_b) / np.sqrt(len(rows_b) - 1)
    trace_sqrt = _trace_sqrt(factor @ cov_a @ factor.T)
    diff = mean_a - mean_b
    return max(0.0, float(diff @ diff + np.trace(cov_a) + np.einsum("ij,ij->", factor, factor) - 2 * trace_sqrt))


def _trace_sqrt(inner: np.ndarray) -> float:
    """Σ √λ over the eigenvalues of a symmetric PSD matrix (rounding-sized negatives as 0): tr(inner^½)."""
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


# -- one segment of the moments pass: chunk, combine, fingerprint --------------


@dataclass
class SegmentCheck:
    """Per segment: moments plus the first row that cannot be used, if any."""

    moments: Moments
    first_nonfinite: int  # -1 when none
    first_zero: int  # -1 when none (matters for the cosine metric)
    digests: list[bytes]  # content hash of each segment, in row order
    first_too_large: int = -1  # -1 when none


def segment_digest(raw: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(raw).tobytes(), digest_size=16).digest()


def fingerprint_of(rows: int, dim: int, dtype: str, digests: list[bytes]) -> str:
    """Hash of shape, dtype and every stored byte (from per-segment digests, in row order)."""
    whole = hashlib.blake2b(f"{rows}x{dim}:{dtype}".encode(), digest_size=16)
    for digest in digests:
        whole.update(digest)
    return whole.hexdigest()


def segment_check(
    raw: np.ndarray, start: int, shift: np.ndarray, metric_shift, metric: str, unit: bool = False, shells=None
) -> SegmentCheck:
    """Moments of one segment of stored rows (global rows from ``start``), and what is wrong with it.

    ``unit`` adds the second moment of unit rows; ``shells`` (the shell of
    each row of the set, and the shell count) the moments of each shell.
    """
    # Rows too large for the sums are found below and refused with their row
    # number (io.checks); NumPy's overflow warnings would only add noise to that.
    with np.errstate(over="ignore", invalid="ignore"):
        return _segment_check(raw, start, shift, metric_shift, metric, unit, shells)


def _segment_check(raw, start, shift, metric_shift, metric: str, unit: bool, shells) -> SegmentCheck:
    rows = np.asarray(raw, dtype=np.float64)
    finite = np.isfinite(rows)
    bad = np.flatnonzero(~finite.all(axis=1))
    huge = np.flatnonzero((finite & (np.abs(rows) > largest_safe_value(rows.shape[1], metric))).any(axis=1))
    zero = np.flatnonzero(~rows.any(axis=1))
    if len(bad):
        rows = np.where(np.isfinite(rows), rows, 0.0)
    if metric == "cosine" and len(zero):
        rows = rows.copy()
        rows[zero] = 1.0
    moments = Moments.of_rows(
        rows, shift, metric_rows(rows, metric), metric_shift, unit,
        None if shells is None else (shells[0][start : start + len(rows)], shells[1]),
    )
    moments.lattice = lattice_of(rows)
    return SegmentCheck(
        moments,
        int(start + bad[0]) if len(bad) else -1,
        int(start + zero[0]) if len(zero) else -1,
        [segment_digest(raw)],
        int(start + huge[0]) if len(huge) else -1,
    )


def merge_checks(a: SegmentCheck, b: SegmentCheck) -> SegmentCheck:
    """Combine two adjacent segments (a before b): sums add, first bad rows are the earliest."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflowed sums: refused by row later
        return _merge_checks(a, b)


def _merge_checks(a: SegmentCheck, b: SegmentCheck) -> SegmentCheck:

    def first(x, y):
        return min(v for v in (x, y) if v >= 0) if max(x, y) >= 0 else -1

    return SegmentCheck(
        a.moments.merge(b.moments),
        first(a.first_nonfinite, b.first_nonfinite),
        first(a.first_zero, b.first_zero),
        a.digests + b.digests,
        first(a.first_too_large, b.first_too_large),
    )


def shifts(first_row: np.ndarray, metric: str):
    """The shifts sums are taken about: the set's first row, and its metric row (None for euclidean)."""
    shift = np.asarray(first_row, dtype=np.float64)
    if not np.isfinite(shift).all():
        shift = np.zeros_like(shift)
    if metric == "euclidean":  # the metric sees the stored rows: their moments serve
        return shift, None
    with np.errstate(invalid="ignore", divide="ignore"):
        metric_shift = metric_rows(shift[None], metric)[0]
    if not np.isfinite(metric_shift).all():
        metric_shift = np.zeros_like(shift)
    return shift, metric_shift
