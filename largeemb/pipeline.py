"""The stage order, once: moments → centre → partition → radii → cross →
settle → the metrics' own passes → the plots' projection.

``evaluate``, ``build_reference`` and the benchmarks all run their passes
through :func:`run_passes`; each stage takes the one frozen
:class:`~largeemb.passes.context.PassContext` settled after the moments pass.
What the passes compute beyond radii and memberships is what the chosen
metrics declare (:func:`largeemb.metrics.needs_of`); this module names none.
The real side comes from one provider: computed from its store, or read
from a reference (:class:`ComputedReal`, :class:`StoredReal`).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from largeemb.config import EvaluateConfig
from largeemb.errors import InputError
from largeemb.io.checks import check_scale
from largeemb.io.reference import Reference
from largeemb.io.store import Source
from largeemb.kernels.cross import CrossPartial
from largeemb.kernels.cross_splits import SplitRows
from largeemb.kernels.moments import Moments
from largeemb.metrics import Found, Needs, needs_of
from largeemb.metrics.base import leading
from largeemb.passes import cross, knn, moments, prune
from largeemb.passes.context import PassContext, resolve_precision, screening, tile_arithmetic
from largeemb.passes.cross import PerSample
from largeemb.passes.knn import Radii
from largeemb.passes.projection import Projection, project
from largeemb.run.session import in_one_run


@dataclass
class SetPasses:
    """One set ("real" or "fake") and what the passes found about it."""

    role: str
    source: Source
    moments: Moments
    fingerprint: str
    radii: Radii | None = None


@dataclass
class Passes:
    """Everything the passes over the data produce; ``fake`` and the cross results are None for the real side alone."""

    context: PassContext
    real: SetPasses
    fake: SetPasses | None = None
    memberships: CrossPartial | None = None
    per_sample: PerSample | None = None
    #: The common radii (real, fake) the cross pass summed Π(d/R) terms for (``Needs.prob_radii``), when computed.
    prob_radii: tuple[float, float] | None = None
    #: Results of the metrics' own passes (``Needs.passes``), by name.
    extra: dict = field(default_factory=dict)
    #: The extra balls the cross pass counted in (``Needs.balls``), and the real × real counts (``Needs.real_in_real``).
    balls: tuple = ()
    real_in_real: dict = field(default_factory=dict)
    #: What the plots need; None with plots off.
    projection: Projection | None = None
    #: The reference directory the real side was read from, if any.
    reference: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: The precision tiles ran at and, per pass, the share of screened tile entries recomputed in float32.
    screening: dict = field(default_factory=dict)
    #: The standard errors' part masks of each set (real, fake), when the cross pass collected
    #: ``memberships.splits``.
    split_parts: tuple | None = None
    #: The standard errors were asked for, but the real side (a reference) holds no part radii at these k.
    splits_missing: bool = False

    def found(self) -> Found:
        """What the metrics are given: the arrays and records of both sets."""
        real, fake = self.real, self.fake
        return Found(
            real=real.source, fake=fake.source, k=self.context.k, real_moments=real.moments, fake_moments=fake.moments,
            real_radii=real.radii.values, fake_radii=fake.radii.values, memberships=self.memberships,
            per_sample=self.per_sample, prob_radii=self.prob_radii, extra=self.extra, reference=self.reference,
            balls=self.balls, real_in_real=self.real_in_real, split_parts=self.split_parts,
            splits_missing=self.splits_missing,
        )


class ComputedReal:
    """The real side computed from its store: moments, partition and radii by the passes."""

    path = None

    def __init__(self, source: Source):
        self.source = source

    def has_k(self, k: int) -> bool:
        return True

    def moments(self, fake: Source | None, config: EvaluateConfig, needs: Needs) -> list[SetPasses]:
        """Both sets' moments, in one pass."""
        sets = [(self.source, "real")] + ([(fake, "fake")] if fake is not None else [])
        found = moments.moments_stage(sets, config.metric, unit=needs.unit, shells=_shells(needs))
        return [SetPasses(role, src, m.moments, m.fingerprint) for (src, role), m in zip(sets, found.sets)]

    def partition(self, real_moments: Moments, ctx: PassContext, config: EvaluateConfig):
        return prune.partition_stage(self.source, real_moments, ctx.centre, config.metric, config.seed)

    def has_splits(self, k: tuple[int, ...]) -> bool:
        return True

    def radii(self, k: tuple[int, ...], split_k: tuple[int, ...] = ()) -> Radii | None:
        return None  # the radii stage computes them


