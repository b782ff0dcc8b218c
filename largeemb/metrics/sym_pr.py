"""Symmetric precision and recall (Khayatkhoei & AbdAlmageed, ICML 2023), per k,
as the authors' ``ManifoldMetric`` computes them, strict ``<`` throughout:

- sym_precision = min(precision, complement precision): the share of fake
  rows inside some real ball, and the share of fake balls holding a real row;
- sym_recall = min(recall, coverage): the share of real rows inside some fake
  ball, and the share of real balls holding a fake row.

Its own ``<`` whatever ``--inclusive`` says: extra ball columns of the cross
pass at the run's k (:class:`largeemb.metrics.base.Ball`).
"""

from __future__ import annotations

import numpy as np

from largeemb.metrics.base import Ball, Found, Needs, Value

NAME = "sym_precision_recall"
SYM_PRECISION, SYM_RECALL = "sym_precision", "sym_recall"
KEYS = (NAME, SYM_PRECISION, SYM_RECALL)
TIMING = "companions"


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    if fake is None:
        return Needs()
    return Needs(balls=tuple(Ball(role, k, False) for k in config.k for role in ("real", "fake")))


def value(found: Found, config) -> Value:
    by_k, details = {}, {}
    for k in config.k:
        real, fake = found.ball(Ball("real", k, False)), found.ball(Ball("fake", k, False))
        parts = {
            "precision": float(np.mean(real.held_by > 0)),
            "comp_precision": float(np.mean(fake.holds > 0)),
            "recall": float(np.mean(fake.held_by > 0)),
            "coverage": float(np.mean(real.holds > 0)),
        }
        by_k[k] = {
            SYM_PRECISION: min(parts["precision"], parts["comp_precision"]),
            SYM_RECALL: min(parts["recall"], parts["coverage"]),
        }
        details[str(k)] = parts
    return Value(by_k=by_k, details={NAME: details})
