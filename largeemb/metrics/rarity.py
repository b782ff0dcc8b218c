"""Rarity score (Han et al., ICLR 2023), as the authors' ``MANIFOLD.rarity`` computes it:
per fake row, the smallest k-NN radius among the real balls that hold it
(strict ``<``), at each of the run's k. A fake row in no real ball has none
(NaN; the authors' code writes 0 and leaves such rows out of its ranking);
``rarity_mean`` is the mean over the rows that have one.

The per-row scores at the first k reach ``samples.zarr`` (fake/rarity).
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.base import Ball, Found, Needs, Value

NAME = "rarity"
MEAN = "rarity_mean"
#: The per-row scores are kept on the result (and in samples.zarr) under this name.
ROWS = "fake_rarity"
KEYS = (NAME, MEAN, ROWS)
TIMING = "companions"


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    return Needs() if fake is None else Needs(balls=tuple(Ball("real", k, False) for k in config.k))


def scores(found: Found, k: int) -> np.ndarray:
    """Per fake row: the smallest radius of the real balls holding it, NaN where none does."""
    smallest = found.ball(Ball("real", k, False)).min_radius
    return np.where(np.isfinite(smallest), smallest, np.nan)


def value(found: Found, config) -> Value:
    by_k, rows = {}, {}
    for k in config.k:
        score = scores(found, k)
        held = ~np.isnan(score)
        by_k[k] = {MEAN: float(np.mean(score[held])) if held.any() else float("nan")}
        if k == config.k[0]:
            rows[ROWS] = score
    return Value(by_k=by_k, rows=rows)
