"""A block's k-NN candidate lists (:class:`Neighbours`): folding in what tiles offer
(:func:`merge`, with its invariant), and exact radii from them (:func:`finish`).

The lists hold, per row, its K best candidates by float32 distance and every
further one within an adaptive band of its (k+1)-th (ties and near-ties);
what a row never listed lies at or above its floor or cut. :func:`finish`
proves each row's radius from that, or hands the row to the float64
resolution (:mod:`largeemb.kernels.resolve`). The tiles that offer candidates
are :mod:`largeemb.kernels.knn`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels.distance import CACHED_PAIRS, EXACT_CHUNK, copy_labels

#: Candidates kept per row beyond k+1, so that the float32 order rarely needs
#: the float64 pass.
MARGIN = 4
#: A row keeps every candidate within this many float32 error bounds of its
#: (k+1)-th smallest distance (ties and near-ties), beyond its K best.
BAND = 8.0
#: ... but never more than this many; beyond, the first dropped lowers the
#: floor (the row may then go to the float64 pass).
MAX_CANDIDATES = 512


def caps(band: np.ndarray, K: int) -> np.ndarray:
    """Candidates a row may keep: MAX_CANDIDATES, or K where its band is 0.

    A band is 0 when the tiles are exact (:meth:`largeemb.kernels.moments.Lattice.exact`,
    kappa 0). Such a row settles its ties by counting: its radius is its
    (k+1)-th listed value s, proven once nothing unlisted can lie strictly
    below s (:func:`finish`); candidates tied with s add nothing, so a row
    keeps K and offers are strictly below its cut (:meth:`largeemb.kernels.knn.Reach.of`).
    """
    return np.where(band > 0, MAX_CANDIDATES, K)


def candidates_per_row(max_k: int, rows: int) -> int:
    return min(max_k + 1 + MARGIN, rows)


@dataclass
class Neighbours:
    """The candidates (by float32 distance) of each row of one block.

    Row i lists, in increasing float32 order, its K best and every further
    candidate with float32 distance <= ``cut[i]``, where
    ``cut = min(earlier cut, max(K-th kept, s + band))`` and s is the
    (k+1)-th kept distance (k the largest k): an adaptive margin that keeps
    whole groups of tied candidates. Every neighbour not listed has float32
    squared distance >= ``floor`` or >= ``cut``, whichever is lower.
    Missing entries (short rows, padding) have index -1 and distance inf;
    a row with fewer than K real entries has seen every row (cut inf).
    """

    start: int
    d32: np.ndarray  # (rows, width >= K) float32 squared distances, sorted per row
    idx: np.ndarray  # (rows, width) int64 global row indices
    floor: np.ndarray  # (rows,) float32
    sqnorm: np.ndarray  # (rows,) float64 centred squared norms
    cut: np.ndarray  # (rows,) float64: offer new candidates below this
    band: np.ndarray  # (rows,) float64: BAND float32 error bounds of the row
    K: int
    k: int


@dataclass
class Candidates:
    """Sparse candidates that one tile offers the rows of one block."""

    rows: np.ndarray  # local row index within the block
    idx: np.ndarray  # global neighbour index
    d32: np.ndarray
    floor_rows: np.ndarray  # rows whose floor this tile lowered
    floor: np.ndarray


def band_of(sqnorm: np.ndarray, kappa: float) -> np.ndarray:
    """Per-row adaptive margin: BAND error bounds against the block's largest norm.

    Only how many candidates are kept depends on it, never an answer; the
    2x covers other blocks with larger norms (finish uses the set's largest).
    """
    return BAND * kappa * (sqnorm + 2.0 * float(sqnorm.max(initial=0.0)))


def merge(nb: Neighbours, batches: list[Candidates]) -> Neighbours:
    """Fold candidate batches into a block's lists; what drops out lowers the floor.

    Only rows that were offered something are re-sorted, so a late round with
    few candidates costs little. A row keeps its candidates up to its new
    cut, min(old cut, max(K-th, (k+1)-th + band)), at most :func:`caps`.
    Invariant kept (proof): offered candidates lie below the old cut, so
    everything not listed lay at or above the old cut when it was met, or was
    dropped here above the new cut (which is at most the old one), or by the
    cap (which lowers the floor): not listed means float32 distance >=
    min(floor, cut), and cuts never grow.
    """
    floor = nb.floor.copy()
    for c in batches:
        np.minimum.at(floor, c.floor_rows, c.floor)
    offered = np.concatenate([c.rows for c in batches]) if batches else np.empty(0, np.int64)
    if not len(offered):
        return Neighbours(nb.start, nb.d32, nb.idx, floor, nb.sqnorm, nb.cut, nb.band, nb.K, nb.k)
    # The rows offered something, ascending, and each offer's place among them: by counting (the block's
    # rows are few), not by sorting every offer.
    was_offered = np.bincount(offered, minlength=nb.d32.shape[0]) > 0
    touched = np.flatnonzero(was_offered)
    place = np.cumsum(was_offered) - 1
    W = nb.d32.shape[1]
    old_d32, old_idx = nb.d32[touched].ravel(), nb.idx[touched].ravel()
    real = old_idx >= 0
    rows = np.concatenate([np.repeat(np.arange(len(touched)), W)[real], place[offered]])
    d32 = np.concatenate([old_d32[real]] + [c.d32 for c in batches])
    idx = np.concatenate([old_idx[real]] + [c.idx for c in batches])
    # Sort on (row, distance, index); row and distance share one 64-bit key.
    # The index matters only among equal keys, which are rare: one sort, and
    # then only the runs of repeated keys sorted by index (with long lists
    # some key nearly always repeats; a lexsort of everything cost 12% of a run).
    key = (rows.astype(np.uint64) << np.uint64(32)) | _ordered_bits(d32)
    order = _by_key_then_index(key, idx)
    rows, d32, idx = rows[order], d32[order], idx[order]
    first = np.searchsorted(rows, np.arange(len(touched)))
    ends = np.r_[first[1:], len(rows)]
    counts = ends - first
    rank = np.arange(len(rows)) - first[rows]
    K, k = nb.K, nb.k
    kth = np.where(counts >= K, d32[np.minimum(first + K - 1, len(rows) - 1)], np.inf).astype(np.float64)
    s = np.where(counts > k, d32[np.minimum(first + k, len(rows) - 1)], np.inf).astype(np.float64)
    cut = np.minimum(nb.cut[touched], np.maximum(kth, s + nb.band[touched]))
    cap = caps(nb.band[touched], K)
    kept = (d32 <= cut[rows]) & (rank < cap[rows])
    # Rows cut by the cap lower the floor with their first dropped candidate.
    capped = np.flatnonzero((counts > cap) & (d32[np.minimum(first + cap, len(rows) - 1)] <= cut))
    floor[touched[capped]] = np.minimum(floor[touched[capped]], d32[first[capped] + cap[capped]])
    n_kept = np.bincount(rows[kept], minlength=len(touched))
    untouched = np.ones(nb.d32.shape[0], bool)
    untouched[touched] = False
    longest = int((nb.idx[untouched] >= 0).sum(axis=1).max(initial=0))
    width = max(longest, int(n_kept.max()), K)
    new_d32 = np.full((nb.d32.shape[0], width), np.inf, np.float32)
    new_idx = np.full((nb.d32.shape[0], width), -1, np.int64)
    new_d32[:, : min(W, width)], new_idx[:, : min(W, width)] = nb.d32[:, :width], nb.idx[:, :width]
    new_d32[touched], new_idx[touched] = np.inf, -1
    new_d32[touched[rows[kept]], rank[kept]] = d32[kept]
    new_idx[touched[rows[kept]], rank[kept]] = idx[kept]
    new_cut = nb.cut.copy()
    new_cut[touched] = cut
    return Neighbours(nb.start, new_d32, new_idx, floor, nb.sqnorm, new_cut, nb.band, K, k)


def _by_key_then_index(key: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """An order of ``np.lexsort((idx, key))``: a sort on ``key``, then each run of equal keys (contiguous
    once sorted) re-sorted by ``idx``. Entries whose key and index both tie are the same entry (a row,
    a distance's bits, a candidate), so no stable sort is needed: NumPy's unstable one is SIMD and
    2.5 times faster on 64-bit keys."""
    order = np.argsort(key)
    repeats = key[order[1:]] == key[order[:-1]]
    if repeats.any():
        tied = np.zeros(len(order), bool)
        tied[1:] |= repeats
        tied[:-1] |= repeats
        at = np.flatnonzero(tied)
        sub = order[at]
        order[at] = sub[np.lexsort((idx[sub], key[sub]))]  # key[sub] is sorted: the runs stay where they are
    return order


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """float32 values as unsigned integers in the same order (sign-magnitude flip)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    flipped = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return flipped.astype(np.uint64)


def finish(nb: Neighbours, own: np.ndarray, take_neighbours, ks: tuple[int, ...], max_sqnorm: float, kappa: float):
    """Exact radii for each k, and the local rows whose exactness could not be shown.

    ``own`` holds the block's metric rows; ``take_neighbours(global rows)``
    gives metric rows of the same dtype: float64, or float32 rows as read
    (:func:`~largeemb.kernels.distance.exact_rows`; differences are taken in
    float64 either way, :func:`listed_exact`). With s the (k+1)-th smallest float32
    value of a row and e its error bound, candidates below s - 2e are surely
    among the k+1 nearest and those above s + 2e surely not, so only the few
    within s ± 2e get a float64 distance: the radius is the right one of those.
    Identical rows cost once there: copies inside the block are at exactly 0
    (:func:`~largeemb.kernels.distance.copy_labels` finds them),
    and one pair per (own row's copy group, neighbour) is computed.
    Returns ``(radii (rows, len(ks)), unproven local rows, float64 pairs computed, the float64 distances
    (rows, width) of the listed rows it computed, inf elsewhere; None with exact tiles)``: the part radii
    (:func:`largeemb.kernels.parts.from_listed`) reuse them.

    With exact tiles (kappa 0, :meth:`largeemb.kernels.moments.Lattice.exact`)
    the sorted listed values are the brute force's squares, so the radius is
    √ of the (k+1)-th, and it is proven when nothing unlisted can lie
    strictly below it: (k+1)-th <= min(floor, cut). Ties at that value,
    listed or not, leave the (k+1)-th order statistic unchanged: no float64.
    """
    if kappa == 0.0:
        ranked = np.sort(nb.d32, axis=1).astype(np.float64)
        top = ranked[:, list(ks)]
        proven = top.max(axis=1) <= np.minimum(nb.floor, nb.cut).astype(np.float64)
        return np.sqrt(top), np.flatnonzero(~proven), 0, None
    rows_n = nb.idx.shape[0]
    eps = (kappa * (nb.sqnorm + max_sqnorm))[:, None]
    d32 = nb.d32.astype(np.float64)
    ranked = np.sort(d32, axis=1)
    windows, below = [], []
    for k in ks:
        at = ranked[:, k : k + 1]
        windows.append((np.abs(d32 - at) <= 2 * eps) & (nb.idx >= 0))
        below.append((d32 < at - 2 * eps).sum(axis=1))
    need = np.logical_or.reduce(windows)
    d64, computed = listed_exact(nb.start, nb.idx, own, take_neighbours, need)
    radii = np.empty((rows_n, len(ks)))
    for q, k in enumerate(ks):
        in_window = np.sort(np.where(windows[q], d64, np.inf), axis=1)
        radii[:, q] = in_window[np.arange(rows_n), k - below[q]]
    widest = radii.max(axis=1)
    # Entries never listed were at or above the row's bound when they were
    # met, and bounds only fall: so at or above the last bound, or the floor.
    lowest_rejected = np.minimum(nb.floor, nb.cut).astype(np.float64) - eps[:, 0]
    proven = (widest * widest <= lowest_rejected) | (widest == 0.0)
    return radii, np.flatnonzero(~proven), computed, d64


def listed_exact(start: int, idx: np.ndarray, own: np.ndarray, take_neighbours, need: np.ndarray):
    """float64 distances of the listed rows ``idx`` (global; a block's from ``start``) that ``need`` marks
    (inf elsewhere), and how many pairs that computed. ``own`` and ``take_neighbours``' rows share a dtype
    (:func:`finish`).

    Copies inside the block are at exactly 0 (:func:`~largeemb.kernels.distance.copy_labels`); of the rest,
    one pair per (own row's copy group, neighbour) is computed: identical rows have identical differences.
    """
    rows_n = idx.shape[0]
    d64 = np.full(idx.shape, np.inf)
    own_rows, slots = np.nonzero(need)
    neighbours = idx[own_rows, slots]
    label = copy_labels(own)  # identical own rows share a label
    local = neighbours - start
    copy = (local >= 0) & (local < rows_n)
    copy[copy] = label[own_rows[copy]] == label[local[copy]]
    d64[own_rows[copy], slots[copy]] = 0.0
    rest = np.flatnonzero(~copy)
    # One int64 key per (label, neighbour): a 1-d unique (4x faster than unique over columns).
    pair_key = label[own_rows[rest]].astype(np.int64) * (int(neighbours.max(initial=0)) + 1) + neighbours[rest]
    _, first, back = np.unique(pair_key, return_index=True, return_inverse=True)
    first, back = rest[first], back.ravel()
    by_neighbour = np.argsort(neighbours[first], kind="stable")  # each chunk reads fewer rows, each once
    first, back = first[by_neighbour], np.argsort(by_neighbour)[back]
    exact = np.empty(len(first))
    # Buffers reused by every chunk: no allocation per chunk. float64 own rows are gathered into diff
    # itself (a third float64 buffer would leave the cache).
    diff = np.empty((min(CACHED_PAIRS, len(first)), own.shape[1]))
    wide = own.dtype == np.float64
    t_buffer, o_buffer = (np.empty_like(diff), diff) if wide else np.empty((2, *diff.shape), own.dtype)
    for lo in range(0, len(first), EXACT_CHUNK):
        pick = first[lo : lo + EXACT_CHUNK]
        # A neighbour serves several own rows: each is read (and made metric rows) once per chunk.
        wanted, where = np.unique(neighbours[pick], return_inverse=True)
        theirs = take_neighbours(wanted)
        for at in range(0, len(pick), CACHED_PAIRS):  # small enough to stay in cache: twice as fast here
            some = pick[at : at + CACHED_PAIRS]
            d, t, o = diff[: len(some)], t_buffer[: len(some)], o_buffer[: len(some)]
            # theirs - own, squared, summed per row: the very operations (and sum order) of a brute force.
            np.take(theirs, where.ravel()[at : at + CACHED_PAIRS], axis=0, out=t)
            np.take(own, own_rows[some], axis=0, out=o)
            np.subtract(t, o, out=d, dtype=np.float64)
            np.multiply(d, d, out=d)
            np.sqrt(d.sum(axis=1), out=exact[lo + at : lo + at + len(some)])
    d64[own_rows[rest], slots[rest]] = exact[back]
    return d64, len(first)
