"""KID's pair work: per-row sums of the cubic polynomial kernel over a tile, in float64.

k(x, y) = (x·y/d + 1)³ is not a function of the distance, so no radius or
bound prunes it: every pair is visited once (the symmetric half for a set
against itself). The tile is a float64 GEMM of the stored rows, so the sums
equal a float64 brute force up to the order of additions.
"""

from __future__ import annotations

import numpy as np



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
