"""The moments pass: one streamed read of each set in fixed segments.

Gives float64 moments (FD, the plots' PCA, the centre of all float32 work), a
content fingerprint, and the first unusable row if any. The per-segment NumPy
and its combine live in :mod:`largeemb.kernels.moments`; this module turns
them into tasks that read their own segments, merged in a fixed tree.
"""

from __future__ import annotations

from largeemb.io.checks import checked_moments
from largeemb.io.store import Source
from largeemb.kernels.moments import SegmentCheck, fingerprint_of, merge_checks, segment_check, segment_digest, shifts
from largeemb.kernels.plan import RowBlock, segments
from largeemb.run.graph import Graph, run, same


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
        g.task("moments", _moment_task, source, seg, shift, metric_shift, metric, unit, shells) for seg in segments(source.rows)
    ]
    return g.unit(f"{role}-all", same, g.tree(parts, merge_checks, "moments-merge"))


def fingerprint(source: Source, digests: list[bytes]) -> str:
    return fingerprint_of(source.rows, source.dim, source.dtype, digests)


def moments_stage(sources_and_roles, metric: str, hashed: Source | None = None, unit: bool = False, shells: dict | None = None):
    """One streamed pass per source: a list of (checked moments, content fingerprint).

    ``hashed``, a store checked before (a reference's), is only fingerprinted,
    in the same pass; its fingerprint is returned last. ``unit`` and
    ``shells`` (by role) as for :func:`moments_graph`.
    """
    g = Graph("moments")
    shells = shells or {}
    keys = [moments_graph(g, src, metric, role, unit, shells.get(role)) for src, role in sources_and_roles]
    if hashed is not None:
        digests = [g.task("digest", _digest_task, hashed, seg) for seg in segments(hashed.rows)]
        keys.append(g.tree(digests, list.__add__, "digest-merge"))
    results = run(g, keys, "moments")
    out = [
        (checked_moments(check, src, role, metric), fingerprint(src, check.digests))
        for check, (src, role) in zip(results, sources_and_roles)
    ]
    return out + ([fingerprint(hashed, results[-1])] if hashed is not None else [])
