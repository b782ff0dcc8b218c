"""The dim × dim steps at a high dim: through a set's rows where it has fewer
rows than dims (those that cannot avoid O(dim³) are announced with a time
estimate: :func:`largeemb.run.progress.cubic_seconds`).

A set of n < dim rows has a covariance (and a second moment of unit rows) of
rank below n, whose non-zero eigenvalues are those of the n × n Gram matrix
of its rows: the plots' PCA axes and the Vendi score cost O(n²·dim + n³)
from the rows instead of O(dim³) from the dim × dim matrix (dim 10,000 with
300 rows: seconds, not minutes). FD has its own route
(:func:`largeemb.kernels.moments.frechet_distance_few_rows`).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh

#: A set with fewer rows than dims is read whole (float64) for its dim × dim steps up to this size.
FEW_ROWS_BYTES = 1 << 30


def few_rows(rows: int, dim: int) -> bool:
    """Whether a set's dim × dim steps go through its rows (fewer rows than dims, small enough to hold)."""
    return rows < dim and rows * dim * 8 <= FEW_ROWS_BYTES


def leading_axes_of_rows(rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """As :func:`largeemb.kernels.moments.leading_axes` of the rows' covariance, from the n × n Gram matrix.

    With X the centred rows, Σ = XᵀX/(r-1) and G = XXᵀ/(r-1) share their
    non-zero eigenvalues, and G v = λ v gives Σ's unit eigenvector Xᵀv/√(λ(r-1)).
    Returns (eigenvalues, eigenvectors as columns, tr Σ), largest first; only
    eigenvalues above rounding (at most r - 1 of them) are returned, since the
    axes of a zero eigenvalue are arbitrary.
    """
    x = np.asarray(rows, np.float64)
    x = x - x.mean(axis=0)
    count = len(x)
    gram = x @ x.T / (count - 1)
    values, vectors = eigh((gram + gram.T) / 2, subset_by_index=(max(count - n, 0), count - 1), driver="evx")
    values, vectors = values[::-1], vectors[:, ::-1]
    kept = values > max(values[0], 0.0) * max(x.shape) * np.finfo(np.float64).eps
    values, vectors = values[kept], vectors[:, kept]
    axes = x.T @ vectors / np.sqrt(values * (count - 1))
    return values, axes, float(np.trace(gram))


def frechet_distance_of_rows(rows_a: np.ndarray, rows_b: np.ndarray) -> float:
    """FD of two sets that both have fewer rows than dims, from their rows alone: O(n·m·dim).

    With A, B the centred rows over √(n-1), √(m-1), Σa = AᵀA and Σb = BᵀB, and
    the non-zero eigenvalues of Σa Σb are those of (A Bᵀ)(A Bᵀ)ᵀ: tr((Σa Σb)^½)
    is the sum of the singular values of the n × m matrix A Bᵀ.
    """
    a, b = (np.asarray(rows, np.float64) for rows in (rows_a, rows_b))
    if a.shape == b.shape and np.array_equal(a, b):
        return 0.0  # exactly, as frechet_distance gives for equal moments
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    fa, fb = (a - mean_a) / np.sqrt(len(a) - 1), (b - mean_b) / np.sqrt(len(b) - 1)
    trace_sqrt = np.linalg.svd(fa @ fb.T, compute_uv=False).sum()
    diff = mean_a - mean_b
    return max(0.0, float(diff @ diff + np.einsum("ij,ij->", fa, fa) + np.einsum("ij,ij->", fb, fb) - 2 * trace_sqrt))
