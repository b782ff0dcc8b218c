"""Each row's part radii (:func:`largeemb.kernels.splits.part_radii`: its k-NN radius inside its half and
its quarter of every split), exact, from what the self pass already lists.

A row's radius in a part is the k-th smallest distance to the part's other
rows. From a list of a row's nearest rows with float64 distances it is exact
when the list is complete below it: every row not listed lies at or beyond
it (ties there leave the k-th smallest distance unchanged). :func:`from_listed`
takes the self pass's candidate lists (:class:`~largeemb.kernels.neighbours.Neighbours`,
whose unlisted rows lie above a proven bound), :func:`from_shortlist` the
float64 pass's (:mod:`largeemb.kernels.resolve`) for the few rows the lists
leave short: a part with fewer than k listed rows, or a radius beyond the bound.
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels.distance import exact_pairs
from largeemb.kernels.neighbours import Neighbours, listed_exact
from largeemb.kernels.shortlist import Shortlist
from largeemb.kernels.splits import SPLITS, kth_in_parts, part_radii, same_words, split_words


def listed_size(k: int) -> int:
    """Other rows a row lists for its part radii at k. A quarter holds each listed row with chance 1/4, so
    k of 8k + 24 for all 32 splits but for about 0.3% of rows at k = 5 (5k + 24: 8%, each then a float64
    pass over the whole set), and fewer at larger k."""
    return 8 * k + 24


def padded(dist: np.ndarray, idx: np.ndarray, own_ids: np.ndarray, n: int, key: int, ks) -> np.ndarray:
    """(rows, len(ks), 64) part radii from listed distances (inf: no row) and global ids (-1: none).

    The row itself (by id) is left out once listed. Parts with fewer than k
    listed rows get inf: k padding entries at inf share every part with the row.
    """
    rows = len(dist)
    dist = np.where((idx >= 0) & (idx != own_ids[:, None]), dist, np.inf)
    order = np.argsort(dist, axis=1, kind="stable")
    dist, idx = np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)
    own = split_words(own_ids, n, key)
    words = _words(idx, own, n, key)
    pad = max(ks)
    dist = np.concatenate([dist, np.full((rows, pad), np.inf)], axis=1)
    words = np.concatenate([words, np.repeat(own[:, None], pad, axis=1)], axis=1)
    out = np.empty((rows, len(ks), 2 * SPLITS))
    for q, k in enumerate(ks):
        out[:, q] = part_radii(dist, words, own, k)
    return out


def from_listed(nb: Neighbours, own, take_neighbours, ks, max_sqnorm: float, kappa: float, n: int, key: int, known):
    """Part radii (rows, len(ks), 64) of a block's rows from their candidate lists, the local rows whose
    radii the lists cannot prove (their values are then meaningless), and the float64 pairs computed.

    With e the row's error bound (true squared distances lie within e of
    the float32 values v) and t the k-th smallest v among a part's listed
    rows, the part's true k-th distance T has T² within 3e of t, and rows
    with v more than 2e from t are surely nearer or farther (the argument of
    :func:`largeemb.kernels.neighbours.finish`). So listed rows within 4e of
    some part's t get a float64 distance (one per neighbour, whatever the
    parts that ask) and the others keep √v: every row then compares with
    each T as its true distance does, and each part's k-th smallest of these
    values is its exact radius. Rows never listed lie at float32 squared
    distance >= min(floor, cut), so at true squared distance >= that minus e:
    a radius whose square is at most that is exact. With exact tiles (kappa 0)
    the listed values are the brute force's squares: no float64 at all.
    ``known``: float64 distances of listed rows already computed (:func:`~largeemb.kernels.neighbours.finish`'s,
    inf where not; None with exact tiles), taken as they are.
    """
    ids = nb.start + np.arange(len(nb.idx))
    lowest = np.minimum(nb.floor, nb.cut).astype(np.float64)
    if kappa == 0.0:
        squares = padded(np.where(nb.idx >= 0, nb.d32.astype(np.float64), np.inf), nb.idx, ids, n, key, ks)
        proven = (squares <= lowest[:, None, None]).all(axis=(1, 2))
        return np.sqrt(squares), np.flatnonzero(~proven), 0
    eps = kappa * (nb.sqnorm + max_sqnorm)
    d32 = np.where((nb.idx >= 0) & (nb.idx != ids[:, None]), nb.d32.astype(np.float64), np.inf)
    order = np.argsort(d32, axis=1, kind="stable")  # the row itself and empty slots last
    d32, idx = np.take_along_axis(d32, order, axis=1), np.take_along_axis(nb.idx, order, axis=1)
    listed = np.isfinite(d32)
    theirs = _listed_words(np.maximum(idx, 0), n, key)
    same = same_words(np.where(listed, theirs ^ split_words(ids, n, key)[:, None], ~np.uint64(0)))
    kth = kth_in_parts(same, ks)
    need = np.zeros(idx.shape, bool)
    for pos, _ in kth:
        np.put_along_axis(need, pos, True, axis=1)
    need = _near(need & listed, d32, 4 * eps)
    # The k-NN radii's window computed some already: the same pairs, the same values.
    known = np.take_along_axis(known, order, axis=1)
    d64, computed = listed_exact(nb.start, idx, own, take_neighbours, need & np.isinf(known))
    d64 = np.where(np.isinf(known), d64, known)
    value = np.where(need, d64, np.sqrt(np.maximum(d32, 0.0)))  # float32 squares of copies may be below 0
    by_value = np.argsort(value, axis=1, kind="stable")
    value = np.take_along_axis(value, by_value, axis=1)
    moved = np.flatnonzero((by_value != np.arange(by_value.shape[1])).any(axis=1))  # rows whose order changed
    if len(moved):
        again = kth_in_parts(np.take_along_axis(same[moved], by_value[moved], axis=1), ks)
        for (pos, short), (pos_moved, short_moved) in zip(kth, again):
            pos[moved], short[moved] = pos_moved, short_moved
    radii = np.stack([np.where(short, np.inf, np.take_along_axis(value, pos, axis=1)) for pos, short in kth], axis=1)
    bound = lowest - eps
    proven = ((radii * radii <= bound[:, None, None]) | (radii == 0.0)).all(axis=(1, 2))
    return radii, np.flatnonzero(~proven), computed


def _listed_words(idx: np.ndarray, n: int, key: int) -> np.ndarray:
    """Split words of listed rows ``idx`` (global, >= 0), each row's computed once: for lists that name
    more entries than the set has rows, every row's (no sort; a small set's blocks list nearly all)."""
    if idx.size >= n:
        return split_words(np.arange(n), n, key)[idx]
    rows, where = np.unique(idx, return_inverse=True)
    return split_words(rows, n, key)[where.reshape(idx.shape)]


def _near(marked: np.ndarray, values: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Entries of each (sorted) row whose value lies within ``reach`` of a marked entry's."""
    out = marked.copy()
    rows = np.arange(len(values))  # rows with entries still this close: sorted, so farther steps are farther apart
    for step in range(1, values.shape[1]):
        with np.errstate(invalid="ignore"):  # inf - inf past the listed entries: not close
            close = values[rows, step:] - values[rows, :-step] <= reach[rows, None]
        keep = close.any(axis=1)
        rows, close = rows[keep], close[keep]
        if not len(rows):
            break
        out[rows, :-step] |= close & marked[rows, step:]
        out[rows, step:] |= close & marked[rows, :-step]
    return out


