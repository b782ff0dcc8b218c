"""Exact k-NN radii of one set, tile by tile.

Each block first finds its K best candidates inside itself (faiss), which
gives every row a float32 bound. Each upper-triangle tile (a < b) is then
computed once and serves both sides: only entries under a row's bound become
candidates, and each block keeps its K best by float32 distance. Finally the
kept candidates get exact float64 distances; a row's radius is exact when no
rejected neighbour can, within the proven float32 error, be nearer than it.
The rows where that cannot be shown are resolved by blocked float64 GEMMs
against every block of the set (:func:`resolve_block`, one task per block),
with exact differences only for the pairs near each row's threshold
(:func:`resolve_finish`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels import tiles as tiling
from largeemb.kernels.distance import EXACT_CHUNK, Block, copy_labels, sqdist32, sqdist_error_scale
from largeemb.kernels.screen import ScreenCounts, below, screened_tile
from largeemb.kernels.prune import MIN_SKIPPED, Partition

#: Candidates kept per row beyond k+1, so that the float32 order rarely needs
#: the float64 pass.
MARGIN = 4
#: A row with more candidates than this many times K in one tile keeps only
#: its best K from that tile (and every one tied with those within its band).
HEAVY_FACTOR = 16
#: Diagonal panels larger than this are split in two (faiss computes the whole
#: square of a diagonal panel, twice the symmetric half).
DIAGONAL_ROWS = 1024
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
    keeps K and offers are strictly below its cut (:meth:`Reach.of`).
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
    screen: ScreenCounts | None = None  # screened tile entries so far (set by the pass's tasks)

    @property
    def bound(self) -> np.ndarray:
        """Per-row float32 cut for new candidates."""
        return self.cut


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


def _cuts(d32: np.ndarray, K: int, k: int, band: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Per-row cut from sorted candidate rows (inf-padded): min(old, max(K-th, s + band))."""
    width = d32.shape[1]
    kth = d32[:, K - 1].astype(np.float64) if width >= K else np.full(len(d32), np.inf)
    s = d32[:, k].astype(np.float64) if width > k else np.full(len(d32), np.inf)
    return np.minimum(old, np.maximum(kth, s + band))


def diagonal(block: Block, K: int, k: int, band: np.ndarray) -> Neighbours:
    """Candidates of each row within its own block (itself included).

    faiss gives the K best. A row whose K-th lies within the cut (its
    (k+1)-th plus band) may have more tied candidates: such rows are
    recomputed against the whole block with one float32 GEMM and keep
    everything up to the cut (they have then seen every row: floor stays
    inf unless MAX_CANDIDATES drops some). Rows with band 0 (exact tiles)
    need no such recompute: their floor, the K-th, is not below their
    (k+1)-th, which is all :func:`finish` asks then.
    """
    import faiss

    centred = np.ascontiguousarray(block.centred)
    k_here = min(K, block.rows)
    d32, local = faiss.knn(centred, centred, k_here)
    floor = np.full(block.rows, np.inf, np.float32)
    if k_here < K:  # the whole block is listed: nothing was rejected
        pad = ((0, 0), (0, K - k_here))
        d32 = np.pad(d32, pad, constant_values=np.inf)
        local = np.pad(local, pad, constant_values=-1)
    elif block.rows > K:
        floor = d32[:, -1].copy()
    idx = np.where(local >= 0, local + block.start, -1)
    cut = _cuts(d32, K, k, band, np.full(block.rows, np.inf))
    if block.rows > K:
        # Saturated: the K-th is within the band of the (k+1)-th, so ties may lie beyond it.
        open_rows = np.flatnonzero((d32[:, K - 1].astype(np.float64) <= d32[:, k].astype(np.float64) + band) & (band > 0))
        if len(open_rows):
            dist = sqdist32(tiling.taken(block, open_rows), block.right())
            c = _rows_under(dist, np.full(len(open_rows), np.inf), K, k, band[open_rows])
            rows, d, i = c.rows, c.d32, c.idx + block.start
            width = max(K, int(np.bincount(rows, minlength=len(open_rows)).max()))
            d32 = np.pad(d32, ((0, 0), (0, width - K)), constant_values=np.inf)
            idx = np.pad(idx, ((0, 0), (0, width - K)), constant_values=-1)
            d32[open_rows], idx[open_rows], floor[open_rows] = np.inf, -1, np.inf
            order = np.lexsort((i, d, rows))
            rows, d, i = rows[order], d[order], i[order]
            rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
            d32[open_rows[rows], rank], idx[open_rows[rows], rank] = d, i
            np.minimum.at(floor, open_rows[c.floor_rows], c.floor)
            cut = _cuts(d32, K, k, band, np.full(block.rows, np.inf))
    return Neighbours(block.start, d32, idx, floor, block.sqnorm, cut, band, K, k)


