"""Other standard-error formulas, replayed on the cells ``bench_calibration.py --dump`` saved.

    python scripts/bench_calibration.py --engine --data text --n 4000 --dump /tmp/cal/e4000
    python scripts/calibration_replay.py /tmp/cal/e4000 --data text [--scale logit|arcsine|none]
        [--model power|two-term] [--exponent 0,1] [--given-recall-exponent -1,1]
        [--given-density iid|cells|max] [--given-all-real] [--both-alone] [--sizes]

Each cell prints spread / mean SE and spread / rms SE for the formula asked
for; the defaults are the product's (``kernels/stderr.py``), so they reproduce
``bench_calibration``'s table. ``--sizes`` prints instead, per metric, the mean
over repetitions of the metric and of the cell variance at full size (the
actual spread²), half and quarter size: whether the variance follows a power
law of the size, which the extrapolation assumes.

- ``--scale``: what is extrapolated, Var / (p(1-p))² (logit), Var / p(1-p) (arcsine) or Var.
- ``--model``: ``power`` (V_n = V_½² / V_¼, the size exponent held in ``--exponent``) or ``two-term``
  (V(s) = a/s + b/s² through both part sizes: V_n = (6 V_½ - V_¼) / 8, held in the same bounds).
- ``--given-recall-exponent``: the bounds for recall given the real set (the product's
  ``GIVEN_REAL_EXPONENTS``; ``0,1`` replays the formula before them).
- ``--given-density``: given the real set, density's SE from the iid formula (the product), from the cells
  like the other metrics, or the larger of the two.
- ``--given-all-real``: given the real set, recall's and coverage's variance between fake parts over all
  real rows (the cells averaged over real parts), so that only the fake sample's size changes.
- ``--both-alone``: with both sets drawn, the split SE as it comes (the formula before 2026-12-08; the
  product takes at least the run's own SE given the real set: by the law of total variance the first cannot
  be the smaller in expectation, but estimated from different cell pairs they cross by noise).
"""

from __future__ import annotations

import argparse

import numpy as np

from largeemb.kernels.stderr import GIVEN_REAL_EXPONENTS, cell_variances

METRICS = ("precision", "recall", "density", "coverage")
SCALES = {"logit": 2, "arcsine": 1, "none": 0}


def extrapolated(half: float, quarter: float, model: str, low: float, high: float) -> float:
    if not half > 0 or not quarter > 0:
        return max(half, 0.0) / 2
    full = (6 * half - quarter) / 8 if model == "two-term" else half * half / quarter
    return min(max(full, half * 2.0**-high), half * 2.0**-low)


def between_fake_parts(theta: np.ndarray) -> float:
    """Var of the metric over all real rows (the cells averaged over real parts) between fake parts."""
    t = theta.mean(axis=1)
    parts = t.shape[1]
    return float(np.mean([(t[:, a] - t[:, b]) ** 2 / 2 for a in range(parts) for b in range(a + 1, parts)]))


def split_se(half, quarter, value, key, which, args) -> float:
    """One repetition's SE from its cells (half, quarter: (splits, P, P))."""
    h, q = cell_variances(half)[which == "given_real"], cell_variances(quarter)[which == "given_real"]
    if which == "given_real" and args.given_all_real and key in ("recall", "coverage"):
        h, q = between_fake_parts(half), between_fake_parts(quarter)
    scales = [1.0, 1.0, 1.0]
    if key != "density" and SCALES[args.scale]:
        got = [(p * (1 - p)) ** SCALES[args.scale] for p in (np.mean(half), np.mean(quarter), value)]
        scales = got if min(got) > 0 else scales
    bounds = args.given_recall_exponent if (which, key) == ("given_real", "recall") else args.exponent
    return float(np.sqrt(extrapolated(h / scales[0], q / scales[1], args.model, *bounds) * scales[2]))


def replayed(dump, k, key, v, half, quarter, which, args) -> np.ndarray:
    """Every repetition's SE of one metric at one k, as ``args`` say."""
    se = np.array([split_se(half[r], quarter[r], v[r], key, which, args) for r in range(len(v))])
    if which == "given_real" and key in ("precision", "density"):
        counts = dump[f"fake_counts_{k}"]
        per_row = (counts > 0).astype(float) if key == "precision" else counts / k
        iid = per_row.std(axis=1, ddof=1) / np.sqrt(per_row.shape[1])
        if key == "precision" or args.given_density == "iid":
            se = iid
        elif args.given_density == "max":
            se = np.maximum(se, iid)
    return se


def table(dump, which: str, args) -> list[str]:
    rows = []
    for k in (3, 5, 10):
        cells = []
        for j, key in enumerate(METRICS):
            v = dump[f"values_{k}"][:, j]
            half, quarter = dump[f"theta_{k}_half_{key}"], dump[f"theta_{k}_quarter_{key}"]
            spread = v.std(ddof=1)
            if args.sizes:
                half_var = np.mean([cell_variances(t)[which == "given_real"] for t in half])
                quarter_var = np.mean([cell_variances(t)[which == "given_real"] for t in quarter])
                cells.append(f"{v.mean():.3f}/{half.mean():.3f}/{quarter.mean():.3f}: "
                             f"{spread**2 * 1e5:.1f}/{half_var * 1e5:.1f}/{quarter_var * 1e5:.1f}")
                continue
            se = replayed(dump, k, key, v, half, quarter, which, args)
            if which == "both" and not args.both_alone:
                se = np.maximum(se, replayed(dump, k, key, v, half, quarter, "given_real", args))
            cells.append(f"{spread / se.mean():.2f}/{spread / np.sqrt((se**2).mean()):.2f}")
        rows.append(f"| {which} | {k} | " + " | ".join(cells) + " |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix", help="bench_calibration --dump PREFIX")
    parser.add_argument("--data", default="text")
    parser.add_argument("--scale", choices=tuple(SCALES), default="logit")
    parser.add_argument("--model", choices=("power", "two-term"), default="power")
    parser.add_argument("--exponent", default="0,1", help="bounds of the size exponent: LOW,HIGH")
    default = ",".join(str(x) for x in GIVEN_REAL_EXPONENTS["recall"])
    parser.add_argument("--given-recall-exponent", default=default, help="bounds for recall given the real set")
    parser.add_argument("--given-density", choices=("iid", "cells", "max"), default="iid")
    parser.add_argument("--given-all-real", action="store_true", help="recall, coverage: all real rows per fake part")
    parser.add_argument("--both-alone", action="store_true", help="both: the split SE, not raised to the given-real SE")
    parser.add_argument("--sizes", action="store_true", help="the metric and its variance at full, half, quarter size")
    args = parser.parse_args()
    args.exponent = tuple(float(x) for x in args.exponent.split(","))
    args.given_recall_exponent = tuple(float(x) for x in args.given_recall_exponent.split(","))
    head = ("metric full/half/quarter: variance ×1e5 full (actual)/half/quarter" if args.sizes
            else "spread / mean SE / spread / rms SE")
    print(f"{args.data}, {head}\n\n| SE | k | " + " | ".join(METRICS) + " |\n|---|---|" + "---|" * 4)
    for setting, which in (("both", "both"), ("fixed", "given_real")):
        try:
            dump = np.load(f"{args.prefix}_{args.data}_{setting}.npz")
        except FileNotFoundError:
            continue
        print("\n".join(table(dump, which, args)))


if __name__ == "__main__":
    main()
