"""What the companion metrics cost, in one run, on the same stores.

    python scripts/bench_companions.py [--rows 20000] [--dim 512] [--modes 10]
    python scripts/bench_companions.py --real pypi.npy --fake npm.npy
    python scripts/bench_companions.py --rows 200000 --dim 128 --every   # one run with every metric on
    python scripts/bench_companions.py --family [--real pypi.npy --fake npm.npy]   # the k-NN family's cost

Each largeemb run is a fresh process on the same zarr stores; times are
medians of --repeats runs. Pairs of runs differ only in the companions:
- metrics only (no per-sample values, no plots): none vs F-scores, Vendi, FD∞
  (authenticity needs per-sample values, so it is left out here);
- with per-sample values (no plots): none vs all four default companions;
- full KID (--kid) on top of the metrics-only run, as a ratio.

--family: metrics only (no per-sample values, no plots), the default
companions without the k-NN family against each of its members added, and
all of them: what each adds to a default run (the runs interleaved, medians
of wall and of CPU seconds: on a shared machine the CPU seconds are the steadier).
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
    parser.add_argument("--family", action="store_true", help="the k-NN family's cost on a metrics-only run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        real, fake, what = data_pair(tmp, args)

        def run(options: str) -> dict:
            return run_child(
                "import time, largeemb.api\n"
                "t, c = time.perf_counter(), time.process_time(); "
                f"r = largeemb.api.evaluate({real!r}, {fake!r}, k={args.k}, plots=False{options})\n"
                "_out = {'seconds': time.perf_counter() - t, 'cpu': time.process_time() - c, 'metrics': r.metrics, "
                "'timings': r.timings_s}\n"
            )

        print(what)
        if args.family:
            return family(run, args.repeats)
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


def family(run, repeats: int) -> None:
    """Each k-NN family member added to the default companions without the family, metrics only."""
    from largeemb.config import DEFAULT_COMPANIONS

    members = ("sym_precision_recall", "rarity", "pr_cover", "clipped_density_coverage")
    base = tuple(c for c in DEFAULT_COMPANIONS if c not in members)
    # sym_precision_recall and rarity count in balls of the run's own radii (no wider reach): measured together.
    runs = {
        "default without the family": base,
        "+ sym_precision_recall, rarity": base + members[:2],
        "+ pr_cover": base + ("pr_cover",),
        "+ clipped_density_coverage": base + ("clipped_density_coverage",),
        "+ the family on by default": tuple(DEFAULT_COMPANIONS),
        "+ the whole family": base + members,
    }
    seconds, cpu = {name: [] for name in runs}, {name: [] for name in runs}
    for _ in range(repeats):
        for name, companions in runs.items():
            res = run(f", samples=False, companions={companions!r}")
            seconds[name].append(res["seconds"])
            cpu[name].append(res["cpu"])
    first, first_cpu = (statistics.median(v["default without the family"]) for v in (seconds, cpu))
    print(f"{'':32} {'wall s':>8} {'':>7}  {'CPU s':>8} {'':>7}  (CPU s of each run)")
    for name in runs:
        wall, spent = statistics.median(seconds[name]), statistics.median(cpu[name])
        print(
            f"{name:32} {wall:8.2f} {100 * (wall / first - 1):+6.1f}%  "
            f"{spent:8.2f} {100 * (spent / first_cpu - 1):+6.1f}%  ({', '.join(f'{v:.1f}' for v in cpu[name])})"
        )


if __name__ == "__main__":
    main()