def _rows_under(dist: np.ndarray, bound: np.ndarray, K: int, k: int, band: np.ndarray) -> Candidates:
    """Every row's entries of ``dist`` under min(bound, its own cut), its K best at least.

    The cut is computed from the row itself (its K-th and (k+1)-th, plus
    band); at most :func:`caps` are taken (the smallest, ties by column),
    and the smallest entry not taken is the row's floor.
    """
    n_rows, n_cols = dist.shape
    if n_cols <= K:
        rows, cols = np.nonzero(dist < bound[:, None])
        return Candidates(rows, cols, dist[rows, cols], np.empty(0, np.int64), np.empty(0, np.float32))
    part = np.partition(dist, (min(k, K - 1), K - 1), axis=1)
    kth, s = part[:, K - 1].astype(np.float64), part[:, min(k, K - 1)].astype(np.float64)
    cut = np.minimum(bound, np.maximum(kth, s + band))
    take = dist <= cut[:, None]
    take &= dist < bound[:, None]
    counts = take.sum(axis=1)
    floor_rows, floor = np.empty(0, np.int64), np.empty(0, np.float32)
    rest = np.where(take, np.inf, dist).min(axis=1)
    cap = caps(band, K)
    over = np.flatnonzero(counts > cap)
    if len(over):  # keep the best cap of such rows (all at once: with exact ties, most rows)
        order = np.argsort(dist[over], axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(n_cols)[None, :], axis=1)
        take[over] = rank < cap[over][:, None]
        first_dropped = np.take_along_axis(order, cap[over][:, None], axis=1)
        rest[over] = np.take_along_axis(dist[over], first_dropped, axis=1)[:, 0]
    lowered = np.flatnonzero(np.isfinite(rest))
    floor_rows, floor = lowered, rest[lowered].astype(np.float32)
    rows, cols = np.nonzero(take)
    return Candidates(rows, cols, dist[rows, cols], floor_rows, floor)


def _take(dist: np.ndarray, bound: np.ndarray, K: int, by_columns: bool, k: int, band: np.ndarray, open_entries=None) -> Candidates:
    """Entries of ``dist`` under each own row's bound.

    Own rows are the rows of ``dist``, or its columns when ``by_columns``
    (the lower side of a symmetric tile, read without transposing). A row
    with very many (a loose early bound) takes only its own cut's worth
    (:func:`_rows_under`), and the rest lower its floor. ``open_entries``:
    a screened tile's finite entries, the only ones that can be under a bound.
    """
    n_rows, n_cols = dist.shape
    flat = below(dist, open_entries, bound, by_columns)
    d32 = dist.ravel()[flat]
    first, second = np.divmod(flat, n_cols)
    own, other = (second, first) if by_columns else (first, second)
    own_n = n_cols if by_columns else n_rows
    floor_rows = np.empty(0, np.int64)
    floor = np.empty(0, np.float32)
    heavy = np.flatnonzero(np.bincount(own, minlength=own_n) > HEAVY_FACTOR * K)
    if len(heavy):
        keep = ~np.isin(own, heavy)
        own, other, d32 = own[keep], other[keep], d32[keep]
        heavy_dist = dist[:, heavy].T if by_columns else dist[heavy]
        c = _rows_under(heavy_dist, bound[heavy], K, k, band[heavy])
        floor_rows, floor = heavy[c.floor_rows], c.floor
        own = np.concatenate([own, heavy[c.rows]])
        other = np.concatenate([other, c.idx])
        d32 = np.concatenate([d32, c.d32])
    return Candidates(own, other, d32, floor_rows, floor)


