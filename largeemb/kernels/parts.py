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
from largeemb.kernels.splits import SPLITS, part_radii, split_words


def listed_size(k: int) -> int:
    """Other rows a row lists for its part radii at k: a quarter then holds k of them for nearly every split
    (as :func:`largeemb.kernels.stderr.listed_radii` starts)."""
    return 5 * k + 24


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
    ids, where = np.unique(np.maximum(idx, 0), return_inverse=True)  # each row's word once
    words = np.where(idx >= 0, split_words(ids, n, key)[where.reshape(idx.shape)], own[:, None])
    pad = max(ks)
    dist = np.concatenate([dist, np.full((rows, pad), np.inf)], axis=1)
    words = np.concatenate([words, np.repeat(own[:, None], pad, axis=1)], axis=1)
    out = np.empty((rows, len(ks), 2 * SPLITS))
    for q, k in enumerate(ks):
        out[:, q] = part_radii(dist, words, own, k)
    return out


def from_listed(nb: Neighbours, own, take_neighbours, ks, max_sqnorm: float, kappa: float, n: int, key: int):
    """Part radii (rows, len(ks), 64) of a block's rows from their candidate lists, the local rows whose
    radii the lists cannot prove (their values are then meaningless), and the float64 pairs computed.

    Proof as in :func:`largeemb.kernels.neighbours.finish`: rows never listed
    lie at float32 squared distance >= min(floor, cut), so at true squared
    distance >= that minus the row's error bound; a radius whose square is
    at most that is exact. With exact tiles (kappa 0) the listed values are
    the brute force's squares: the radii are taken on them, then √.
    """
    ids = nb.start + np.arange(len(nb.idx))
    listed = nb.idx >= 0
    lowest = np.minimum(nb.floor, nb.cut).astype(np.float64)
    if kappa == 0.0:
        squares = padded(np.where(listed, nb.d32.astype(np.float64), np.inf), nb.idx, ids, n, key, ks)
        proven = (squares <= lowest[:, None, None]).all(axis=(1, 2))
        return np.sqrt(squares), np.flatnonzero(~proven), 0
    d64, computed = listed_exact(nb, own, take_neighbours, listed & (nb.idx != ids[:, None]))
    radii = padded(d64, nb.idx, ids, n, key, ks)
    bound = lowest - kappa * (nb.sqnorm + max_sqnorm)
    proven = ((radii * radii <= bound[:, None, None]) | (radii == 0.0)).all(axis=(1, 2))
    return radii, np.flatnonzero(~proven), computed


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
