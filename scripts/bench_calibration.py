"""Are the standard errors honest? The spread of each metric over seeded repetitions against its mean standard error.

    python scripts/bench_calibration.py [--reps 200] [--n 1000] [--data gauss,mixture,text] [--k 3,5,10]
                                        [--settings both,fixed] [--method splits|jackknife] [--inclusive]
                                        [--without-replacement] [--distinct] [--unit-rows] [--engine] [--jobs 1]
                                        [--dump PREFIX]
                                        [--first-rep 0]

Three data sets, n = m = rows:
- ``gauss``: real N(0, I) in dim 16, fake 1.1 N(0, I) + 0.1 (no ties);
- ``mixture``: 10 Gaussian modes in dim 16 (centres N(0, 3²)), the fake shifted by 0.05 and missing 3 modes;
- ``text``: rows drawn with replacement from /work/shared/data/text-lsa (real pypi.npy, fake npm.npy):
  exact duplicates, zero radii, k-NN radii as large as typical distances. Drawing with replacement makes
  each set an iid sample of the pool (what the standard errors assume); ``--without-replacement`` draws
  distinct pool rows instead (the data's own duplicates only); ``--distinct`` keeps one row of each
  group of identical pool rows (no duplicates in the data, only those of drawing with replacement);
  ``--unit-rows`` leaves out the 15 pool rows that are not unit vectors (11 PyPI, 4 npm: near-empty texts,
  norm 0 to 0.1, at distance about 1 from every other row and so inside up to two thirds of the real balls).

Two settings per data set, each checking the standard error it is meant for:
``both`` draws both sets anew each repetition (SE ``both``), ``fixed`` keeps one
real set and draws the fake set anew (SE ``given_real``). Each cell prints
``spread / mean SE`` with its 95% interval, from the sample standard deviation's
own error over R repetitions (relative sd ≈ sqrt((kurtosis - 1) / (4R)), i.e.
1/sqrt(2R) for normal metrics: 5% at R = 200), the run-to-run variation of
the SE (its coefficient of variation, %), the spread against the root mean
square SE (the check of the variance estimate itself: where a few rows
dominate, SEs are skewed and their mean falls below their rms even when the
variance estimate is unbiased), against the median SE (the typical run's
error bar), and spread / mean SE for the old standard error that holds the
radii fixed. A ratio above 1: the SE is too small.

``--jobs`` runs repetitions in worker processes (the same seeds: the table
does not depend on it); ``--dump PREFIX`` saves each repetition's metrics,
cell metrics and fake ball counts to PREFIX_<data>_<setting>.npz, from which
other standard-error formulas can be tried without recomputing.

Prototype path: float64 brute-force distances (identical rows get exactly equal
distances, so ties are real ties), then the kernels' collection
(``largeemb.kernels.stderr.collect_dense``) and standard errors.
``--engine`` instead runs the product itself, ``largeemb.evaluate`` (the streamed passes, float32 or bf16
screening and the float64 re-check, its own fixed splits) on the same rows, and reads
``standard_errors`` / ``standard_errors_given_real`` from its result: the SEs users get, at sizes the
brute force cannot reach (about 2 s a repetition at n = m = 4,000, dim 256); with ``--dump`` it saves the
engine's own cells (``scripts/calibration_replay.py`` replays other formulas on them).
``--method jackknife`` instead recomputes every metric without each of 20 groups
of rows (radii recomputed, brute force): the rejected delete-a-group jackknife.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from contextlib import nullcontext

import numpy as np
from scipy.stats import kurtosis

from largeemb.kernels.stderr import collect_dense, replicates, standard_errors

METRICS = ("precision", "recall", "density", "coverage")
TEXT = "/work/shared/data/text-lsa"


def near_empty(vectors: np.ndarray) -> np.ndarray:
    """text-lsa's near-empty texts: the rows that are not unit vectors (norm 0 to 0.1 among rows of norm 1)."""
    return np.linalg.norm(vectors, axis=1) < 0.5