class StoredReal:
    """The real side read from a reference: its moments, partition and radii as
    stored. Its store is only hashed, in the moments pass, to check that it has
    not changed since the reference was built."""

    def __init__(self, reference: Reference):
        self.reference = reference
        self.source, self.path = reference.source, reference.path

    def has_k(self, k: int) -> bool:
        return k in self.reference.k

    def moments(self, fake: Source, config: EvaluateConfig, needs: Needs) -> list[SetPasses]:
        """The stored moments of the real set, and the fake set's from the pass."""
        found = moments.moments_stage(
            [(fake, "fake")], config.metric, hashed=self.source, unit=needs.unit, shells=_shells(needs)
        )
        self.reference.check(config.metric, found.hashed)
        real = SetPasses("real", self.source, self.reference.moments(), found.hashed)
        if config.plots and config.metric != "euclidean" and real.moments.of_metric_rows() is None:
            raise InputError(
                f"reference lacks the moments of {config.metric} rows that the plots need (built by an older largeemb)",
                f"in {self.reference.path}",
                "rebuild it with `largeemb reference build`, or pass --no-plots",
            )
        [fake_set] = found.sets
        return [real, SetPasses("fake", fake, fake_set.moments, fake_set.fingerprint)]

    def partition(self, real_moments: Moments, ctx: PassContext, config: EvaluateConfig):
        return self.reference.partition()

    def has_splits(self, k: tuple[int, ...]) -> bool:
        return all(x in self.reference.split_k for x in k)

    def radii(self, k: tuple[int, ...], split_k: tuple[int, ...] = ()) -> Radii:
        return Radii(self.reference.radii(k), 0, parts=self.reference.parts(split_k) if split_k else None)


class KnownReal:
    """The real side as an earlier run of this process found it (several fakes in one call):
    its moments, fingerprint, partition and radii, kept in memory, so nothing of the
    real set is read again for its radii or moments."""

    path = None

    def __init__(self, passes: Passes):
        self.source, self._set = passes.real.source, passes.real
        self._k, self._partition = passes.context.k, passes.context.partition
        self._split_k = passes.context.split_k

    @property
    def fingerprint(self) -> str:
        return self._set.fingerprint

    def has_k(self, k: int) -> bool:
        return k in self._k

    def moments(self, fake: Source, config: EvaluateConfig, needs: Needs) -> list[SetPasses]:
        """The real set's moments as found, and the fake set's from the pass."""
        found = moments.moments_stage([(fake, "fake")], config.metric, unit=needs.unit, shells=_shells(needs))
        [fake_set] = found.sets
        real = SetPasses("real", self.source, self._set.moments, self._set.fingerprint)
        return [real, SetPasses("fake", fake, fake_set.moments, fake_set.fingerprint)]

    def partition(self, real_moments: Moments, ctx: PassContext, config: EvaluateConfig):
        return self._partition

    def has_splits(self, k: tuple[int, ...]) -> bool:
        return all(x in self._split_k for x in k)

    def radii(self, k: tuple[int, ...], split_k: tuple[int, ...] = ()) -> Radii:
        columns = [self._k.index(x) for x in k]
        found = self._set.radii
        parts = None
        if split_k:
            # Every fake of a batch asks for the same k: the array itself, not a (rows, k, 64) float64 copy per fake.
            same = tuple(split_k) == self._split_k
            parts = found.parts if same else found.parts[:, [self._split_k.index(x) for x in split_k]]
        return dataclasses.replace(found, values=found.values[:, columns], parts=parts)


def _shells(needs: Needs) -> dict | None:
    return {"fake": needs.shells} if needs.shells is not None else None


