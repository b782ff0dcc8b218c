"""largeemb vs the prdc package on the same data, in one run.

    python scripts/bench_vs_prdc.py [--rows 20000] [--dim 512] [--k 5] [--modes 10] [--cli]
    python scripts/bench_vs_prdc.py --real pypi.npy --fake npm.npy [--k 5] [--cli]
    python scripts/bench_vs_prdc.py --modes 1 --metrics-only --precision float32,bf16 [--companions none]

Writes a synthetic real/fake pair (or copies two .npy files, memory-mapped)
to zarr stores in a temporary directory, then runs each tool in its own
fresh process (so each peak RSS is its own): prdc loads both arrays into
memory, largeemb streams them from the stores. Like for like, largeemb
computes what prdc computes (the four metrics, plus FD): per-sample values,
standard errors and plot projections off. A second largeemb run with the default options
(per-sample values and PCA projections on) is shown too, and one with pruning
off (--no-prune: every tile computed in full), which is what data without
cluster structure costs (--modes 1 writes such data); ``--metrics-only``
skips those two. For largeemb the per-pass timings and the float64 work per
pass (metrics.json's ``float64``: rows and pairs settled in float64) are printed.
Imports happen before the clock starts, for both tools.
``--precision`` runs largeemb once per listed precision (auto, float32, bf16,
bf16-emulated) and prints, for screened runs, the share of tile entries each
pass re-checked in float32; ``--companions`` picks the companion metrics
(default the engine's; ``none`` computes what prdc computes and nothing else).
Prints wall time, peak RSS, their ratios, and whether the metrics agree.

``--cli`` times instead what a user runs: ``largeemb evaluate REAL FAKE --out
DIR`` with default options, end to end in a fresh process (start-up, metrics,
per-sample values, projections, t-SNE, figures, publishing), against prdc's
``compute_prdc`` on the same data in the same run. ``--cli-options`` adds
options to that command (e.g. ``"--no-plots --no-samples --no-standard-errors"``:
what prdc computes, plus the default companions and FD), and with
``--precision`` it runs once per listed precision (``--precision P`` added).
"""

from __future__ import annotations

import argparse
import tempfile

from _bench import data_pair, npy_pair, run_child, synth_pair

KEYS = ("precision", "recall", "density", "coverage")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--modes", type=int, default=10, help="Gaussian modes of the synthetic sets (1: no cluster structure)"
    )
    parser.add_argument("--real", help="real set as a .npy file (with --fake; replaces the synthetic pair)")
    parser.add_argument("--fake", help="fake set as a .npy file")
    parser.add_argument("--metrics-only", action="store_true", help="skip the no-prune and default-options runs")
    parser.add_argument(
        "--cli", action="store_true", help="time the default `largeemb evaluate` command end to end instead"
    )
    parser.add_argument(
        "--precision", default="auto", help="comma-separated precisions, one largeemb run each (e.g. float32,bf16)"
    )
    parser.add_argument("--cli-options", default="", help="with --cli: options added to `largeemb evaluate`")
    parser.add_argument("--companions", help="companion metrics, comma-separated, or 'none' (default: the engine's)")
    args = parser.parse_args()
    if (args.real is None) != (args.fake is None):
        parser.error("--real and --fake go together")
    if args.cli:
        return cli_vs_prdc(args)

    with tempfile.TemporaryDirectory() as tmp:
        real, fake, what = data_pair(tmp, args)
        what += f", k {args.k}"

        def largeemb_run(options: str) -> dict:
            return run_child(
                "import time, largeemb.api\n"
                f"t = time.perf_counter(); r = largeemb.api.evaluate({real!r}, {fake!r}, k={args.k}{options})\n"
                "_out = {'seconds': time.perf_counter() - t, **r.metrics, 'timings': r.timings_s,\n"
                " 'f64': r.float64,\n"
                " 'screening': r.details.get('screening', {})}\n"
            )

        extra = "" if args.companions is None else f", companions={_names(args.companions)!r}"
        precisions = args.precision.split(",")
        runs = [
            (
                "largeemb" if len(precisions) == 1 else p,
                largeemb_run(f", samples=False, plots=False, standard_errors=False, precision={p!r}{extra}"),
            )
            for p in precisions
        ]
        ours = min((res for _, res in runs), key=lambda res: res["seconds"])
        if not args.metrics_only:
            runs += [
                ("no-prune", largeemb_run(", samples=False, plots=False, standard_errors=False, prune=False")),
                ("defaults", largeemb_run("")),
            ]
        theirs = prdc_run(real, fake, args.k)

    print(what)
    print(f"{'':10}{'seconds':>10}{'peak MiB':>10}   " + "  ".join(f"{k:>9}" for k in KEYS))
    for name, res in runs + [("prdc", theirs)]:
        print(f"{name:10}{res['seconds']:10.2f}{res['peak_mib']:10.0f}   " + "  ".join(f"{res[k]:9.5f}" for k in KEYS))
    for name, res in runs:
        print(f"{name} timings_s: " + ", ".join(f"{p} {s:.2f}" for p, s in res["timings"].items()))
        print(f"{name} float64 work per pass: {res['f64']}")
        shares = {p: f"{v['share']:.3%}" for p, v in res["screening"].items() if isinstance(v, dict)}
        print(
            f"{name} precision {res['screening'].get('precision')}"
            + (f", re-checked in float32: {shares}" if shares else "")
        )
    for name, res in runs[: len(precisions)] if len(precisions) > 1 else []:
        print(f"speed-up {name}: {theirs['seconds'] / res['seconds']:.1f}x")
    print(
        f"speed-up: {theirs['seconds'] / ours['seconds']:.1f}x   "
        f"memory: {ours['peak_mib'] / theirs['peak_mib']:.3f} of prdc's peak"
    )
    if not args.metrics_only:
        print(f"speed-up with pruning off: {theirs['seconds'] / dict(runs)['no-prune']['seconds']:.1f}x")
    same = all(abs(res[k] - theirs[k]) <= 1e-12 for k in KEYS for _, res in runs)
    print(
        "metrics identical"
        if same
        else "METRICS DIFFER (see the docstring of tests/test_ties.py on prdc's float32 ties)"
    )
    raise SystemExit(0 if same else 1)


