"""The stage order, once: moments → centre → partition → radii → cross → settle.

``evaluate``, ``build_reference`` and the benchmarks all run their passes
through :func:`run_passes`; each stage takes the one frozen
:class:`~largeemb.passes.context.PassContext` settled after the moments pass.
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
from largeemb.kernels.highdim import few_rows
from largeemb.kernels.moments import Moments
from largeemb.kernels.companions import PPR_K, prob_radius, subsample_shells
from largeemb.passes import cross, kid, knn, moments, prune
from largeemb.passes.context import PassContext, resolve_precision, screening
from largeemb.passes.cross import PerSample
from largeemb.passes.kid import KidSums
from largeemb.passes.knn import Radii
from largeemb.result import realism_radii
from largeemb.run.session import in_one_run


@dataclass
class SetPasses:
    """What the passes found about one set."""

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
    #: Each real row's distance to its nearest other real row (authenticity), when computed.
    real_nearest_other: np.ndarray | None = None
    #: The common radii (real, fake) of P-precision and P-recall, when computed.
    prob_radii: tuple[float, float] | None = None
    kid: KidSums | None = None
    kid_subsets: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: The precision tiles ran at and, per pass, the share of screened tile entries recomputed in float32.
    screening: dict = field(default_factory=dict)


def context_of(config: EvaluateConfig, real_moments: Moments, partition=None, k=None, fake_moments: Moments | None = None) -> PassContext:
    """The context every distance pass shares: float32 work is centred on the real set's metric mean.

    ``k``: the neighbour counts the radii are computed for (default the config's).
    Euclidean sets on a coarse enough lattice (both sets', when there is a
    fake one) get exact tiles, centred on 0 (:meth:`Lattice.exact`).
    """
    exact = config.metric == "euclidean" and _exact_tiles([real_moments] + ([fake_moments] if fake_moments is not None else []))
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
        precision=resolve_precision(config.precision),
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
def run_passes(real: Source, fake: Source | None, config: EvaluateConfig, reference: Reference | None = None) -> Passes:
    """Run every pass over the data, in order, on the current run's executor.

    ``fake`` None runs the real side alone (moments, partition, radii: what a
    reference stores). With a ``reference`` the real set's moments, partition
    and radii come from it, and its store is only hashed to check it.
    ``config`` must be resolved (its ``block_rows`` set).
    """
    timings: dict[str, float] = {}
    # Vendi's dim × dim unit moment, but not of a set whose Vendi comes from its rows (a reference keeps it),
    # and FD∞'s shells (one dim × dim sum each) only where FD∞ is computed: a real set with more rows than dims.
    unit = tuple(
        role for src, role in ((real, "real"), (fake, "fake"))
        if src is not None and "vendi" in config.companions and (fake is None or not few_rows(src.rows, src.dim))
    )
    fd_inf = fake is not None and "fd_infinity" in config.companions and real.rows > real.dim
    shells = {"fake": subsample_shells(fake.rows, config.seed)} if fd_inf else None
    with timed(timings, "moments"):
        if reference:  # stored moments; the store is only hashed, to check that it has not changed
            fake_side, real_fp = moments.moments_stage([(fake, "fake")], config.metric, hashed=real, unit=unit, shells=shells)
            reference.check(config.metric, real_fp)
            sides = [(reference.moments(), real_fp), fake_side]
        else:
            both = [(real, "real")] + ([(fake, "fake")] if fake is not None else [])
            sides = moments.moments_stage(both, config.metric, unit=unit, shells=shells)
    real_side = SetPasses(*sides[0])
    fake_side = SetPasses(*sides[1]) if fake is not None else None
    if reference and config.plots and config.metric != "euclidean" and real_side.moments.of_metric_rows() is None:
        raise InputError(
            f"reference lacks the moments of {config.metric} rows that the plots need (built by an older largeemb)",
            f"in {reference.path}",
            "rebuild it with `largeemb reference build`, or pass --no-plots",
        )
    if fake is not None:
        check_scale(real_side.moments, fake_side.moments, real, fake)

    radii_k = _radii_k(config, fake is None, reference)
    fake_moments = fake_side.moments if fake_side is not None else None
    ctx = context_of(config, real_side.moments, k=radii_k, fake_moments=fake_moments)
    if config.prune:
        with timed(timings, "partition"):
            if reference:
                partition = reference.partition()
            else:
                partition = prune.partition_stage(real, real_side.moments, ctx.centre, config.metric, config.seed)
        ctx = context_of(config, real_side.moments, partition, k=radii_k, fake_moments=fake_moments)

    # The float32 tile pass, then the float64 pass for the rows it could not prove.
    if reference:
        real_side.radii = Radii(reference.radii(radii_k), 0)
    sets = [(src, role) for src, role in ((real, "real"), (fake, "fake")) if src is not None and not (reference and role == "real")]
    sources, roles = [src for src, _ in sets], tuple(role for _, role in sets)
    with timed(timings, "radii"):
        tiles = knn.radii_stage(ctx, sources, roles)
    with timed(timings, "radii_float64"):
        computed = knn.resolve_stage(ctx, sources, tiles, roles)
    for role, radii in zip(roles, computed):
        (real_side if role == "real" else fake_side).radii = radii
    passes = Passes(ctx, real_side, fake_side, timings=timings, screening={"precision": ctx.precision})
    if ctx.precision != "float32":
        passes.screening.update({f"radii_{role}": screening(f"radii-{role}") for role in roles})
    if fake is None:
        return passes
    if 1 in radii_k and "authenticity" in config.companions:  # each real row's nearest other real row
        passes.real_nearest_other = real_side.radii.values[:, radii_k.index(1)]
    if PPR_K in radii_k and "p_precision_recall" in config.companions:
        at = radii_k.index(PPR_K)
        passes.prob_radii = (prob_radius(real_side.radii.values[:, at]), prob_radius(fake_side.radii.values[:, at]))
    if len(radii_k) > len(config.k):  # k = 1 or 4 were added for the companions alone
        for side in (real_side, fake_side):
            side.radii = dataclasses.replace(side.radii, values=side.radii.values[:, : len(config.k)])

    realism_radius = realism_radii(real_side.radii.values[:, 0]) if config.samples else None
    with timed(timings, "cross"):
        passes.memberships = cross.cross_stage(
            ctx, real, fake, real_side.radii.values, fake_side.radii.values, realism_radius, passes.prob_radii
        )
    if ctx.precision != "float32":
        passes.screening["cross"] = screening("cross-tile")
    if config.samples:
        with timed(timings, "samples"):
            passes.per_sample = cross.settle_stage(ctx, real, fake, passes.memberships, realism_radius)
    if config.kid:
        with timed(timings, "kid"):
            passes.kid = kid.kid_stage(ctx, real, fake)
    if config.kid_subsets:
        with timed(timings, "kid_subsets"):
            passes.kid_subsets = kid.kid_subsets_stage(real, fake, config.kid_subsets, config.kid_subset_size, config.kid_subset_seed)
    return passes


def float64_work(passes: Passes) -> dict:
    """Rows and pairs settled in float64, per pass (named as in ``timings_s``), for metrics.json.

    ``exact_tiles``: the sets lie on a lattice whose float32 tiles are exact
    (then every count is 0 but the settle pass's). ``radii``: pairs the tile
    pass's finish re-checked; ``radii_float64``: rows the tile pass left
    unproven and the pairs the float64 pass computed for them; ``cross``:
    memberships and per-sample candidates decided from float64 rows;
    ``samples``: pairs the settle pass computed.
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
    if passes.memberships is not None:
        out["cross"] = {"pairs": int(passes.memberships.float64_pairs)}
    if passes.per_sample is not None:
        out["samples"] = {"pairs": int(passes.per_sample.float64_pairs)}
    return out


def _radii_k(config: EvaluateConfig, real_only: bool, reference: Reference | None) -> tuple[int, ...]:
    """The k the radii are computed for: the config's, plus those the companions need.

    Authenticity needs k = 1 (with per-sample values), P-precision/recall
    k = PPR_K. A reference always stores both (cheap: the same candidates),
    so that any later evaluate can score them.
    """
    extra = []
    if real_only or ("authenticity" in config.companions and config.samples):
        extra.append(1)
    if real_only or "p_precision_recall" in config.companions:
        extra.append(PPR_K)
    extra = [k for k in extra if k not in config.k and (reference is None or k in reference.k)]
    return config.k + tuple(extra)


@contextmanager
def timed(timings: dict, name: str):
    start = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