def off_diagonal(a: Block, b_right: np.ndarray, nb_a: "Reach", nb_b: "Reach", b_rounded=None):
    """One tile a × b (disjoint rows; b given as its ``right()`` operand, and its rows
    rounded to bfloat16 when screened tiles have them), computed once.

    Returns the candidates for a's rows and for b's, with tile-local row and
    neighbour indices. Entries at or above both sides' cuts are never taken:
    they may be screened out (+inf, :func:`largeemb.kernels.screen.screened_tile`).
    """
    dist, open_entries = screened_tile(a, b_right, nb_a.cut, nb_b.cut, b_rounded)
    return (
        _take(dist, nb_a.cut, nb_a.K, False, nb_a.k, nb_a.band, open_entries),
        _take(dist, nb_b.cut, nb_b.K, True, nb_b.k, nb_b.band, open_entries),
    )


@dataclass
class Reach:
    """What a tile needs of some rows' candidate state: their cuts and bands."""

    cut: np.ndarray
    band: np.ndarray
    K: int
    k: int

    @classmethod
    def of(cls, nb: Neighbours) -> "Reach":
        """The cuts as float32 values rounded up (tiles compare float32 to them): offering a
        little more changes nothing, since merge drops what lies above the float64 cut.
        Rows with band 0 (exact tiles, :func:`caps`) take only what lies strictly below
        their cut, which is then a float32 tile value itself: not listed still means
        at or above the cut."""
        cut32 = nb.cut.astype(np.float32)
        return cls(np.where(nb.band > 0, np.nextafter(cut32, np.float32(np.inf)), cut32), nb.band, nb.K, nb.k)

    def __getitem__(self, rows) -> "Reach":
        return Reach(self.cut[rows], self.band[rows], self.K, self.k)

    @property
    def bound(self) -> np.ndarray:
        return self.cut


def _joined(parts: list[Candidates]) -> Candidates:
    return Candidates(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("rows", "idx", "d32", "floor_rows", "floor")))


