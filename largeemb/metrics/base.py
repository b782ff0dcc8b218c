"""What a metric declares (:class:`Needs`), what it is given (:class:`Found`)
and what it gives back (:class:`Value`).

A metric module has ``NAME``, ``KEYS`` (every key it writes), ``TIMING`` (the
``timings_s`` entry its time adds to, or None), and three functions:

- ``chosen(config) -> bool``: whether this run computes it;
- ``needs(config, real, fake) -> Needs``: what the passes must produce for it,
  given the options and the two sources (rows, dim). ``fake`` None asks what a
  reference must keep of the real set for it. It raises ``InputError`` for
  options the inputs cannot serve, before any pass runs;
- ``value(found, config) -> Value``: its numbers, from what the passes produced.

The pipeline runs the passes once for the union (``|``) of the chosen
metrics' needs; it names no metric.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np

from largeemb.io.store import Source
from largeemb.kernels.cross import CrossPartial
from largeemb.kernels.moments import Moments
from largeemb.passes.cross import Ball, PerSample

__all__ = ["Ball", "Found", "InBall", "Needs", "Pass", "Value", "leading"]


@dataclass(frozen=True)
class Pass:
    """A pass of a metric's own, run after the cross pass as ``run(ctx, real, fake)``
    (``moments``: ``run(ctx, real, fake, real_moments, fake_moments)``, the moments pass's).

    Its result is ``Found.extra[name]``; its time is ``timings_s[name]``.
    """

    name: str
    run: Callable
    moments: bool = False


@dataclass(frozen=True)
class Needs:
    """What the passes must produce for a metric (the defaults: nothing beyond the k-NN radii and memberships)."""

    #: The self pass also finds the radii at these k (after the config's own, as extra columns).
    k: tuple[int, ...] = ()
    #: Roles ("real", "fake") whose unit-row second moment the moments pass streams (Moments.unit_moment).
    unit: tuple[str, ...] = ()
    #: The fake set's nested-subsample shells for the moments pass: (each row's shell, shell count) (Moments.nested).
    shells: tuple[np.ndarray, int] | None = None
    #: Per-sample values (the cross pass's shortlists, then the settle pass), with these realism
    #: radii: a function of the real radii at the config's first k.
    realism: Callable | None = None
    #: (k, f): the cross pass also sums Π(d/R) terms for the common radii R = f(radii at k) of each set.
    prob_radii: tuple[int, Callable] | None = None
    #: Passes of the metric's own, in order.
    passes: tuple[Pass, ...] = ()
    #: Extra balls the cross pass counts in (each with its own convention): :meth:`Found.ball`.
    balls: tuple[Ball, ...] = ()
    #: Real balls (``<=``) whose count of other real rows inside them, per real row, a real × real pass
    #: finds (:attr:`Found.real_in_real`).
    real_in_real: tuple[Ball, ...] = ()
    #: The standard errors' random splits: part radii at the config's k in the self pass, part masks
    #: and per-split totals in the cross pass (:mod:`largeemb.kernels.splits`).
    splits: bool = False

    def __or__(self, other: Needs) -> Needs:
        """Both metrics' needs: the union of k, roles and passes (in order), the one shell or function asked for."""
        joined = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name in _LISTS:
                joined[f.name] = mine + tuple(v for v in theirs if v not in mine)
            elif f.name in _FLAGS:
                joined[f.name] = mine or theirs
            elif mine is None or theirs is None or mine is theirs:
                joined[f.name] = theirs if mine is None else mine
            else:
                raise ValueError(f"two metrics ask the passes for different {f.name}: one pass computes one")
        return Needs(**joined)


#: The fields of Needs that list things (joined as unions); the others name one thing.
_LISTS = ("k", "unit", "passes", "balls", "real_in_real")
#: The fields of Needs that are on or off (on when any metric asks).
_FLAGS = ("splits",)


@dataclass(frozen=True)
class Found:
    """What the passes produced, as a metric sees it: arrays and plain records."""

    real: Source
    fake: Source
    #: The k of the radii's columns: the config's, then the extra k of the needs.
    k: tuple[int, ...]
    real_moments: Moments
    fake_moments: Moments
    real_radii: np.ndarray
    fake_radii: np.ndarray
    #: Per-row memberships at the config's k, and the P-precision/recall sums (``.prob``) when asked for.
    memberships: CrossPartial
    per_sample: PerSample | None = None
    #: The common radii (real, fake) the cross pass used for ``Needs.prob_radii``.
    prob_radii: tuple[float, float] | None = None
    #: Results of the metrics' own passes, by pass name.
    extra: dict = field(default_factory=dict)
    #: The reference directory the real side was read from, if any.
    reference: str | None = None
    #: The extra balls the cross pass counted in (``Needs.balls`` at a k the radii have), in column order.
    balls: tuple[Ball, ...] = ()
    #: Per ``Needs.real_in_real`` ball computed: per real row, the other real rows' balls holding it.
    real_in_real: dict = field(default_factory=dict)
    #: (real, fake) part masks of the standard errors (``memberships.splits`` holds the totals); None: not collected.
    split_parts: tuple | None = None
    #: The standard errors were asked for, but the reference holds no part radii at these k.
    splits_missing: bool = False

    def ball(self, ball: Ball) -> InBall | None:
        """The cross pass's counts in one extra ball (None: not computed, e.g. a reference lacking its k)."""
        if ball not in self.balls:
            return None
        columns = {role: [b for b in self.balls if b.role == role] for role in ("real", "fake")}
        parts = self.memberships.balls
        q = columns[ball.role].index(ball)
        if ball.role == "real":
            return InBall(parts.real_holds[:, q], parts.fake_in_real[:, q], parts.fake_min_radius[:, q])
        return InBall(parts.fake_holds[:, q], parts.real_in_fake[:, q])

    def radii(self, role: str, k: int) -> np.ndarray | None:
        """One set's radii at ``k`` (None: not computed, e.g. a reference that lacks them)."""
        if k not in self.k:
            return None
        return (self.real_radii if role == "real" else self.fake_radii)[:, self.k.index(k)]


@dataclass(frozen=True)
class InBall:
    """The cross pass's counts in one extra ball (:meth:`Found.ball`)."""

    #: Per row of the ball's own set: rows of the other set inside its ball.
    holds: np.ndarray
    #: Per row of the other set: balls of this column holding it.
    held_by: np.ndarray
    #: Real balls only, per fake row: the smallest radius of the real balls holding it (inf: none).
    min_radius: np.ndarray | None = None


def leading(radii: np.ndarray, ks) -> np.ndarray:
    """The columns of the config's own k, which come first (extra k follow)."""
    return radii[:, : len(ks)]


@dataclass
class Value:
    """A metric's part of the result; each part is merged, in registry order, into ``metrics.json``."""

    #: Numbers per k (``by_k``), merged into each k's entry.
    by_k: dict[int, dict[str, float]] = field(default_factory=dict)
    #: Numbers that do not depend on k (``metrics``, after the first k's).
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    standard_errors: dict = field(default_factory=dict)
    #: Standard errors given the real set (held fixed: comparing fakes against one real set), as ``standard_errors``.
    standard_errors_given_real: dict = field(default_factory=dict)
    #: Per-row arrays kept on the result (not in the JSON), by name.
    rows: dict[str, np.ndarray] = field(default_factory=dict)
