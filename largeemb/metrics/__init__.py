"""The metrics: one module each, listed once, here, in the order their numbers
appear in ``metrics.json``.

Each module declares what it needs from the passes and computes its numbers
from what they found (``base`` says how): ``prdc``, ``fscore``, ``fd``, ``fd_infinity``,
``authenticity``, ``vendi``, ``ppr``, ``kid``, ``cmmd``, the k-NN family
(``clipped``, ``sym_pr``, ``pr_cover``, ``rarity``) and the kernel family (``memorization``,
``mifid``, ``kad``, ``rke``). The pipeline
asks for the union of the chosen metrics' needs; ``api.evaluate`` loops over
:func:`chosen`. Neither names a metric.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from largeemb.metrics import (
    authenticity,
    clipped,
    cmmd,
    fd,
    fd_infinity,
    fscore,
    kad,
    kid,
    memorization,
    mifid,
    ppr,
    pr_cover,
    prdc,
    rarity,
    rke,
    sym_pr,
    vendi,
)
from largeemb.metrics.base import Found, Needs, Pass, Value

#: Every metric, in output order (a new metric: its module, and one entry here).
REGISTRY = (
    prdc, fscore, fd, fd_infinity, authenticity, vendi, ppr, kid, cmmd, clipped, sym_pr, pr_cover, rarity,
    memorization, mifid, kad, rke,
)

__all__ = ["REGISTRY", "Found", "Needs", "Pass", "Value", "chosen", "needs_of"]


def chosen(config) -> tuple:
    """The metrics this config computes, in output order."""
    return tuple(metric for metric in REGISTRY if metric.chosen(config))


def needs_of(config, real, fake) -> Needs:
    """What the passes must produce: the union of the chosen metrics' needs.

    ``fake`` None (a reference): what every metric may later need of the real
    set, chosen or not, so that any evaluate from the reference can score it.
    """
    metrics = REGISTRY if fake is None else chosen(config)
    return reduce(or_, (metric.needs(config, real, fake) for metric in metrics), Needs())