class Data:
    """Draws real and fake rows and gives their float64 distance matrices."""

    def __init__(self, name: str, rows: int, replace: bool = True, distinct: bool = False, unit: bool = False):
        self.name, self.rows, self.replace = name, rows, replace
        if name == "text":
            pypi = np.load(f"{TEXT}/pypi.npy").astype(np.float64)
            npm = np.load(f"{TEXT}/npm.npy").astype(np.float64)
            # Rows as ids of distinct vectors: identical rows get bit-identical distances (ties stay ties).
            self.vectors, ids = np.unique(np.concatenate([pypi, npm]), axis=0, return_inverse=True)
            self.real_ids, self.fake_ids = ids.ravel()[: len(pypi)], ids.ravel()[len(pypi) :]
            if distinct:  # each distinct vector of a pool once: no duplicate groups in the data
                self.real_ids, self.fake_ids = np.unique(self.real_ids), np.unique(self.fake_ids)
            if unit:  # only the unit vectors (every row but the near-empty texts)
                empty = near_empty(self.vectors)
                self.real_ids, self.fake_ids = (ids[~empty[ids]] for ids in (self.real_ids, self.fake_ids))
        elif name == "mixture":
            self.centres = np.random.default_rng(99).normal(0, 3.0, (10, 16))
        elif name != "gauss":
            raise SystemExit(f"unknown data set {name!r}: use gauss, mixture or text")

    def real(self, rng):
        n = self.rows
        if self.name == "text":
            return self.real_ids[self.draw(rng, len(self.real_ids), n)]
        if self.name == "mixture":
            return self.centres[rng.integers(0, 10, n)] + rng.standard_normal((n, 16))
        return rng.standard_normal((n, 16))

    def fake(self, rng):
        m = self.rows
        if self.name == "text":
            return self.fake_ids[self.draw(rng, len(self.fake_ids), m)]
        if self.name == "mixture":
            return self.centres[rng.integers(0, 7, m)] + rng.standard_normal((m, 16)) + 0.05
        return 1.1 * rng.standard_normal((m, 16)) + 0.1

    def rows_of(self, drawn):
        """The vectors of drawn rows (text: ids of distinct vectors), as the engine reads them."""
        return self.vectors[drawn].astype(np.float32) if self.name == "text" else drawn

    def draw(self, rng, pool, size):
        return rng.integers(0, pool, size) if self.replace else rng.choice(pool, size, replace=False)

    def distances(self, real, fake):
        if self.name != "text":
            return gemm(real, real), gemm(fake, fake), gemm(fake, real)
        distinct, where = np.unique(np.concatenate([real, fake]), return_inverse=True)
        d = gemm(self.vectors[distinct], self.vectors[distinct])
        np.fill_diagonal(d, 0.0)
        r, f = where[: len(real)], where[len(real) :]
        return d[np.ix_(r, r)], d[np.ix_(f, f)], d[np.ix_(f, r)]


def gemm(a, b):
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def kth(d, k):
    d = d.copy()
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def prdc(real_real, fake_fake, fake_real, k, inclusive):
    inside = np.less_equal if inclusive else np.less
    in_real = inside(fake_real, kth(real_real, k)[None, :])
    in_fake = inside(fake_real, kth(fake_fake, k)[:, None])
    values = [in_real.any(1).mean(), in_fake.any(0).mean(), in_real.sum() / (k * len(fake_real)), in_real.any(0).mean()]
    return in_real, in_fake, values


def conditional(in_real, in_fake, values, k):
    """The old standard errors: radii held fixed."""
    (p, r, _, c), m, n = values, len(in_real), len(in_fake)
    density = np.std(in_real.sum(1) / k, ddof=1) / np.sqrt(m)
    return [np.sqrt(p * (1 - p) / m), np.sqrt(r * (1 - r) / n), density, np.sqrt(c * (1 - c) / n)]


