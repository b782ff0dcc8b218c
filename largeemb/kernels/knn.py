"""The self pass's tiles: k-NN candidates of one block, and of one block pair.

Each block first finds its K best candidates inside itself (faiss), which
gives every row a float32 bound. Each upper-triangle tile (a < b) is then
computed once and serves both sides: only entries under a row's bound become
candidates, and each block keeps its K best by float32 distance in its
:class:`~largeemb.kernels.neighbours.Neighbours` (merged there; exact radii
from them: :func:`~largeemb.kernels.neighbours.finish`). Tiles are computed
by the task's tile strategy (:mod:`largeemb.kernels.screen`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from largeemb.kernels import tiles as tiling
from largeemb.kernels.distance import Block, sqdist32, sqdist_error_scale
from largeemb.kernels.neighbours import Candidates, Neighbours, band_of, caps, merge
from largeemb.kernels.prune import Partition
from largeemb.kernels.screen import FLOAT32, TileStrategy, below

#: A row with more candidates than this many times K in one tile keeps only
#: its best K from that tile (and every one tied with those within its band).
HEAVY_FACTOR = 16
#: Diagonal panels larger than this are split in two (faiss computes the whole
#: square of a diagonal panel, twice the symmetric half).
DIAGONAL_ROWS = 1024


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
        open_rows = np.flatnonzero(
            (d32[:, K - 1].astype(np.float64) <= d32[:, k].astype(np.float64) + band) & (band > 0)
        )
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
    n_cols = dist.shape[1]
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


def _take(
    dist: np.ndarray, bound: np.ndarray, K: int, by_columns: bool, k: int, band: np.ndarray, open_entries=None
) -> Candidates:
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


def off_diagonal(
    strategy: TileStrategy, a: Block, b_right: np.ndarray, nb_a: Reach, nb_b: Reach, a_rows=None, b_rows=None
):
    """One tile a × b (disjoint rows; b given as its ``right()`` operand), computed once by ``strategy``
    (``a_rows``/``b_rows``: the (block, block-local rows) each operand was taken from).

    Returns the candidates for a's rows and for b's, with tile-local row and
    neighbour indices. Entries at or above both sides' cuts are never taken:
    they may be screened out (+inf, :meth:`largeemb.kernels.screen.ScreenedTiles.tile`).
    """
    dist, open_entries = strategy.tile(a, b_right, nb_a.cut, nb_b.cut, a_rows, b_rows)
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
    def of(cls, nb: Neighbours) -> Reach:
        """The cuts as float32 values rounded up (tiles compare float32 to them): offering a
        little more changes nothing, since merge drops what lies above the float64 cut.
        Rows with band 0 (exact tiles, :func:`caps`) take only what lies strictly below
        their cut, which is then a float32 tile value itself: not listed still means
        at or above the cut."""
        cut32 = nb.cut.astype(np.float32)
        return cls(np.where(nb.band > 0, np.nextafter(cut32, np.float32(np.inf)), cut32), nb.band, nb.K, nb.k)

    def __getitem__(self, rows) -> Reach:
        return Reach(self.cut[rows], self.band[rows], self.K, self.k)


def _joined(parts: list[Candidates]) -> Candidates:
    return Candidates(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("rows", "idx", "d32", "floor_rows", "floor"))
    )


def within(
    block: Block, K: int, k: int, panel_rows: int, partition: Partition | None = None, band=None, kappa=None,
    strategy: TileStrategy = FLOAT32,
) -> Neighbours:
    """Each row's candidates inside its own block (see :class:`Neighbours`).

    The block is cut into panels (or, with a partition, groups): faiss finds
    the candidates inside each part, and each part meets the parts after it
    once, serving both (the symmetric half of the block's distance matrix).
    With groups, a part's tile runs only on the rows that can offer the other
    side a candidate or take one from it (:func:`_needed`). ``band`` (per
    row) defaults to :func:`band_of` the block with ``kappa`` (default the
    float32 error scale; 0 for exact tiles). ``strategy`` computes the tiles
    (:mod:`largeemb.kernels.screen`).
    """
    if band is None:
        band = band_of(block.sqnorm, sqdist_error_scale(block.dim) if kappa is None else kappa)
    cut = tiling.panels(block, panel_rows) if partition is None else tiling.grouped(block, panel_rows, partition)
    if cut.groups is not None:  # what the groups must beat: panels, each a diagonal and a tile per later one
        p = tiling.panel_count(block.rows, panel_rows)
        plain_tiles = p * (p + 1) // 2
        half = (block.rows**2 - sum(len(rows) ** 2 for rows in cut.rows)) / 2
        if not tiling.groups_pay([], half, block.dim, len(cut) - plain_tiles):  # even skipping every pair
            return within(block, K, k, panel_rows, band=band, strategy=strategy)
    parts = [tiling.taken(block, rows) for rows in cut.rows]
    # faiss computes a diagonal part's full square: halve large ones first.
    local = [
        within(p, K, k, panel_rows // 2, band=band[rows], strategy=strategy)
        if p.rows > DIAGONAL_ROWS
        else diagonal(p, K, k, band[rows])
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
        if not tiling.groups_pay(tiles, half, block.dim, len(tiles) + len(cut) - plain_tiles):
            return within(block, K, k, panel_rows, band=band, strategy=strategy)
    state = Neighbours(block.start, d32, idx, floor, block.sqnorm, bound, band, K, k)
    reach = Reach.of(state)
    right = block.right()
    offered = []
    for _, part, rows_i, rows_j in tiling.parted(block, tiles):
        right_j = tiling.taken_rows(right, rows_j)
        for_i, for_j = off_diagonal(
            strategy, part, right_j, reach[rows_i], reach[rows_j], (block, rows_i), (block, rows_j)
        )
        offered += [_mapped(for_i, rows_i, block.start + rows_j), _mapped(for_j, rows_j, block.start + rows_i)]
    return merge(state, offered)


def _needed(a: Block, b: Block, bound_a, bound_b):
    """Which rows of blocks a and b can offer a part of the other a candidate, or take one from it.

    A row of a is left out against part j of b when every float32 distance
    to j's rows is at or above both the row's bound and the largest bound in
    j: such entries would be rejected as candidates anyway (a float32
    distance is at least the squared lower bound minus its error bound).
    Returns ``needed`` for :meth:`largeemb.kernels.tiles.Pairing.of`.
    """
    kappa = sqdist_error_scale(a.dim)

    def one_side(other_cut, own: Block, other: Block, far, bound_own, bound_other):
        least = far**2 - kappa * (own.sqnorm[:, None] + other_cut.maxima(other.sqnorm)[None, :])
        return (least < bound_own[:, None]) | (least < other_cut.maxima(bound_other)[None, :])

    def needed(ca, cb, far_a, far_b):
        return one_side(cb, a, b, far_a, bound_a, bound_b), one_side(ca, b, a, far_b, bound_b, bound_a)

    return needed


def between(
    a: Block, b: Block, reach_a: Reach, reach_b: Reach, panel_rows: int, partition: Partition | None = None,
    strategy: TileStrategy = FLOAT32,
):
    """Candidates that block a (rows before b) and block b offer each other, tile by tile.

    ``reach_a``/``reach_b``: the blocks' current cuts (:meth:`Reach.of` their
    :class:`Neighbours`). With a partition, each group's tile runs only on
    the rows that can offer the other side a candidate or take one from it
    (:func:`_needed`, :func:`largeemb.kernels.tiles.cut_pair`). ``strategy``
    computes the tiles (:mod:`largeemb.kernels.screen`).
    """
    _, tiles = tiling.cut_pair(a, b, panel_rows, partition, _needed(a, b, reach_a.cut, reach_b.cut))
    for_a, for_b = [_no_candidates()], [_no_candidates()]
    right_b = b.right()
    for _, part, rows_a, rows_b in tiling.parted(a, tiles):
        right = tiling.taken_rows(right_b, rows_b)
        x, y = off_diagonal(strategy, part, right, reach_a[rows_a], reach_b[rows_b], (a, rows_a), (b, rows_b))
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
