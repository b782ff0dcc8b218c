"""Standard errors of precision, recall, density and coverage from what the passes collect
(:mod:`largeemb.kernels.splits`).

Arrays in, numbers out. :func:`replicates` turns the per-row masks and
per-split totals into the metric of every (real part, fake part) cell of every
split, at half and at quarter size; :func:`standard_errors` turns those into
the two standard errors (the derivation is in :mod:`largeemb.kernels.splits`).
:func:`collect_dense` collects the same arrays from dense float64 distance
matrices: the reference for small sets and the prototype path of
``scripts/bench_calibration.py``.

How honest they are (``scripts/bench_calibration.py``, BENCHMARKS.md): on
Gaussian and mixture data the metrics spread 0.85-1.15 times the mean SE. On
text embeddings (n = 1,000) two things are beyond a one-sample estimate.
Given the real set, density's variance comes mostly from a few "hub" fake rows
that lie in hundreds of real balls (4 near-empty texts of 20,000): its SE² is
unbiased (spread / rms SE 1.00 over 20,000 repetitions), but a sample without a
hub reports a small SE, so spread / mean SE is 1.25-1.35 at 1,000 rows (0.94-0.96
without those 4 rows), 1.05-1.12 at 4,000, 1.00-1.03 at 8,000, and the z test
of two fakes raises fewer false alarms than nominal (the hub that moves the
metric raises its SE too). No one-sample SE can count rows that most samples
lack (``scripts/bench_hubs.py``); ``metrics/prdc.py`` warns when density rests
on such rows. Recall rests on rare rows too: one lone fake row can alone hold a
tenth of the real set (BENCHMARKS.md, "calibration-hubs"); and its variance
is not a power law of the size there (given the real set it can grow with the
fake sample's size, :data:`GIVEN_REAL_EXPONENTS`): after the logit scaling of
:func:`binomial_scales` and that exponent bound its SEs stay up to 1.16 times
too small at 1,000-8,000 rows over the repetitions they were chosen on, and up
to 1.27 times on 200 held-out ones (BENCHMARKS.md, "calibration-bounds").
"""

from __future__ import annotations

import numpy as np

from largeemb.kernels.splits import (
    METRICS,
    QUARTER_SHIFT,
    SPLITS,
    SplitCounts,
    fold_fake_pairs,
    fold_real_pairs,
    inside,
    part_index,
    part_masks,
    part_radii,
    split_words,
)

#: Cells (part, part) per level: halves use parts 0-1 and the low 32 bits, quarters parts 0-3 and the high bits.
LEVELS = {"half": (2, 0), "quarter": (4, QUARTER_SHIFT)}


def bit_sums(words: np.ndarray) -> np.ndarray:
    """(64,) how many of ``words`` have each bit set."""
    out = np.zeros(64, np.int64)
    for lo in range(0, len(words), 1 << 16):
        chunk = np.ascontiguousarray(words[lo : lo + (1 << 16)], dtype="<u8")[:, None].view(np.uint8)
        out += np.unpackbits(chunk, axis=1, bitorder="little").sum(axis=0, dtype=np.int64)
    return out


def replicates(counts: SplitCounts, real_parts: np.ndarray, fake_parts: np.ndarray, k: int) -> dict:
    """``{level: {metric: theta[h, p, q]}}``: the metric inside real part p and fake part q of split h."""
    n_real = np.stack([bit_sums(real_parts[:, p]) for p in range(4)])  # (4, 64) rows per part and bit
    n_fake = np.stack([bit_sums(fake_parts[:, q]) for q in range(4)])
    raw = {key: np.zeros((64, 4, 4)) for key in METRICS}
    with np.errstate(invalid="ignore", divide="ignore"):
        for p in range(4):
            for q in range(4):
                raw["precision"][:, p, q] = bit_sums(counts.precision[:, p] & fake_parts[:, q]) / n_fake[q]
                raw["coverage"][:, p, q] = bit_sums(counts.coverage[:, q] & real_parts[:, p]) / n_real[p]
                raw["recall"][:, p, q] = bit_sums(counts.recall[:, q] & real_parts[:, p]) / n_real[p]
                raw["density"][:, p, q] = counts.density[p, q] / (k * n_fake[q])
    return {
        level: {key: v[shift : shift + SPLITS, :parts, :parts] for key, v in raw.items()}
        for level, (parts, shift) in LEVELS.items()
    }