def _words(idx: np.ndarray, own: np.ndarray, n: int, key: int) -> np.ndarray:
    """Split words of listed rows (each row's once), the row's own where nothing is listed."""
    return np.where(idx >= 0, _listed_words(np.maximum(idx, 0), n, key), own[:, None])


def from_shortlist(pairs: Shortlist, own: np.ndarray, take_set, own_ids: np.ndarray, width: int, ks, n: int, key: int):
    """Part radii of some rows from their float64 shortlist (:meth:`Shortlist.best` of ``width``, self
    included), and the rows (positions) it leaves short: they need a wider one.

    Every pair the shortlist dropped lies beyond the ``width``-th smallest
    exact distance kept (T; :meth:`Shortlist.best`'s proof): a radius at most T is exact.
    """
    wanted, where = np.unique(pairs.cols, return_inverse=True)
    gathered = take_set(wanted)
    exact = exact_pairs(lambda r: own[r], lambda c: gathered[c], pairs.rows, where.ravel())
    order = np.lexsort((exact, pairs.rows))
    r, d, cols = pairs.rows[order], exact[order], pairs.cols[order]
    counts = np.bincount(r, minlength=len(own_ids))
    first = np.r_[0, np.cumsum(counts)[:-1]]
    rank = np.arange(len(r)) - first[r]
    width_kept = max(int(counts.max(initial=1)), 1)
    dist, idx = np.full((len(own_ids), width_kept), np.inf), np.full((len(own_ids), width_kept), -1)
    dist[r, rank], idx[r, rank] = d, cols
    bound = np.where(counts >= width, dist[np.arange(len(own_ids)), np.minimum(width, dist.shape[1]) - 1], np.inf)
    bound[counts >= n] = np.inf  # the row has met every row of its set
    radii = padded(dist, idx, own_ids, n, key, ks)
    short = ~(radii <= bound[:, None, None]).all(axis=(1, 2))
    return radii, np.flatnonzero(short)
