"""Nightly mode costs, in one run: reference cache and several k at once.

    python scripts/bench_reference.py [--rows 20000] [--dim 256] [--repeats 3]

Prints median wall times of
- evaluate REAL FAKE (k=5) vs evaluate REF FAKE (k=5) with a reference built
  for k=3,5,10, and their ratio: with the default options (per-sample values
  and plot projections) and for the metrics alone (--no-samples --no-plots);
- evaluate with k=3,5,10 in one pass vs k=5 alone, and their ratio;
and checks that the metrics agree exactly. Stores are synthetic, on disk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _bench import synth_pair


def timed(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import largeemb

    with tempfile.TemporaryDirectory() as tmp:
        real, fake = synth_pair(tmp, args.rows, args.dim)
        start = time.perf_counter()
        ref = largeemb.build_reference(real, f"{tmp}/ref", k=(3, 5, 10))
        build_s = time.perf_counter() - start
        full_s, full = timed(lambda: largeemb.evaluate(real, fake, k=5), args.repeats)
        cached_s, cached = timed(lambda: largeemb.evaluate(ref.path, fake, k=5), args.repeats)
        lean = {"samples": False, "plots": False}
        lean_full_s, _ = timed(lambda: largeemb.evaluate(real, fake, k=5, **lean), args.repeats)
        lean_cached_s, lean_cached = timed(lambda: largeemb.evaluate(ref.path, fake, k=5, **lean), args.repeats)
        sweep_s, sweep = timed(lambda: largeemb.evaluate(real, fake, k=(3, 5, 10)), args.repeats)

    print(f"n = m = {args.rows}, dim {args.dim}, median of {args.repeats}")
    print(f"reference build (k=3,5,10):       {build_s:8.2f} s")
    print(f"evaluate REAL FAKE, k=5:          {full_s:8.2f} s")
    print(f"evaluate REF FAKE, k=5:           {cached_s:8.2f} s   ratio {cached_s / full_s:.2f}")
    print(f"metrics only, REAL FAKE, k=5:     {lean_full_s:8.2f} s")
    print(f"metrics only, REF FAKE, k=5:      {lean_cached_s:8.2f} s   ratio {lean_cached_s / lean_full_s:.2f}")
    print(f"evaluate REAL FAKE, k=3,5,10:     {sweep_s:8.2f} s   ratio to k=5 alone {sweep_s / full_s:.2f}")
    same = (
        cached.to_dict()["metrics"] == full.to_dict()["metrics"] == lean_cached.to_dict()["metrics"]
        and sweep.by_k[5] == full.by_k[5]
    )
    print("metrics identical" if same else "METRICS DIFFER")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