def cell_variances(theta: np.ndarray) -> tuple[float, float]:
    """Var(theta_s) and E Var(theta_s | real part), from the cells of every split (theta: (splits, P, P))."""
    parts = theta.shape[1]
    across, given = [], []
    for (a, b), (c, d) in _cell_pairs(parts):
        half_square = (theta[:, a, b] - theta[:, c, d]) ** 2 / 2
        if a != c and b != d:
            across.append(half_square)  # independent real parts and fake parts
        elif a == c:
            given.append(half_square)  # the same real part, independent fake parts
    return float(np.mean(across)), float(np.mean(given))


def _cell_pairs(parts: int):
    cells = [(a, b) for a in range(parts) for b in range(parts)]
    return [(x, y) for i, x in enumerate(cells) for y in cells[i + 1 :]]


#: The size exponent's bounds unless said otherwise (:func:`extrapolated`).
EXPONENTS = (0.0, 1.0)


def extrapolated(half: float, quarter: float, exponents: tuple[float, float] = EXPONENTS) -> float:
    """Var(theta_n) from Var(theta_{n/2}) and Var(theta_{n/4}): log-linear in log size.

    V_{n/2}²/V_{n/4}, with the size exponent e (Var ∝ size^-e) held in
    ``exponents``, by default between 0 (a variance that does not fall) and 1
    (one that falls as 1/n, as a mean's does): a noisy ratio beyond those is noise.
    """
    if not half > 0 or not quarter > 0:
        return max(half, 0.0) / 2
    low, high = exponents
    return half * min(max(half / quarter, 2.0**-high), 2.0**-low)


#: The size exponent's bounds given the real set, where only the fake sample varies (EXPONENTS
#: elsewhere). Recall there: each fake row added shrinks its neighbours' balls and brings its own, and its
#: variance can grow with the fake sample's size (text-lsa, 8,000 rows, k = 5: 89.7 / 122.7 / 154.6 e-5 at a
#: quarter, half and the full size); the exponent goes down to -1 (at most twice the half's variance).
#: Measured (BENCHMARKS.md, "calibration-bounds"): text-lsa recall given the real set 1.20-1.24 -> about 1.15
#: at 4,000 and 8,000 rows, no Gaussian or mixture cell moved. Coverage's variance there falls faster than 1/n
#: (its balls are fixed; each stays empty with a chance that falls exponentially), but allowing that shrank
#: its SE at 96 rows far below its spread (1.02 -> 1.28): left at EXPONENTS.
GIVEN_REAL_EXPONENTS = {"recall": (-1.0, 1.0)}


#: Fractions of rows: their variance is extrapolated on the logit scale when the full sample's value is given.
PROPORTIONS = ("precision", "recall", "coverage")


def binomial_scales(theta: dict, key: str, value: float | None) -> tuple[float, float, float]:
    """(p(1 - p))² at half size, quarter size (p: the mean of the cells) and full size (p: ``value``); ones
    where that does not apply (density, no value given, or p = 0 or 1 somewhere: nothing to scale by).

    A part's balls are larger than the full sample's, so its proportions sit
    nearer 1: on text embeddings recall is 0.75 at 1,000 rows and higher in
    a quarter, and its variance falls with the size for that reason as well
    as the sample's. What is extrapolated is the variance of the proportion's
    logit, Var / (p(1 - p))² (the delta method: the scale on which a proportion
    near 0 or 1 has a size-stable spread), then multiplied back by the full
    sample's (p(1 - p))². Against extrapolating Var / p(1 - p) (the arcsine
    scale, before), text-lsa recall's spread / mean SE went from 1.18-1.28 to
    1.07-1.18 at 1,000 rows and at k = 10 from 1.25/1.39 to 0.99/1.06 at 4,000
    (both / given the real set); no Gaussian or mixture cell left 0.88-1.14
    (BENCHMARKS.md, "The product's own standard errors"). Against Var itself
    (no scaling) the arcsine scale had taken k = 5 from 1.44 to 1.23.
    """
    if key not in PROPORTIONS or value is None:
        return 1.0, 1.0, 1.0
    scales = []
    for p in (float(np.mean(theta["half"][key])), float(np.mean(theta["quarter"][key])), float(value)):
        scales.append((p * (1 - p)) ** 2)
    return tuple(scales) if min(scales) > 0 else (1.0, 1.0, 1.0)


