"""What the companion metrics cost, in one run, on the same stores.

    python scripts/bench_companions.py [--rows 20000] [--dim 512] [--modes 10]
    python scripts/bench_companions.py --real pypi.npy --fake npm.npy
    python scripts/bench_companions.py --rows 200000 --dim 128 --every   # one run with every metric on

Each largeemb run is a fresh process on the same zarr stores; times are
medians of --repeats runs. Pairs of runs differ only in the companions:
- metrics only (no per-sample values, no plots): none vs F-scores, Vendi, FD∞
  (authenticity needs per-sample values, so it is left out here);
- with per-sample values (no plots): none vs all four default companions;
- full KID (--kid) on top of the metrics-only run, as a ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from _bench import data_pair, run_child


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--modes", type=int, default=10)
    parser.add_argument("--real", help="real embeddings, .npy (instead of synthetic data)")
    parser.add_argument("--fake", help="fake embeddings, .npy")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--every", action="store_true", help="one run with every metric on (KID over all pairs and 100 subsets)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        real, fake, what = data_pair(tmp, args)

        def run(options: str) -> dict:
            return run_child(
                "import time, largeemb.api\n"
                "t = time.perf_counter(); "
                f"r = largeemb.api.evaluate({real!r}, {fake!r}, k={args.k}, plots=False{options})\n"
                "_out = {'seconds': time.perf_counter() - t, 'metrics': r.metrics, 'timings': r.timings_s}\n"
            )

        print(what)
        if args.every:
            from largeemb.config import COMPANIONS

            res = run(f", kid=True, kid_subsets=100, companions={COMPANIONS!r}")
            print(f"every metric on: {res['seconds']:.1f} s, peak RSS {res['peak_mib']:.0f} MiB")
            print("metrics:", {k: round(v, 6) for k, v in res["metrics"].items()})
            print("timings (s):", {k: round(v, 2) for k, v in res["timings"].items()})
            return
        runs = {
            "metrics only, no companions": ", samples=False, companions=()",
            "metrics only, companions": ", samples=False",
            "per-sample values, no companions": ", companions=()",
            "per-sample values, companions": "",
            "metrics only + full KID": ", samples=False, kid=True",
        }
        seconds = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, options in runs.items():
                seconds[name].append(run(options)["seconds"])
        median = {name: statistics.median(values) for name, values in seconds.items()}
        for name, value in median.items():
            print(f"{name:36} {value:8.2f} s   ({', '.join(f'{v:.2f}' for v in seconds[name])})")
        base, plus = median["metrics only, no companions"], median["metrics only, companions"]
        print(f"companions add {100 * (plus / base - 1):+.1f}% to a metrics-only run")
        base, plus = median["per-sample values, no companions"], median["per-sample values, companions"]
        print(f"companions add {100 * (plus / base - 1):+.1f}% to a run with per-sample values")
        ratio = median["metrics only + full KID"] / median["metrics only, companions"]
        print(f"full KID: {ratio:.2f}x the metrics-only run")


if __name__ == "__main__":
    main()