def context_of(
    config: EvaluateConfig, real_moments: Moments, partition=None, k=None, fake_moments: Moments | None = None,
    split_k: tuple[int, ...] = (),
) -> PassContext:
    """The context every distance pass shares: float32 work is centred on the real set's metric mean.

    ``k``: the neighbour counts the radii are computed for (default the config's);
    ``split_k``: those the part radii of the standard errors are found for (none by default).
    Euclidean sets on a coarse enough lattice (both sets', when there is a
    fake one) get exact tiles, centred on 0 (:meth:`Lattice.exact`).
    """
    exact = config.metric == "euclidean" and _exact_tiles(
        [real_moments] + ([fake_moments] if fake_moments is not None else [])
    )
    centre = real_moments.metric_mean.astype(np.float32)
    return PassContext(
        metric=config.metric,
        centre=np.zeros_like(centre) if exact else centre,
        exact=exact,
        k=k or config.k,
        block_rows=config.block_rows,
        panel_rows=config.panel_rows,
        inclusive=config.inclusive,
        partition=partition,
        precision=resolve_precision(config.precision, tuple(split_k)),
        split_k=tuple(split_k),
    )


def _exact_tiles(moments: list[Moments]) -> bool:
    lattices = [m.lattice for m in moments]
    if any(lattice is None for lattice in lattices):  # unknown (a reference's moments): the general path
        return False
    merged = lattices[0]
    for lattice in lattices[1:]:
        merged = merged.merge(lattice)
    return merged.exact()


@in_one_run  # every stage's graphs in one run, whose counts give the screening numbers
def run_passes(
    real: Source,
    fake: Source | None,
    config: EvaluateConfig,
    reference: Reference | None = None,
    needs: Needs | None = None,
    known: KnownReal | None = None,
) -> Passes:
    """Run every pass over the data, in order, on the current run's executor.

    ``fake`` None runs the real side alone (moments, partition, radii: what a
    reference stores). With a ``reference`` the real set's moments, partition
    and radii come from it, and its store is only hashed to check it.
    ``needs``: what the metrics need (default: :func:`largeemb.metrics.needs_of`
    the config). ``known``: the real side as an earlier run found it (its
    store is then not read for moments or radii). ``config`` must be resolved
    (its ``block_rows`` set).
    """
    side = known or (StoredReal(reference) if reference else ComputedReal(real))
    needs = needs_of(config, real, fake) if needs is None else needs
    # The radii's columns: the config's k, then those only the metrics need (that the real side can give).
    k = config.k + tuple(x for x in needs.k if x not in config.k and side.has_k(x))
    timings: dict[str, float] = {}
    with timed(timings, "moments"):
        sets = side.moments(fake, config, needs)
    real_set, fake_set = sets[0], (sets[1] if fake is not None else None)
    if fake is not None:
        check_scale(real_set.moments, fake_set.moments, real, fake)

    # The standard errors' part radii at the config's k, when the real side has (or computes) them.
    split_k = config.k if needs.splits and side.has_splits(config.k) else ()
    ctx = context_of(
        config, real_set.moments, k=k, fake_moments=fake_set.moments if fake_set is not None else None, split_k=split_k
    )
    if config.prune:
        with timed(timings, "partition"):
            ctx = dataclasses.replace(ctx, partition=side.partition(real_set.moments, ctx, config))

    # The float32 tile pass, then the float64 pass for the rows it could not prove.
    real_set.radii = side.radii(k, split_k)
    own = [s for s in sets if s.radii is None]
    sources, roles = [s.source for s in own], tuple(s.role for s in own)
    with timed(timings, "radii"):
        tiles = knn.radii_stage(ctx, sources, roles)
    with timed(timings, "radii_float64"):
        computed = knn.resolve_stage(ctx, sources, tiles, roles)
    for s, radii in zip(own, computed):
        s.radii = radii
    passes = Passes(
        ctx, real_set, fake_set, timings=timings, reference=side.path,
        screening=tile_arithmetic(config.precision, ctx.precision, ctx.split_k),
    )
    if ctx.precision != "float32":
        passes.screening.update({f"radii_{role}": screening(f"radii-{role}") for role in roles})
    if fake is None:
        return passes

    # Memberships at the config's own k (the leading columns).
    real_radii, fake_radii = leading(real_set.radii.values, config.k), leading(fake_set.radii.values, config.k)
    if needs.prob_radii is not None and needs.prob_radii[0] in k:
        at, radius = k.index(needs.prob_radii[0]), needs.prob_radii[1]
        passes.prob_radii = (radius(real_set.radii.values[:, at]), radius(fake_set.radii.values[:, at]))
    realism = needs.realism(real_radii[:, 0]) if needs.realism is not None else None
    split_rows = None
    if split_k:
        split_rows = (
            SplitRows.of(fake_set.radii.parts, knn.split_key("fake")),
            SplitRows.of(real_set.radii.parts, knn.split_key("real")),
        )
        passes.split_parts = (split_rows[1].parts, split_rows[0].parts)
    elif needs.splits:
        passes.splits_missing = True
    passes.balls, balls = cross.ball_columns(needs.balls, k, real_set.radii.values, fake_set.radii.values)
    with timed(timings, "cross"):
        passes.memberships = cross.cross_stage(
            ctx, real, fake, real_radii, fake_radii, realism, passes.prob_radii, balls, split_rows
        )
    if split_rows is not None:
        # The cross pass was the last reader of the fake set's part radii (the real set's serve the next fake
        # and a reference build) and of the per-row part indices: they leave before the later passes allocate.
        fake_set.radii.parts = split_rows = None
    own = [b for b in needs.real_in_real if b.k in k]
    if own:
        with timed(timings, "real_in_real"):
            counts = cross.real_in_real_stage(ctx, real, np.stack([b.of(k, real_set.radii.values) for b in own], 1))
        passes.real_in_real = {b: counts[:, q] for q, b in enumerate(own)}
    if ctx.precision != "float32":
        passes.screening["cross"] = screening("cross-tile")
    if realism is not None:
        with timed(timings, "samples"):
            passes.per_sample = cross.settle_stage(ctx, real, fake, passes.memberships, realism)
    for extra in needs.passes:
        with timed(timings, extra.name):
            moments = (real_set.moments, fake_set.moments) if extra.moments else ()
            passes.extra[extra.name] = extra.run(ctx, real, fake, *moments)
    if config.plots:
        with timed(timings, "projection"):
            passes.projection = project(
                real, fake, real_set.moments, fake_set.moments, metric=config.metric, method=config.pca,
                plot_samples=config.plot_samples, tsne_samples=config.tsne_samples, seed=config.seed,
            )
    return passes