def within(block: Block, K: int, k: int, panel_rows: int, partition: Partition | None = None, band=None, kappa=None) -> Neighbours:
    """Each row's candidates inside its own block (see :class:`Neighbours`).

    The block is cut into panels (or, with a partition, groups): faiss finds
    the candidates inside each part, and each part meets the parts after it
    once, serving both (the symmetric half of the block's distance matrix).
    With groups, a part's tile runs only on the rows that can offer the other
    side a candidate or take one from it (:func:`_needed`). ``band`` (per
    row) defaults to :func:`band_of` the block with ``kappa`` (default the
    float32 error scale; 0 for exact tiles).
    """
    if band is None:
        band = band_of(block.sqnorm, sqdist_error_scale(block.dim) if kappa is None else kappa)
    cut = tiling.panels(block, panel_rows) if partition is None else tiling.grouped(block, panel_rows, partition)
    parts = [tiling.taken(block, rows) for rows in cut.rows]
    # faiss computes a diagonal part's full square: halve large ones first.
    local = [
        within(p, K, k, panel_rows // 2, band=band[rows]) if p.rows > DIAGONAL_ROWS else diagonal(p, K, k, band[rows])
        for p, rows in zip(parts, cut.rows)
    ]
    width = max(nb.d32.shape[1] for nb in local)
    d32, idx = np.full((block.rows, width), np.inf, np.float32), np.full((block.rows, width), -1, np.int64)
    floor, bound = np.empty(block.rows, np.float32), np.empty(block.rows)
    for nb, rows in zip(local, cut.rows):  # parts start at 0: their ids are part rows
        w = nb.d32.shape[1]
        d32[rows, :w], floor[rows], bound[rows] = nb.d32, nb.floor, nb.cut
        idx[rows, :w] = np.where(nb.idx >= 0, block.start + rows[np.maximum(nb.idx, 0)], -1)
    if cut.groups is None:
        pairing = tiling.Pairing.panels(cut, cut, panel_rows)
    else:
        pairing = tiling.Pairing.of(cut, cut, _needed(block, block, bound, bound), panel_rows)
    tiles = pairing.tiles(upper=True)
    if cut.groups is not None:
        sizes = np.array([len(rows) for rows in cut.rows])
        if tiling.tiled_share(tiles, (block.rows**2 - (sizes**2).sum()) / 2) > 1 - MIN_SKIPPED:
            return within(block, K, k, panel_rows, band=band)
    state = Neighbours(block.start, d32, idx, floor, block.sqnorm, bound, band, K, k)
    reach = Reach.of(state)
    right = block.right()
    offered = []
    for _, part, rows_i, rows_j in tiling.parted(block, tiles):
        rounded_j = None if block.rounded is None else tiling.taken_rows(block.rounded, rows_j)
        for_i, for_j = off_diagonal(part, tiling.taken_rows(right, rows_j), reach[rows_i], reach[rows_j], rounded_j)
        offered += [_mapped(for_i, rows_i, block.start + rows_j), _mapped(for_j, rows_j, block.start + rows_i)]
    return merge(state, offered)


def _needed(a: Block, b: Block, bound_a, bound_b):
    """Which rows of blocks a and b can offer a part of the other a candidate, or take one from it.

    A row of a is left out against part j of b when every float32 distance
    to j's rows is at or above both the row's bound and the largest bound in
    j: such entries would be rejected as candidates anyway (a float32
    distance is at least the squared lower bound minus its error bound).
    Returns ``needed`` for :meth:`largeemb.tiling.Pairing.of`.
    """
    kappa = sqdist_error_scale(a.dim)

    def one_side(other_cut, own: Block, other: Block, far, bound_own, bound_other):
        least = far**2 - kappa * (own.sqnorm[:, None] + other_cut.maxima(other.sqnorm)[None, :])
        return (least < bound_own[:, None]) | (least < other_cut.maxima(bound_other)[None, :])

    def needed(ca, cb, far_a, far_b):
        return one_side(cb, a, b, far_a, bound_a, bound_b), one_side(ca, b, a, far_b, bound_b, bound_a)

    return needed


def between(a: Block, b: Block, reach_a: Reach, reach_b: Reach, panel_rows: int, partition: Partition | None = None):
    """Candidates that block a (rows before b) and block b offer each other, tile by tile.

    ``reach_a``/``reach_b``: the blocks' current cuts (:meth:`Reach.of` their
    :class:`Neighbours`). With a partition, each group's tile runs only on
    the rows that can offer the other side a candidate or take one from it
    (:func:`_needed`, :func:`largeemb.tiling.cut_pair`).
    """
    _, tiles = tiling.cut_pair(a, b, panel_rows, partition, _needed(a, b, reach_a.cut, reach_b.cut))
    for_a, for_b = [_no_candidates()], [_no_candidates()]
    right_b = b.right()
    for _, part, rows_a, rows_b in tiling.parted(a, tiles):
        rounded_b = None if b.rounded is None else tiling.taken_rows(b.rounded, rows_b)
        x, y = off_diagonal(part, tiling.taken_rows(right_b, rows_b), reach_a[rows_a], reach_b[rows_b], rounded_b)
        for_a.append(_mapped(x, rows_a, b.start + rows_b))
        for_b.append(_mapped(y, rows_b, a.start + rows_a))
    return _joined(for_a), _joined(for_b)


def _mapped(c: Candidates, own_rows: np.ndarray | None, other_ids: np.ndarray) -> Candidates:
    """Candidates of a part (start 0) with rows in the block's rows (None: kept) and global ids."""
    if own_rows is None:
        return Candidates(c.rows, other_ids[c.idx], c.d32, c.floor_rows, c.floor)
    return Candidates(own_rows[c.rows], other_ids[c.idx], c.d32, own_rows[c.floor_rows], c.floor)


def _no_candidates() -> Candidates:
    empty = np.empty(0, np.int64)
    return Candidates(empty, empty, np.empty(0, np.float32), empty, np.empty(0, np.float32))


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
    touched = np.unique(offered)
    W = nb.d32.shape[1]
    old_d32, old_idx = nb.d32[touched].ravel(), nb.idx[touched].ravel()
    real = old_idx >= 0
    rows = np.concatenate([np.repeat(np.arange(len(touched)), W)[real], np.searchsorted(touched, offered)])
    d32 = np.concatenate([old_d32[real]] + [c.d32 for c in batches])
    idx = np.concatenate([old_idx[real]] + [c.idx for c in batches])
    # Sort on (row, distance, index); row and distance share one 64-bit key.
    # The index matters only among equal keys, which are rare: one sort, and
    # a second only when some key repeats.
    key = (rows.astype(np.uint64) << np.uint64(32)) | _ordered_bits(d32)
    order = np.argsort(key, kind="stable")
    if (key[order[1:]] == key[order[:-1]]).any():
        order = np.lexsort((idx, key))
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


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """float32 values as unsigned integers in the same order (sign-magnitude flip)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    flipped = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return flipped.astype(np.uint64)


def finish(nb: Neighbours, own: np.ndarray, take_neighbours, ks: tuple[int, ...], max_sqnorm: float, kappa: float):
    """Exact radii for each k, and the local rows whose exactness could not be shown.

    ``own`` holds the block's float64 metric rows; ``take_neighbours(global
    rows)`` gives float64 metric rows. With s the (k+1)-th smallest float32
    value of a row and e its error bound, candidates below s - 2e are surely
    among the k+1 nearest and those above s + 2e surely not, so only the few
    within s ± 2e get a float64 distance: the radius is the right one of those.
    Identical rows cost once there: copies inside the block are at exactly 0
    (:func:`~largeemb.kernels.distance.copy_labels` finds them),
    and one pair per (own row's copy group, neighbour) is computed.
    Returns ``(radii (rows, len(ks)), unproven local rows, float64 pairs computed)``.

    With exact tiles (kappa 0, :meth:`largeemb.kernels.moments.Lattice.exact`)
    the sorted listed values are the brute force's squares, so the radius is
    √ of the (k+1)-th, and it is proven when nothing unlisted can lie
    strictly below it: (k+1)-th <= min(floor, cut). Ties at that value,
    listed or not, leave the (k+1)-th order statistic unchanged: no float64.
    """
    if kappa == 0.0:
        ranked = np.sort(nb.d32, axis=1).astype(np.float64)
        top = ranked[:, list(ks)]
        proven = top.max(axis=1) <= np.minimum(nb.floor, nb.bound).astype(np.float64)
        return np.sqrt(top), np.flatnonzero(~proven), 0
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
    d64 = np.full(nb.idx.shape, np.inf)
    own_rows, slots = np.nonzero(need)
    neighbours = nb.idx[own_rows, slots]
    label = copy_labels(own)  # identical own rows share a label
    # Copies inside the block are at exactly 0; of the rest, one pair per
    # (own row's label, neighbour) is computed: identical rows have identical differences.
    local = neighbours - nb.start
    copy = (local >= 0) & (local < rows_n)
    copy[copy] = label[own_rows[copy]] == label[local[copy]]
    d64[own_rows[copy], slots[copy]] = 0.0
    rest = np.flatnonzero(~copy)
    keys = np.unique(np.stack([label[own_rows[rest]], neighbours[rest]]), axis=1, return_index=True, return_inverse=True)
    first, back = rest[keys[1]], keys[2].ravel()
    exact = np.empty(len(first))
    for lo in range(0, len(first), EXACT_CHUNK):
        pick = first[lo : lo + EXACT_CHUNK]
        diff = take_neighbours(neighbours[pick]) - own[own_rows[pick]]
        exact[lo : lo + EXACT_CHUNK] = np.sqrt((diff * diff).sum(axis=1))
    d64[own_rows[rest], slots[rest]] = exact[back]
    radii = np.empty((rows_n, len(ks)))
    for q, k in enumerate(ks):
        in_window = np.sort(np.where(windows[q], d64, np.inf), axis=1)
        radii[:, q] = in_window[np.arange(rows_n), k - below[q]]
    widest = radii.max(axis=1)
    # Entries never listed were at or above the row's bound when they were
    # met, and bounds only fall: so at or above the last bound, or the floor.
    lowest_rejected = np.minimum(nb.floor, nb.bound).astype(np.float64) - eps[:, 0]
    proven = (widest * widest <= lowest_rejected) | (widest == 0.0)
    return radii, np.flatnonzero(~proven), len(first)


# -- float64 resolution of unproven rows ---------------------------------------

#: Error bounds of the float64 GEMM formula are widened this much (they cost
#: only a few more exact differences near each threshold).
RESOLVE_SLACK = 4.0


@dataclass
class Shortlist64:
    """Pairs (unproven row, set row) that can still be among a row's ``width`` nearest.

    ``rows`` index the unproven rows (0..u-1), ``cols`` are global rows of
    the set; ``lo``/``hi`` bound the squared distance a float64 brute force
    computes for the pair.
    """

    rows: np.ndarray
    cols: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def merged(self, other: "Shortlist64", width: int) -> "Shortlist64":
        joined = Shortlist64(*(np.concatenate([getattr(self, f), getattr(other, f)]) for f in ("rows", "cols", "lo", "hi")))
        return joined.best(width)

    def best(self, width: int) -> "Shortlist64":
        """Drop pairs that cannot be among their row's ``width`` nearest.

        Proof: let T be a row's width-th smallest ``hi``. At least ``width``
        of its pairs have a brute-force value <= T, so a pair with lo > T is
        strictly above the width-th order statistic, and dropping it leaves
        the first ``width`` order statistics (ties included) unchanged. A
        union's T is at most each part's, so what a part drops the union
        would drop too: filtering per block and again at every merge is exact.
        """
        if not len(self.rows):
            return self
        order = np.lexsort((self.hi, self.rows))
        rows, hi = self.rows[order], self.hi[order]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        counts = np.diff(np.r_[starts, len(rows)])
        cut = np.full(len(starts), np.inf)
        full = counts >= width
        cut[full] = hi[starts[full] + width - 1]
        keep = self.lo[order] <= np.repeat(cut, counts)
        kept = order[keep]
        return Shortlist64(self.rows[kept], self.cols[kept], self.lo[kept], self.hi[kept])

    @classmethod
    def empty(cls) -> "Shortlist64":
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0))


def resolve_block(own: np.ndarray, block: np.ndarray, start: int, width: int, kappa64: float, panel_rows: int) -> Shortlist64:
    """Candidates of unproven rows among one block of the set, by float64 GEMM.

    ``own`` (u, dim) and ``block`` (b, dim) are float64 metric rows minus the
    same centre; ``start`` is the block's first global row. Each panel of the
    block is one float64 GEMM ``|x'|^2 + |y'|^2 - 2 x'.y'``, whose error is
    below ``RESOLVE_SLACK κ64 (|x'|^2 + |y'|^2)`` (:func:`largeemb.distance.sqdist_error_scale`
    with the float64 unit roundoff, which also covers the brute force's own
    rounding, at most 2γ(|x'|^2 + |y'|^2)); only pairs the bound cannot rule
    out are kept (:meth:`Shortlist64.best`), for exact differences later.
    """
    own_sq = np.einsum("ij,ij->i", own, own)
    parts = [Shortlist64.empty()]
    for lo in range(0, len(block), panel_rows):
        panel = block[lo : lo + panel_rows]
        sq = np.einsum("ij,ij->i", panel, panel)
        d2 = own @ panel.T
        d2 *= -2.0
        d2 += own_sq[:, None]
        d2 += sq[None, :]
        # One bound per row covering the whole panel (as the float32 tiles do).
        eps = RESOLVE_SLACK * kappa64 * (own_sq + sq.max())
        if panel.shape[0] > width:
            cut = np.partition(d2, width - 1, axis=1)[:, width - 1] + eps
        else:
            cut = np.full(len(own), np.inf)
        rows, cols = np.nonzero(d2 <= (cut + eps)[:, None])
        d = d2[rows, cols]
        parts.append(Shortlist64(rows, cols + start + lo, d - eps[rows], d + eps[rows]).best(width))
    out = parts[0]
    for part in parts[1:]:
        out = out.merged(part, width)
    return out


def resolve_finish(pairs: Shortlist64, own: np.ndarray, take_set, rows: int, ks: tuple[int, ...]) -> np.ndarray:
    """Exact radii (rows, len(ks)) of the unproven rows from their float64 shortlist.

    ``own`` holds their float64 metric rows, ``take_set(global rows)`` gives
    the set's. Every kept pair gets the brute force's own float64 distance;
    the self pair (distance 0) is among them, so index k of a row's sorted
    distances is its k-th nearest *other* row, copies counting at 0.
    """
    from largeemb.kernels.distance import exact_pairs

    # The set rows are read once (a tie-heavy shortlist names each many times).
    wanted, where = np.unique(pairs.cols, return_inverse=True)
    gathered = take_set(wanted)
    exact = exact_pairs(lambda r: own[r], lambda c: gathered[c], pairs.rows, where.ravel())
    order = np.lexsort((exact, pairs.rows))
    r, d = pairs.rows[order], exact[order]
    first = np.searchsorted(r, np.arange(rows))
    out = np.empty((rows, len(ks)))
    for q, k in enumerate(ks):
        out[:, q] = d[first + k]
    return out
