"""Standard errors of precision, recall, density and coverage from the metrics of random halves and quarters.

Each metric depends on both samples twice over: through the rows and through
their k-NN radii. Holding the radii fixed (binomial per-row flags, the iid
mean of ball counts) leaves out that second part: on Gaussian data the metrics
spread 1.1-1.7 times that standard error, on text embeddings up to 4 times.
Resampling the whole sample does not fix it. A delete-a-group jackknife
compares the metric with itself less a few rows; for these local statistics
the Efron-Stein bias of that comparison (an interaction of j rows counts j
times) makes its standard error 1.4-2 times too large on Gaussian data. A
bootstrap's duplicated rows add nothing to a union of balls, unlike the new
rows of a real sample.

What is unbiased is the spread between *independent* samples. Each of
``SPLITS`` random splits cuts the real set and the fake set each into four
quarters of equal size (pairs of quarters are halves); ``theta[h, a, b]`` is
the metric computed entirely inside real part a and fake part b of split h,
radii among that part's own rows. Two parts of one split are independent
samples of the part's size, so over the pairs of cells of a split

    Var(theta_s)              = E (theta[a, b] - theta[a', b'])² / 2   (a != a', b != b')
    E Var(theta_s | real part) = E (theta[a, b] - theta[a, b'])² / 2    (b != b')

at part size s = n/2 and s = n/4. The metrics' variance falls with the
sample size, but on real embeddings (k-NN radii as large as typical
distances, a few rows with large balls) more slowly than 1/n, so the full-size variance is extrapolated from
the two part
sizes, log-linearly in log size:

    Var(theta_n) = Var(theta_{n/2})² / Var(theta_{n/4})

which is V_{n/2}/2 when the variance falls as 1/n and right for any power
law; the exponent is held between 0 and 1 (:func:`largeemb.kernels.stderr.extrapolated`), and for recall given
the real set between -1 and 1 (:data:`largeemb.kernels.stderr.GIVEN_REAL_EXPONENTS`).
For precision, recall and coverage it is Var / (p(1 - p))², the variance of the logit, that is
extrapolated (:func:`largeemb.kernels.stderr.binomial_scales`): a part's proportions sit nearer 1.
``both`` (real and fake both samples: what a reader of one result needs) uses
the first form, ``given_real`` (the real set fixed: what a comparison of two
fake sets against one real set or reference needs) the second. Given the real
set, precision is a mean of fake per-row flags and density of fake ball
counts / k: those two take the exact iid formula instead.

Everything comes from per-row arrays a pass can collect (never from distance
matrices): each row's K nearest same-set neighbours and their split words give
its 64 part radii (:func:`part_radii`: its k-NN radius inside its half and its
quarter of each split); a cross tile tests each pair against them
(:func:`inside`), ORs per-row masks and sums per-split totals
(:class:`SplitCounts`), which merge across tiles in any order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: Random splits, each into 4 quarters: 2 bits per split in one uint64 per row.
SPLITS = 32
#: Masks hold the half-level bit of split h at bit h and the quarter-level bit at bit 32 + h.
QUARTER_SHIFT = 32
METRICS = ("precision", "recall", "density", "coverage")
_PERMS = np.array(list(itertools.permutations(range(4))), np.uint64)


def mix(z) -> np.ndarray:
    """splitmix64's finaliser: a fixed bijection of uint64 that looks random."""
    z = np.asarray(z, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def permuted(rows: np.ndarray, n: int, key: int) -> np.ndarray:
    """A fixed pseudo-random permutation of 0..n-1, row by row (4-round Feistel network, cycle-walking)."""
    half = max(1, (int(n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    x = np.array(rows, np.uint64)
    todo = np.ones(len(x), bool)
    while todo.any():
        left, right = x[todo] >> np.uint64(half), x[todo] & mask
        for r in range(4):
            left, right = right, left ^ (mix(right ^ np.uint64(((4 * key + r) & 0xFFFF) << 40)) & mask)
        x[todo] = (left << np.uint64(half)) | right
        todo[todo] = x[todo] >= np.uint64(n)
    return x


def split_words(rows: np.ndarray, n: int, key: int) -> np.ndarray:
    """Bits 2h, 2h+1 of ``split_words[i]``: row i's quarter (0..3) in split h; its half is the high bit.

    Rows are grouped in fours by a fixed pseudo-random permutation (not by
    position: rows stored sorted, or duplicates side by side, must not group
    up) and each split deals a group's four rows to the four quarters, so every
    quarter and half has exactly its share of rows (n not a multiple of 4: at
    most one row more). Unequal parts would add variance of their own: coverage
    moves with the ratio of fake to real rows.
    """
    p = permuted(rows, n, key)
    group, role = p >> np.uint64(2), p & np.uint64(3)
    word = np.zeros(len(p), np.uint64)
    for h in range(SPLITS):
        deal = mix((group << np.uint64(6)) + np.uint64(h) + np.uint64((key & 0xFFFF) << 48)) % np.uint64(24)
        word |= _PERMS[deal.astype(np.int64), role.astype(np.int64)] << np.uint64(2 * h)
    return word


def part_masks(words: np.ndarray) -> np.ndarray:
    """``(rows, 4)`` uint64: for part p, the splits where the row is in half p (low bits, p < 2) and
    quarter p (high bits)."""
    quarter = (words[:, None] >> (2 * np.arange(SPLITS, dtype=np.uint64))) & np.uint64(3)  # (rows, SPLITS)
    bit = np.uint64(1) << np.arange(SPLITS, dtype=np.uint64)
    out = np.zeros((len(words), 4), np.uint64)
    for p in range(4):
        in_half = np.bitwise_or.reduce(np.where(quarter >> np.uint64(1) == p, bit, np.uint64(0)), axis=1)
        in_quarter = np.bitwise_or.reduce(np.where(quarter == p, bit, np.uint64(0)), axis=1)
        out[:, p] = in_half | (in_quarter << np.uint64(QUARTER_SHIFT))
    return out


_EVEN = np.uint64(0x5555555555555555)
#: ``COLUMN_BITS[c]``: the bit of a :func:`same_words` word that answers :func:`part_index`'s column c
#: (the half of split h at column h, its quarter at 32 + h).
COLUMN_BITS = np.array([2 * h for h in range(SPLITS)] + [2 * h + 1 for h in range(SPLITS)])


def same_words(xor: np.ndarray) -> np.ndarray:
    """One uint64 per XOR of two rows' split words: bit 2h set when the rows share split h's half (the high
    bits of their quarters agree), bit 2h + 1 when they share its quarter (both bits agree). An XOR of
    all ones (no row) shares nothing."""
    low = xor & _EVEN
    high = (xor >> np.uint64(1)) & _EVEN
    return (~high & _EVEN) | ((~(high | low) & _EVEN) << np.uint64(1))


def kth_in_parts(same: np.ndarray, ks) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per k: (rows, 64) positions (in list order) of each part's k-th listed row, and whether the part
    holds fewer than k listed rows (position 0 then); columns in :func:`part_index`'s order.

    ``same``: (rows, W) :func:`same_words` of each row's listed rows. The 64 parts' running counts
    are bit-sliced (counter bit b of all 64 parts in one word per row), so each list position costs a
    few word operations per row, not 64 counts: a count may wrap past 2^bits, but only its first time at
    k is taken.
    """
    rows, width = same.shape
    bits = max(ks).bit_length()
    spots = max(width - 1, 1).bit_length()
    count = np.zeros((bits, rows), np.uint64)
    done = np.zeros((len(ks), rows), np.uint64)
    at = np.zeros((len(ks), spots, rows), np.uint64)
    carry, hit = np.empty(rows, np.uint64), np.empty(rows, np.uint64)
    full = ~np.uint64(0)
    shared = np.flatnonzero(same.any(axis=0))  # list positions past the last shared row change nothing
    columns = np.ascontiguousarray(same[:, : shared[-1] + 1 if len(shared) else 0].T)
    for t, word in enumerate(columns):
        if t % 16 == 0 and t and (done == full).all():  # every part of every row has its k-th
            break
        np.copyto(carry, word)
        for b in range(bits):  # count += word, bit-sliced
            count[b] ^= carry
            carry &= ~count[b]
        for q, k in enumerate(ks):
            np.bitwise_and(word, ~done[q], out=hit)
            for b in range(bits):
                hit &= count[b] if (k >> b) & 1 else ~count[b]
            done[q] |= hit
            for b in range(spots):
                if (t >> b) & 1:
                    at[q, b] |= hit
    return [(_unsliced(at[q]), _unsliced(done[q][None]) == 0) for q in range(len(ks))]


def _unsliced(planes: np.ndarray) -> np.ndarray:
    """(rows, 64) int64 in part_index's column order from (planes, rows) bit-sliced uint64 words."""
    flat = np.ascontiguousarray(planes.T, "<u8").view(np.uint8).reshape(planes.shape[1], planes.shape[0], 8)
    bit = np.unpackbits(flat, axis=2, bitorder="little").astype(np.int64)  # (rows, planes, 64)
    value = (bit << np.arange(planes.shape[0], dtype=np.int64)[None, :, None]).sum(axis=1)
    return value[:, COLUMN_BITS]


def part_radii(rho: np.ndarray, neighbour_words: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """``(rows, 64)`` float64: the k-NN radius of each row inside its half (column h) and quarter (32 + h) of split h.

    ``rho[i]``: row i's K nearest same-set distances, nearest first (self left
    out once, duplicates count); ``neighbour_words[i]``: their split words. The
    radius in a part is the k-th listed distance among neighbours in that part.
    Which of several rows tied at one distance are listed first does not
    matter: the k-th smallest distance is the same. Raises ValueError when some
    split leaves a row fewer than k listed neighbours in its quarter (its
    quarter radius lies beyond the list: list more).
    """
    n, K = rho.shape
    out = np.empty((n, 2 * SPLITS))
    for lo in range(0, n, 4096):
        ((at, short),) = kth_in_parts(same_words(neighbour_words[lo : lo + 4096] ^ own[lo : lo + 4096, None]), [k])
        if short.any():
            raise ValueError(f"{K} listed neighbours are too few: a part holds fewer than k = {k} of them")
        out[lo : lo + 4096] = np.take_along_axis(rho[lo : lo + 4096], at, axis=1)
    return out


def inside(dist: np.ndarray, radii: np.ndarray, inclusive: bool) -> np.ndarray:
    """``mask[v, c]``: bit h (h < 64) set when visitor v lies in centre c's part ball of column h (``<``, or ``<=``)."""
    below = np.less_equal if inclusive else np.less
    mask = np.empty(dist.shape, np.uint64)
    # One comparison against all 64 radii and a bit-pack per chunk of visitors (6x faster than 64 shifted ORs).
    for lo in range(0, len(dist), 128):
        hits = below(dist[lo : lo + 128, :, None], radii[None, :, :])
        mask[lo : lo + 128] = np.packbits(hits, axis=2, bitorder="little").view("<u8")[..., 0]
    return mask


@dataclass
class SplitCounts:
    """What the cross pass collects, per k. Per-row masks merge by OR, totals by sums: tiling cannot change them.

    Word p of a row's masks: splits (bit h: half level, bit 32 + h: quarter
    level) in which the row lies in a ball of the other set's part p
    (``precision``, ``recall``) or its ball holds a row of part p
    (``coverage``). ``density[p, q, bit]``: pairs inside a ball of real part p
    from fake part q, per split bit.
    """

    precision: np.ndarray  # (m, 4) uint64: fake row inside a ball of real part p
    coverage: np.ndarray  # (n, 4) uint64: real row's ball holds a row of fake part p
    recall: np.ndarray  # (n, 4) uint64: real row inside a ball of fake part p
    density: np.ndarray  # (4, 4, 64) int64

    @classmethod
    def empty(cls, n: int, m: int) -> SplitCounts:
        words = np.zeros((m, 4), np.uint64), np.zeros((n, 4), np.uint64), np.zeros((n, 4), np.uint64)
        return cls(*words, np.zeros((4, 4, 64), np.int64))


def part_index(words: np.ndarray) -> np.ndarray:
    """``(rows, 64)`` uint8: the row's part at each split bit: its half (0-1) at bit h, its quarter (0-3) at 32 + h."""
    quarter = ((words[:, None] >> (2 * np.arange(SPLITS, dtype=np.uint64))) & np.uint64(3)).astype(np.uint8)
    return np.concatenate([quarter >> 1, quarter], axis=1)


def packed(inside_bits: np.ndarray) -> np.ndarray:
    """(pairs, 64) bools (column h: bit h) as one uint64 word per pair."""
    return np.packbits(inside_bits, axis=1, bitorder="little").view("<u8")[:, 0].astype(np.uint64)


def _or_at(target: np.ndarray, rows: np.ndarray, words: np.ndarray) -> None:
    np.bitwise_or.at(target, rows, words)


def fold_real_pairs(counts: SplitCounts, f, r, words, fake_parts, real_parts, fake_index, real_index) -> None:
    """Fold pairs into ``counts``: fake row ``f[i]`` lies in real row ``r[i]``'s part balls ``words[i]``
    (:func:`inside`'s bits; pairs with no bit set may be left out). ``*_parts``/``*_index``: :func:`part_masks`,
    :func:`part_index` of the rows ``f``, ``r`` index (the same rows as ``counts``)."""
    for p in range(4):
        _or_at(counts.precision[:, p], f, words & real_parts[r, p])
        _or_at(counts.coverage[:, p], r, words & fake_parts[f, p])
    pair, bit = np.nonzero(np.unpackbits(words[:, None].astype("<u8").view(np.uint8), axis=1, bitorder="little"))
    # Each split bit puts a pair in exactly one (real part, fake part) cell: count it there.
    cell = (real_index[r[pair], bit].astype(np.int64) * 4 + fake_index[f[pair], bit]) * 64 + bit
    counts.density += np.bincount(cell, minlength=4 * 4 * 64).reshape(4, 4, 64)


def fold_fake_pairs(counts: SplitCounts, r, f, words, fake_parts) -> None:
    """Fold pairs into ``counts``: real row ``r[i]`` lies in fake row ``f[i]``'s part balls ``words[i]``."""
    for p in range(4):
        _or_at(counts.recall[:, p], r, words & fake_parts[f, p])