def jackknife(dists, k, inclusive, which, groups=20):
    """Delete-a-group jackknife by brute force: (G-1)/G Σ (θ_-g - θ̄)², real groups + fake groups (both)
    or fake groups."""
    real_real, fake_fake, fake_real = dists
    variances = np.zeros(4)
    for side in ("real", "fake") if which == "both" else ("fake",):
        size = len(real_real) if side == "real" else len(fake_fake)
        left = []
        for g in range(groups):
            keep = np.arange(size) % groups != g
            if side == "real":
                left.append(prdc(real_real[np.ix_(keep, keep)], fake_fake, fake_real[:, keep], k, inclusive)[2])
            else:
                left.append(prdc(real_real, fake_fake[np.ix_(keep, keep)], fake_real[keep], k, inclusive)[2])
        left = np.array(left)
        variances += (groups - 1) / groups * ((left - left.mean(0)) ** 2).sum(0)
    return list(np.sqrt(variances))


def engine(data: Data, real, fake, ks, which: str, inclusive: bool, rep: int, dump: bool = False):
    """The product's own numbers and SEs (the old conditional SEs are not computed: nan); with ``dump``, the
    cells its standard errors were computed from, caught on their way into ``kernels.stderr.standard_errors``."""
    import warnings

    import largeemb
    from largeemb.kernels import stderr

    caught, formula = {}, stderr.standard_errors

    def catching(counts, real_parts, fake_parts, k, fake_counts, values=None):
        caught[k] = (replicates(counts, real_parts, fake_parts, k), np.array(fake_counts))
        return formula(counts, real_parts, fake_parts, k, fake_counts, values)

    stderr.standard_errors = catching if dump else formula
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "only 1,000 rows": known
            got = largeemb.evaluate(
                data.rows_of(real), data.rows_of(fake), k=tuple(ks), companions=(), plots=False, samples=False,
                inclusive=inclusive, seed=rep,
            ).to_dict()
    finally:
        stderr.standard_errors = formula
    se = got["standard_errors" if which == "both" else "standard_errors_given_real"]
    return {k: ([got["by_k"][str(k)][m] for m in METRICS], [se[str(k)][m] for m in METRICS], [np.nan] * 4,
                caught.get(k)) for k in ks}


def repetition(data: Data, setting: str, rep: int, ks, method: str, inclusive: bool, dump: bool):
    """One seeded repetition: per k, the four metrics, their standard errors, the old SEs (and the cells to dump)."""
    which = "both" if setting == "both" else "given_real"
    seed = {"gauss": 0, "mixture": 1, "text": 2}[data.name]
    rng = np.random.default_rng([seed, 1 if setting == "both" else 2, rep])
    real = data.real(rng) if setting == "both" else data.real(np.random.default_rng([seed, 12345]))
    fake = data.fake(rng)
    if method == "engine":
        return engine(data, real, fake, ks, which, inclusive, rep, dump)
    dists = data.distances(real, fake)
    out = {}
    for k in ks:
        in_real, in_fake, v = prdc(*dists, k, inclusive)
        kept = None
        if method == "jackknife":
            se = jackknife(dists, k, inclusive, which)
        else:
            counts, real_parts, fake_parts, fake_counts = collect_dense(*dists, k, inclusive=inclusive, key=rep)
            got = standard_errors(counts, real_parts, fake_parts, k, fake_counts, dict(zip(METRICS, v)))[which]
            se = [got[m] for m in METRICS]
            kept = (replicates(counts, real_parts, fake_parts, k), fake_counts) if dump else None
        out[k] = (v, se, conditional(in_real, in_fake, v, k), kept)
    return out


_DATA = {}


def _repetition(args):
    name, *rest = args
    return repetition(_DATA[name], *rest)