def standard_errors(counts: SplitCounts, real_parts, fake_parts, k: int, fake_counts: np.ndarray, values=None) -> dict:
    """``{"both": {metric: se}, "given_real": {metric: se}}`` for one k; "both" is never below "given_real".

    ``fake_counts``: the real balls holding each fake row (the full sample's
    per-row counts): given the real set, precision and density are means of
    per-fake-row values and take the exact iid formula. ``values``: the full
    sample's metrics (``{metric: value}``); given, the proportions' variances
    are extrapolated on the logit scale (:func:`binomial_scales`).
    """
    theta = replicates(counts, real_parts, fake_parts, k)
    out = {"both": {}, "given_real": {}}
    for key in METRICS:
        half_both, half_given = cell_variances(theta["half"][key])
        quarter_both, quarter_given = cell_variances(theta["quarter"][key])
        at_half, at_quarter, at_full = binomial_scales(theta, key, (values or {}).get(key))
        both = extrapolated(half_both / at_half, quarter_both / at_quarter) * at_full
        exponents = GIVEN_REAL_EXPONENTS.get(key, EXPONENTS)
        given = extrapolated(half_given / at_half, quarter_given / at_quarter, exponents) * at_full
        out["both"][key], out["given_real"][key] = float(np.sqrt(both)), float(np.sqrt(given))
    m = len(fake_counts)
    for key, per_row in (("precision", (fake_counts > 0).astype(float)), ("density", fake_counts / k)):
        out["given_real"][key] = float(np.std(per_row, ddof=1) / np.sqrt(m)) if m > 1 else float("nan")
    # Var(theta) = E Var(theta | real) + Var E(theta | real): with both sets sampled the variance holds the
    # given-real one and more. Estimated from other cell pairs the two cross by noise (recall given > both in
    # 20-38% of text-lsa runs); the larger is taken: text-lsa recall both 1.39 / 1.36 -> 1.24 at 4,000 rows,
    # Gaussian and mixture cells within 0.01 (BENCHMARKS.md, "both-at-least-given").
    for key in METRICS:
        out["both"][key] = max(out["both"][key], out["given_real"][key])
    return out


def nearest_listed(dist: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's K nearest other rows of one set (self left out once): sorted distances and indices."""
    d = np.array(dist, np.float64)
    np.fill_diagonal(d, np.inf)
    # Which of several rows tied at the K-th distance get listed does not matter: part radii take distances, not rows.
    order = np.argpartition(d, K - 1, axis=1)[:, :K]
    near = np.take_along_axis(d, order, axis=1)
    by = np.argsort(near, axis=1, kind="stable")
    return np.take_along_axis(near, by, axis=1), np.take_along_axis(order, by, axis=1)


def listed_radii(dist: np.ndarray, words: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's radius (k-th nearest) and part radii, listing more neighbours until every quarter has k."""
    # Enough that a quarter (a quarter of the listed rows, binomially) rarely holds fewer than k: no second try.
    K = min(12 * k + 48, len(dist) - 1)
    while True:
        rho, order = nearest_listed(dist, K)
        try:
            return rho[:, k - 1], part_radii(rho, words[order], words, k)
        except ValueError:
            if K == len(dist) - 1:
                raise
            K = min(2 * K, len(dist) - 1)


def collect_dense(real_real, fake_fake, fake_real, k, inclusive=False, tile=None, key=0):
    """(SplitCounts, real part masks, fake part masks, fake_counts) from dense float64 distances.

    ``tile`` cuts the cross matrix into tiles of that many rows and columns (the
    result cannot depend on it); ``key`` picks the splits.
    """
    n, m = len(real_real), len(fake_fake)
    real_words, fake_words = split_words(np.arange(n), n, 2 * key), split_words(np.arange(m), m, 2 * key + 1)
    real_parts, fake_parts = part_masks(real_words), part_masks(fake_words)
    real_index, fake_index = part_index(real_words), part_index(fake_words)
    real_radius, real_radii = listed_radii(real_real, real_words, k)
    _, fake_radii = listed_radii(fake_fake, fake_words, k)
    below = np.less_equal if inclusive else np.less
    counts = SplitCounts.empty(n, m)
    fake_counts = np.zeros(m, np.int64)
    step = tile or max(n, m)
    for lo in range(0, m, step):
        for co in range(0, n, step):
            block = fake_real[lo : lo + step, co : co + step]
            # The engine's fold (kernels/cross_splits.py), on the pairs of the tile inside some part ball.
            mask = inside(block, real_radii[co : co + step], inclusive)
            f, r = np.nonzero(mask)
            fold_real_pairs(counts, f + lo, r + co, mask[f, r], fake_parts, real_parts, fake_index, real_index)
            fake_counts[lo : lo + step] += below(block, real_radius[None, co : co + step]).sum(axis=1)
            mask = inside(block.T, fake_radii[lo : lo + step], inclusive)
            r, f = np.nonzero(mask)
            fold_fake_pairs(counts, r + co, f + lo, mask[r, f], fake_parts)
    return counts, real_parts, fake_parts, fake_counts