def float64_work(passes: Passes) -> dict:
    """Rows and pairs settled in float64, per pass (named as in ``timings_s``), for metrics.json.

    ``exact_tiles``: the sets lie on a lattice whose float32 tiles are exact
    (then every count is 0 but the settle pass's). ``radii``: pairs the tile
    pass's finish re-checked; ``radii_float64``: rows the tile pass left
    unproven and the pairs the float64 pass computed for them; ``cross``:
    memberships and per-sample candidates decided from float64 rows;
    ``samples``: pairs the settle pass computed. ``part_radii`` (with standard
    errors): pairs the part radii took from the candidate lists, and rows whose
    lists were short, served by the float64 pass (both within ``radii``/``radii_float64``'s times).
    """
    sides = {role: side.radii for role, side in (("real", passes.real), ("fake", passes.fake)) if side is not None}
    out = {
        "exact_tiles": bool(passes.context.exact),
        "radii": {f"{role}_pairs": int(r.tile_pairs) for role, r in sides.items()},
        "radii_float64": {
            **{f"{role}_rows": int(r.float64_rows) for role, r in sides.items()},
            **{f"{role}_pairs": int(r.float64_pairs) for role, r in sides.items()},
        },
    }
    if passes.context.split_k:
        out["part_radii"] = {
            **{f"{role}_pairs": int(r.parts_pairs) for role, r in sides.items()},
            **{f"{role}_float64_rows": int(r.parts_rows) for role, r in sides.items()},
        }
    if passes.memberships is not None:
        out["cross"] = {"pairs": int(passes.memberships.float64_pairs)}
    if passes.per_sample is not None:
        out["samples"] = {"pairs": int(passes.per_sample.float64_pairs)}
    return out


@contextmanager
def timed(timings: dict, name: str | None):
    """Add the time of the block to ``timings[name]`` (None: not timed)."""
    if name is None:
        yield
        return
    start = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
