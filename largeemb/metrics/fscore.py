"""Fβ of precision and recall per k: F1 (torch-fidelity's f_score), F8 and
F1/8 (Sajjadi et al. 2018: recall- and precision-weighted)."""

from __future__ import annotations

from largeemb.metrics.base import Found, Needs, Value
from largeemb.metrics.prdc import precision, recall

NAME = "fscore"
F1, F8, F1_8 = "f1", "f8", "f1_8"
#: Fβ reported per k, by name.
F_BETAS = {F1: 1.0, F8: 8.0, F1_8: 1.0 / 8.0}
KEYS = tuple(F_BETAS)
TIMING = None


def chosen(config) -> bool:
    return NAME in config.companions


def needs(config, real, fake) -> Needs:
    return Needs()  # precision and recall's memberships, which every run has


def f_beta(precision: float, recall: float, beta: float) -> float:
    """Fβ of precision and recall, with torch-fidelity's guard against 0/0 (denominator at least 1e-5)."""
    b2 = beta * beta
    return float((1 + b2) * precision * recall / max(1e-5, b2 * precision + recall))


def value(found: Found, config) -> Value:
    by_k = {}
    for q, k in enumerate(config.k):
        p, r = precision(found, q), recall(found, q)
        by_k[k] = {name: f_beta(p, r, beta) for name, beta in F_BETAS.items()}
    return Value(by_k=by_k)
