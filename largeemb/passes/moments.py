"""The moments pass: one streamed read of each set in fixed segments.

Gives float64 moments (FD, the plots' PCA, the centre of all float32 work), a
content fingerprint, and the first unusable row if any. The per-segment NumPy
and its combine live in :mod:`largeemb.kernels.moments`; this module turns
them into tasks that read their own segments, merged in a fixed tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from largeemb.errors import ResumeMismatchError
from largeemb.io.checks import checked_moments
from largeemb.io.store import Source
from largeemb.kernels.moments import (
    Moments,
    SegmentCheck,
    fingerprint_of,
    merge_checks,
    segment_check,
    segment_digest,
    shifts,
)
from largeemb.kernels.plan import RowBlock, segments
from largeemb.run.graph import Graph, run, same


@dataclass
class SetMoments:
    """One set after the moments pass: its checked float64 moments and its content fingerprint."""

    moments: Moments
    fingerprint: str


@dataclass
class MomentsPass:
    """The moments pass: one :class:`SetMoments` per source (in order), and the
    fingerprint of the store that was only hashed (None: none was)."""

    sets: list[SetMoments] = field(default_factory=list)
    hashed: str | None = None


def _moment_task(source: Source, seg: RowBlock, shift, metric_shift, metric: str, unit: bool, shells) -> SegmentCheck:
    return segment_check(source.read(seg.start, seg.stop), seg.start, shift, metric_shift, metric, unit, shells)


def _digest_task(source: Source, seg: RowBlock) -> list[bytes]:
    return [segment_digest(source.read(seg.start, seg.stop))]


def moments_graph(g: Graph, source: Source, metric: str, role: str = "set", unit: bool = False, shells=None):
    """Key of the merged :class:`SegmentCheck` of one set.

    ``unit`` adds the second moment of unit rows (Vendi); ``shells`` (each
    row's shell, shell count) the moments of nested subsamples (FD∞).
    """
    shift, metric_shift, shells = g.share(list(shifts(source.read(0, 1)[0], metric)) + [shells])
    parts = [
        g.task("moments", _moment_task, source, seg, shift, metric_shift, metric, unit, shells)
        for seg in segments(source.rows)
    ]
    # Never loaded from checkpoints: this pass reads every row, and its
    # per-segment digests are what a resumed run is checked against.
    return g.task(f"moments-{role}-all", same, g.tree(parts, merge_checks, "moments-merge"))


def check_content(store, read) -> None:
    """A resumed run must compute on the data it started with, not only data of the same shape.

    ``read``: (source, role, per-segment digests) of this run's moments pass.
    The first run records them in its work directory before any later task
    is kept; a resumed one is refused at the first segment whose digest
    differs, so no task of the old data meets a task of the new.
    """
    if store is None:
        return
    recorded = store.content()
    for src, role, digests in read:
        before = recorded.get(role)
        if before is None:
            continue
        changed = next((seg for seg, a, b in zip(segments(src.rows), before, digests) if a != b.hex()), None)
        if changed is not None or len(before) != len(digests):
            rows = f"rows {changed.start}:{changed.stop}" if changed else "its length"
            raise ResumeMismatchError(
                f"the {role} input changed since the interrupted run ({rows} differ), "
                "so its finished tasks do not apply",
                f"in {src.name}",
                "pass --force without --resume to start again on the new data (or restore the old data)",
            )
    store.record_content({role: [d.hex() for d in digests] for _, role, digests in read})


def fingerprint(source: Source, digests: list[bytes]) -> str:
    return fingerprint_of(source.rows, source.dim, source.dtype, digests)


def moments_stage(
    sources_and_roles, metric: str, hashed: Source | None = None, unit=(), shells: dict | None = None
) -> MomentsPass:
    """One streamed pass per source: checked moments and content fingerprint of each.

    ``hashed``, a store checked before (a reference's), is only fingerprinted,
    in the same pass (``MomentsPass.hashed``). ``unit``: the roles
    whose unit moment is taken; ``shells`` (by role) as for :func:`moments_graph`.
    """
    g = Graph("moments")
    shells = shells or {}
    keys = [moments_graph(g, src, metric, role, role in unit, shells.get(role)) for src, role in sources_and_roles]
    if hashed is not None:
        digests = [g.task("digest", _digest_task, hashed, seg) for seg in segments(hashed.rows)]
        keys.append(g.tree(digests, list.__add__, "digest-merge"))
    results = run(g, keys, "moments")
    digests = [check.digests for check in results[: len(sources_and_roles)]]
    roles = list(sources_and_roles) + ([(hashed, "reference")] if hashed is not None else [])
    if hashed is not None:
        digests.append(results[-1])
    check_content(g.run.store, [(src, role, found) for (src, role), found in zip(roles, digests)])
    sets = [
        SetMoments(checked_moments(check, src, role, metric), fingerprint(src, check.digests))
        for check, (src, role) in zip(results, sources_and_roles)
    ]
    return MomentsPass(sets, fingerprint(hashed, results[-1]) if hashed is not None else None)
