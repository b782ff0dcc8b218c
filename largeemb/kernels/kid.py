"""KID's pair work: per-row sums of the cubic polynomial kernel over a tile, in
float64; and one seeded subset's unbiased MMD² (torch-fidelity's estimator).

k(x, y) = (x·y/d + 1)³ is not a function of the distance, so no radius or
bound prunes it: every pair is visited once (the symmetric half for a set
against itself). The tile is a float64 GEMM of the stored rows, so the sums
equal a float64 brute force up to the order of additions.
"""

from __future__ import annotations

import numpy as np

#: torch-fidelity's default seed of the KID subset draws.
KID_SUBSET_SEED = 2020


def _cubic(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """(a·b/d + 1)³ in float64, in place (the GEMM's output is the only tile-sized array)."""
    k = a @ b.T
    k *= 1.0 / dim
    k += 1.0
    cube = k * k
    cube *= k
    return cube


def tile_sums(a: np.ndarray, b: np.ndarray, panel_rows: int, same: bool):
    """Row sums of k over a × b (float64 rows), for a's rows and for b's; ``same``: a is b, i ≠ i' only."""
    dim = a.shape[1]
    sums_a, sums_b = np.zeros(len(a)), np.zeros(len(b))
    for lo in range(0, len(a), panel_rows):
        for bo in range(lo if same else 0, len(b), panel_rows):
            k = _cubic(a[lo : lo + panel_rows], b[bo : bo + panel_rows], dim)
            if same and bo == lo:  # a diagonal panel: each pair once, never a row with itself
                k = np.triu(k, 1)
            sums_a[lo : lo + len(k)] += k.sum(axis=1)
            sums_b[bo : bo + k.shape[1]] += k.sum(axis=0)
    return sums_a, sums_b


# -- low dimension: the third-moment tensor instead of every pair ---------------
#
# With a = x·y/d, (a + 1)³ = a³ + 3a² + 3a + 1, and over the rows y of a set:
#   Σ_y (x·y)³ = ⟨x⊗x⊗x, T⟩ with T = Σ_y y⊗y⊗y  (d³ numbers),
#   Σ_y (x·y)² = xᵀ S x     with S = Σ_y y yᵀ,
#   Σ_y  x·y   = x·s        with s = Σ_y y.
# So each row's kernel sum over a whole set costs O(d³), not O(rows · d): far
# less than every pair when d² is below the row count (dim 128 at 200,000
# rows). All in float64.

#: Rows per batch of outer products x⊗x (batch × d² float64 values at once).
TENSOR_BATCH = 256


def _outer_rows(rows: np.ndarray) -> np.ndarray:
    """x⊗x of each row, flattened: (rows, d²)."""
    return (rows[:, :, None] * rows[:, None, :]).reshape(len(rows), -1)


def power_sums(rows: np.ndarray):
    """(T as a (d², d) matrix, S, s, count) of a block of float64 rows; they add across blocks."""
    dim = rows.shape[1]
    third = np.zeros((dim * dim, dim))
    for lo in range(0, len(rows), TENSOR_BATCH):
        part = rows[lo : lo + TENSOR_BATCH]
        third += _outer_rows(part).T @ part
    return third, rows.T @ rows, rows.sum(axis=0), len(rows)


def added_power_sums(a, b):
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


def kernel_sums(rows: np.ndarray, own, other) -> tuple[np.ndarray, np.ndarray]:
    """Σ (x·y/d + 1)³ for each row x over the rows y of its own set (x itself left out), and of the other set.

    ``own``/``other``: :func:`power_sums` of the two sets. One GEMM per batch
    serves both (the two tensors side by side).
    """
    dim = rows.shape[1]
    thirds = np.hstack([own[0], other[0]])
    out = np.empty((2, len(rows)))
    for lo in range(0, len(rows), TENSOR_BATCH):
        part = rows[lo : lo + TENSOR_BATCH]
        cubes = _outer_rows(part) @ thirds
        for side, (_, second, first, count) in enumerate((own, other)):
            cube = np.einsum("ij,ij->i", cubes[:, side * dim : (side + 1) * dim], part)
            square = np.einsum("ij,ij->i", part @ second, part)
            out[side, lo : lo + len(part)] = cube / dim**3 + 3 * square / dim**2 + 3 * (part @ first) / dim + count
    out[0] -= (np.einsum("ij,ij->i", rows, rows) / dim + 1.0) ** 3  # the row with itself
    return out[0], out[1]


# -- the subset estimator: one seeded subset pair per task ---------------------


def mmd2_unbiased(xx_sum: float, yy_sum: float, xy_sum: float, n: int, m: int) -> float:
    """Unbiased MMD² from the kernel sums over i ≠ i' (xx), j ≠ j' (yy) and all (i, j) (xy)."""
    return xx_sum / (n * (n - 1)) + yy_sum / (m * (m - 1)) - 2.0 * xy_sum / (n * m)


def polynomial_kernel(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """(a·b/d + 1)³ in float64."""
    return (np.asarray(a, np.float64) @ np.asarray(b, np.float64).T / dim + 1.0) ** 3


def kid_subset_draws(fake_rows: int, real_rows: int, subsets: int, size: int, seed: int = KID_SUBSET_SEED):
    """The rows of each subset, drawn as torch-fidelity draws them (fake first: its ``input1``)."""
    rng = np.random.RandomState(seed)
    draws = []
    for _ in range(subsets):
        fake = rng.choice(fake_rows, size, replace=False)
        real = rng.choice(real_rows, size, replace=False)
        draws.append((fake, real))
    return draws


def subset_mmd2(fake: np.ndarray, real: np.ndarray) -> float:
    """Unbiased MMD² of one subset pair, as torch-fidelity's ``mmd2`` computes it."""
    dim = fake.shape[1]
    k_ff, k_rr, k_fr = (
        polynomial_kernel(fake, fake, dim), polynomial_kernel(real, real, dim), polynomial_kernel(fake, real, dim),
    )
    n, m = len(fake), len(real)
    return mmd2_unbiased(k_ff.sum() - np.trace(k_ff), k_rr.sum() - np.trace(k_rr), k_fr.sum(), n, m)
