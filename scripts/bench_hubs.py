"""How far a standard error computed from one sample can follow rows the sample seldom holds: density and
recall given the real set on text-lsa, whose npm pool holds 4 near-empty texts (norm 0.08-0.10 among unit
vectors) and rare rows whose k-NN balls hold a tenth of the real set.

    python scripts/bench_hubs.py [--n 1000] [--k 3,5,10] [--draws 4000] [--recall-rows 4000] [--recall-draws 6]

The real set is ``bench_calibration.py``'s fixed one (``--settings fixed``, data ``text``). Every npm row's
density term (the real balls holding it, / k) is computed once over the whole pool, so the true standard error
of density over fake samples of n rows is known exactly: sd over the pool / sqrt(n). Then ``--draws`` samples
of n rows are drawn as the calibration draws them, and each gets the product's given-real SE of density (the
iid formula, the sample's sd / sqrt(n)). Printed per k: the hub rows' terms, the true SE with and without
them, the chance that a sample holds none, the spread / mean SE over the draws (what the calibration table
shows) and spread / rms SE (the variance estimate itself), and what it would take: the mean SE that the
samples holding a hub would have to report, if the others report the SE of the pool without hubs (all they
can know), for spread / mean SE to reach 1.15.

Recall (``--recall-draws`` fake samples of ``--recall-rows`` unit-vector rows, the near-empty texts left out,
against the fixed real set of that size): per draw and k, recall, and the fake rows whose balls hold the most
real rows that no other fake ball holds (each row's share of recall: what the sample would lose without it).
"""

from __future__ import annotations

import argparse

import numpy as np

from bench_calibration import Data, gemm, kth, near_empty


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="rows per set")
    parser.add_argument("--k", default="3,5,10")
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--recall-rows", type=int, default=4000)
    parser.add_argument("--recall-draws", type=int, default=6)
    args = parser.parse_args()
    data = Data("text", args.n)
    real = data.vectors[data.real(np.random.default_rng([2, 12345]))]  # bench_calibration's fixed real set
    pool = data.vectors[data.fake_ids]
    hub = near_empty(pool)
    between = gemm(real, real)
    np.fill_diagonal(between, 0.0)
    m = args.n
    print(f"npm pool {len(pool):,} rows, {hub.sum()} near-empty; fixed real set {len(real):,} rows; samples of {m:,}\n")
    print("| k | hub rows' terms | true SE | without hubs | P(no hub) | spread / mean SE | spread / rms SE "
          "| mean SE needed where a hub is drawn | iid SE there |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in (int(k) for k in args.k.split(",")):
        radius = kth(between, k)
        terms = np.concatenate(
            [(gemm(pool[lo : lo + 2000], real) < radius[None]).sum(1) / k for lo in range(0, len(pool), 2000)]
        )
        true, bulk = terms.std() / np.sqrt(m), terms[~hub].std() / np.sqrt(m)
        none = (1 - hub.mean()) ** m
        rng = np.random.default_rng(0)
        drawn = rng.integers(0, len(pool), (args.draws, m))
        samples = terms[drawn]
        values, se = samples.mean(1), samples.std(1, ddof=1) / np.sqrt(m)
        held = hub[drawn].any(1)
        needed = (true / 1.15 - none * bulk) / (1 - none)
        print(
            f"| {k} | {', '.join(f'{t:.1f}' for t in terms[hub])} | {true:.4f} | {bulk:.4f} | {none:.3f} "
            f"| {values.std() / se.mean():.2f} | {values.std() / np.sqrt((se**2).mean()):.2f} | {needed:.4f} "
            f"| {se[held].mean():.4f} |"
        )

    recall_rows(args.recall_rows, args.recall_draws, [int(k) for k in args.k.split(",")])


def recall_rows(rows: int, draws: int, ks):
    data = Data("text", rows, unit=True)
    real = data.vectors[data.real(np.random.default_rng([2, 12345]))]
    rng = np.random.default_rng(3)
    print(f"\nrecall, {rows:,} rows a set (unit vectors only): the 3 fake rows that alone hold the most real rows\n")
    print("| draw | k | recall | alone in those rows' balls (share of the real set) | their k-NN radii |")
    print("|---|---|---|---|---|")
    for draw in range(draws):
        fake = data.vectors[data.fake(rng)]
        within = gemm(fake, fake)
        np.fill_diagonal(within, 0.0)
        across = gemm(fake, real)
        for k in ks:
            radius = kth(within, k)
            inside = across < radius[:, None]  # fake row j's ball holds real row i
            held = inside.sum(0)
            alone = (inside & (held == 1)[None]).sum(1)
            top = np.argsort(-alone, kind="stable")[:3]
            shares = ", ".join(f"{a / rows:.3f}" for a in alone[top])
            radii = ", ".join(f"{r:.2f}" for r in radius[top])
            print(f"| {draw} | {k} | {np.mean(held > 0):.3f} | {shares} | {radii} |")


if __name__ == "__main__":
    main()