def _names(text: str) -> tuple[str, ...]:
    return () if text.strip() in ("", "none") else tuple(part.strip() for part in text.split(","))


def prdc_run(real: str, fake: str, k: int) -> dict:
    return run_child(
        "import contextlib, io, time, numpy as np, zarr\nfrom prdc import compute_prdc\n"
        f"real = zarr.open_array({real!r})[:]; fake = zarr.open_array({fake!r})[:]\n"
        "t = time.perf_counter()\n"
        f"with contextlib.redirect_stdout(io.StringIO()): m = compute_prdc(real, fake, {k})\n"
        "_out = {'seconds': time.perf_counter() - t, **{k: float(v) for k, v in m.items()}}\n"
    )


def cli_vs_prdc(args) -> None:
    """The default CLI path, end to end (a fresh process, plots included), against prdc."""
    import json
    import subprocess
    import sys
    import time

    with tempfile.TemporaryDirectory() as tmp:
        real, fake = (
            npy_pair(tmp, args.real, args.fake) if args.real else synth_pair(tmp, args.rows, args.dim, args.modes)
        )
        base = [sys.executable, "-m", "largeemb", "evaluate", real, fake, "--k", str(args.k), *args.cli_options.split()]
        precisions = [None] if args.precision == "auto" else args.precision.split(",")  # None: no --precision
        runs = []
        for i, precision in enumerate(precisions):
            out = f"{tmp}/out{i}"
            command = base + ["--out", out] + (["--precision", precision] if precision else [])
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            with open(f"{out}/metrics.json") as fh:
                runs.append((precision or "default", seconds, json.load(fh)))
        theirs = prdc_run(real, fake, args.k)
    what = f"{args.real} vs {args.fake}" if args.real else f"n = m = {args.rows}, dim {args.dim}, {args.modes} modes"
    print(f"{what}, k {args.k}; `largeemb evaluate REAL FAKE --out DIR --k {args.k} {args.cli_options}`".rstrip())
    for name, seconds, ours in runs:
        stages = ", ".join(f"{stage} {value:.2f}" for stage, value in ours["timings_s"].items() if stage != "total")
        used = ours.get("details", {}).get("screening", {}).get("precision")
        print(f"largeemb CLI ({name}, ran {used}) {seconds:.2f} s wall (stages: {stages})")
        print(f"  speed-up: {theirs['seconds'] / seconds:.1f}x")
    print(f"prdc {theirs['seconds']:.2f} s")
    same = all(abs(ours["metrics"][k] - theirs[k]) <= 1e-12 for k in KEYS for _, _, ours in runs)
    print("metrics identical" if same else "METRICS DIFFER")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
