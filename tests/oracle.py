"""Independent float64 brute-force oracles (NumPy only), written from the definitions in README "Metrics"."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All float64 distances, as sqrt of summed squared differences."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    out = np.empty((len(a), len(b)))
    step = max(1, 2_000_000 // max(1, len(b) * a.shape[1]))
    for lo in range(0, len(a), step):
        diff = a[lo : lo + step, None, :] - b[None, :, :]
        out[lo : lo + step] = np.sqrt((diff * diff).sum(axis=-1))
    return out


def radii(x: np.ndarray, k: int) -> np.ndarray:
    """k-th nearest other row (self excluded once, duplicates count)."""
    return np.sort(pairwise(x, x), axis=1)[:, k]


def prdc(real, fake, k: int, inclusive: bool = False, metric: str = "euclidean") -> dict:
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if metric == "cosine":
        real = real / np.linalg.norm(real, axis=1, keepdims=True)
        fake = fake / np.linalg.norm(fake, axis=1, keepdims=True)
    r_real, r_fake = radii(real, k), radii(fake, k)
    d = pairwise(fake, real)  # (m, n)
    inside = np.less_equal if inclusive else np.less
    in_real_ball = inside(d, r_real[None, :])
    in_fake_ball = inside(d, r_fake[:, None])
    return {
        "precision": in_real_ball.any(axis=1).mean(),
        "recall": in_fake_ball.any(axis=0).mean(),
        "density": in_real_ball.sum() / (k * len(fake)),
        "coverage": in_real_ball.any(axis=0).mean(),
    }


def frechet(real, fake) -> float:
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def per_sample(real, fake, k: int) -> dict:
    """Per-row values (README "Quick start", samples.zarr) by brute force (ties go to the lowest index)."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    r_real = radii(real, k)
    d = pairwise(fake, real)  # (m, n)
    eligible = np.where(r_real <= np.median(r_real), r_real, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(eligible[None, :] > 0, eligible[None, :] / d, 0.0)
    return {
        "fake_ball_count": (d < r_real[None, :]).sum(axis=1),
        "fake_nearest_real": d.argmin(axis=1),
        "fake_nearest_dist": d.min(axis=1),
        "fake_realism": ratio.max(axis=1),
        "real_radius": r_real,
        "real_covered": (d < r_real[None, :]).any(axis=0),
        "real_nearest_dist": d.min(axis=0),
    }
