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

    python scripts/bench_companions.py --kernel [--real pypi.npy --fake npm.npy]

--kernel instead times the kernel companions, each alone on top of the
metrics-only run without companions: MiFID, KAD (its median bandwidth by
selection passes, then the Gaussian sums), RKE; and the memorisation audit on
top of a run with per-sample values (it needs them).
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
    parser.add_argument("--kernel", action="store_true", help="time MiFID, KAD, RKE and memorization instead")
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
        if args.kernel:
            kernel_family(run, args.repeats)
            return
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


def kernel_family(run, repeats: int) -> None:
    """Medians of ``repeats`` interleaved runs: each kernel companion alone, and what it adds."""
    runs = {
        "metrics only, no companions": ", samples=False, companions=()",
        "metrics only + mifid": ", samples=False, companions=('mifid',)",
        "metrics only + kad": ", samples=False, companions=('kad',)",
        "metrics only + rke": ", samples=False, companions=('rke',)",
        "per-sample values, no companions": ", companions=()",
        "per-sample values + memorization": ", companions=('memorization',)",
    }
    seconds = {name: [] for name in runs}
    passes = {}
    for _ in range(repeats):
        for name, options in runs.items():
            res = run(options)
            seconds[name].append(res["seconds"])
            own = {k: v for k, v in res["timings"].items() if k in ("mifid", "kad", "rke")}
            passes.setdefault(name, []).append(own)
            if name.endswith(("kad", "rke", "mifid", "memorization")):
                kept = ("mifid", "kad", "rke_real", "rke_fake", "memorization")
                passes[name + " values"] = {k: round(v, 6) for k, v in res["metrics"].items() if k in kept}
    median = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in median.items():
        print(f"{name:36} {value:8.2f} s   ({', '.join(f'{v:.2f}' for v in seconds[name])})")
    for metric in ("mifid", "kad", "rke"):
        own = statistics.median(t.get(metric, 0.0) for t in passes[f"metrics only + {metric}"])
        print(f"{metric}: +{median[f'metrics only + {metric}'] - median['metrics only, no companions']:.2f} s "
              f"on the run, its own pass {own:.2f} s; values {passes[f'metrics only + {metric} values']}")
    extra = median["per-sample values + memorization"] - median["per-sample values, no companions"]
    print(f"memorization: {extra:+.2f} s on a run with per-sample values; "
          f"values {passes['per-sample values + memorization values']}")


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