def run(data: Data, setting: str, reps: int, ks, method: str, inclusive: bool, dump=None, jobs=1, first=0):
    which = "both" if setting == "both" else "given_real"
    _DATA[data.name] = data  # worker processes inherit it (fork)
    tasks = [(data.name, setting, rep, ks, method, inclusive, bool(dump)) for rep in range(first, first + reps)]
    results = []
    with multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else nullcontext() as pool:
        for i, got in enumerate(pool.imap(_repetition, tasks) if pool else map(_repetition, tasks)):
            if i % 20 == 0:
                print(f"  {data.name} {setting}: {i}/{reps}", file=sys.stderr, flush=True)
            results.append(got)
    if dump:
        arrays = {}
        for k in ks:
            arrays[f"values_{k}"] = np.array([r[k][0] for r in results])
            arrays[f"old_{k}"] = np.array([r[k][2] for r in results])
            arrays[f"fake_counts_{k}"] = np.array([r[k][3][1] for r in results])
            for level in ("half", "quarter"):
                for m in METRICS:
                    arrays[f"theta_{k}_{level}_{m}"] = np.array([r[k][3][0][level][m] for r in results])
        np.savez_compressed(f"{dump}_{data.name}_{setting}.npz", **arrays)
    rows = []
    for k in ks:
        v, s, o = (np.array([r[k][i] for r in results]) for i in range(3))
        spread = v.std(axis=0, ddof=1)
        rel = np.sqrt((np.maximum(kurtosis(v, axis=0, fisher=False), 1.0) - 1) / (4 * (reps - 1)))
        cells = []
        for j in range(4):
            ratio = spread[j] / s[:, j].mean()
            cells.append(
                f"{ratio:.2f} ({ratio * (1 - 1.96 * rel[j]):.2f}–{ratio * (1 + 1.96 * rel[j]):.2f}) "
                f"±{100 * s[:, j].std() / s[:, j].mean():.0f}%, rms {spread[j] / np.sqrt((s[:, j] ** 2).mean()):.2f}, "
                f"med {spread[j] / np.median(s[:, j]):.2f}"
                + ("" if method == "engine" else f", old {spread[j] / o[:, j].mean():.2f}")  # engine: no old SEs
            )
        rows.append(f"| {data.name} | {which} | {k} | " + " | ".join(cells) + " |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--first-rep", type=int, default=0, help="seeds of repetitions FIRST.. (held-out checks)")
    parser.add_argument("--n", "--rows", dest="rows", type=int, default=1000, help="rows per set (n = m)")
    parser.add_argument("--without-replacement", action="store_true", help="text: draw rows without replacement")
    parser.add_argument("--distinct", action="store_true", help="text: each distinct pool vector once (no duplicates)")
    parser.add_argument("--unit-rows", action="store_true", help="text: leave out the rows that are not unit vectors")
    parser.add_argument("--settings", default="both,fixed")
    parser.add_argument("--jobs", type=int, default=1, help="repetitions in parallel (worker processes)")
    parser.add_argument("--dump", help="save per-repetition values and cell metrics to DUMP_<data>_<setting>.npz")
    parser.add_argument("--data", default="gauss,mixture,text")
    parser.add_argument("--k", default="3,5,10")
    parser.add_argument("--method", choices=("splits", "jackknife"), default="splits")
    parser.add_argument("--engine", action="store_true", help="the product's SEs, not the prototype's")
    parser.add_argument("--inclusive", action="store_true", help="'<=' for ball membership")
    args = parser.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    if args.engine:
        if args.method != "splits":
            raise SystemExit("--engine reports the product's SEs: not with --method jackknife")
        args.method = "engine"
    start = time.perf_counter()
    print(
        f"{args.method}: spread / mean SE (95% interval) ±SE variation, spread / rms SE, spread / median SE"
        + ("" if args.method == "engine" else ", old SE's spread / mean SE")
        + "; "
        f"{args.reps} reps, n = m = {args.rows}\n"
    )
    print("| data | SE | k | " + " | ".join(METRICS) + " |")
    print("|---|---|---|" + "---|" * 4)
    for name in args.data.split(","):
        data = Data(name, args.rows, not args.without_replacement, args.distinct, args.unit_rows)
        for setting in args.settings.split(","):
            rows = run(data, setting, args.reps, ks, args.method, args.inclusive, args.dump, args.jobs, args.first_rep)
            for row in rows:
                print(row, flush=True)
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
