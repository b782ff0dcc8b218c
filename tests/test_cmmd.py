"""CMMD equals its authors' formula on every pair, whatever the block size.

The oracle is google-research's ``cmmd/distance.py`` ``mmd`` (2024; also
sayakpaul/cmmd-pytorch's ``distance.py``), ported to NumPy float64 below: the
means of k over every pair of R × R, F × F (diagonals included) and R × F,
k(x, y) = exp(−‖x − y‖² / (2 · 10²)), times 1000.
"""

import numpy as np
import pytest

import largeemb
from conftest import mixture

SIGMA, SCALE = 10, 1000


def authors_mmd(x, y):
    """google-research cmmd ``distance.mmd``, in NumPy float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x_sqnorms, y_sqnorms = np.diag(x @ x.T), np.diag(y @ y.T)
    gamma = 1 / (2 * SIGMA**2)
    k_xx = np.mean(np.exp(-gamma * (-2 * (x @ x.T) + x_sqnorms[:, None] + x_sqnorms[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * (x @ y.T) + x_sqnorms[:, None] + y_sqnorms[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * (y @ y.T) + y_sqnorms[:, None] + y_sqnorms[None, :])))
    return SCALE * (k_xx + k_yy - 2 * k_xy)


def brute_force(x, y):
    """The same from pairwise differences (no |x|² + |y|² − 2xy cancellation)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def mean_k(a, b):
        return np.mean(np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * SIGMA**2)))

    return SCALE * (mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y))


def _sets():
    rng = np.random.default_rng(3)
    gauss = (rng.standard_normal((700, 12)) * 6, rng.standard_normal((650, 12)) * 6 + 1.5)
    lattice = np.round(rng.standard_normal((600, 6)) * 3)  # duplicates and ties
    return {
        "gaussian": gauss,
        "mixture": (mixture(700, 10, 1, spread=20), mixture(640, 10, 2, keep=6, spread=20)),
        "duplicates": (lattice, np.concatenate([lattice[:300], np.round(rng.standard_normal((350, 6)) * 3)])),
    }


@pytest.mark.parametrize("name", ["gaussian", "mixture", "duplicates"])
def test_cmmd_equals_the_authors_formula_for_any_block_size(name):
    real, fake = (np.asarray(a, np.float32) for a in _sets()[name])
    expected = authors_mmd(real, fake)
    assert brute_force(real, fake) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    for block_rows in (128, 300, 4096):
        result = largeemb.evaluate(
            real, fake, k=3, companions=("cmmd",), samples=False, plots=False, block_rows=block_rows
        )
        assert result.metrics["cmmd"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert result.to_dict()["details"]["cmmd"]["sigma"] == SIGMA


def test_cmmd_is_zero_for_a_set_against_itself_and_off_by_default():
    real = np.asarray(_sets()["gaussian"][0], np.float32)
    result = largeemb.evaluate(real, real.copy(), k=3, companions=("cmmd",), samples=False, plots=False)
    assert abs(result.metrics["cmmd"]) < 1e-9
    assert "cmmd" not in largeemb.evaluate(real, real.copy(), k=3, samples=False, plots=False).metrics
