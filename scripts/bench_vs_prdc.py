"""largeemb vs the prdc package on the same data, in one run.

    python scripts/bench_vs_prdc.py [--rows 20000] [--dim 512] [--k 5] [--modes 10]

Writes a synthetic real/fake pair to zarr stores in a temporary directory,
then runs each tool in its own fresh process (so each peak RSS is its own):
prdc loads both arrays into memory, largeemb streams them from the stores.
Like for like, largeemb computes what prdc computes (the four metrics, plus
FD): per-sample values and plot projections off. A second largeemb run with
the default options (per-sample values and PCA projections on) is shown too,
and one with pruning off (--no-prune: every tile computed in full), which is
what data without cluster structure costs (--modes 1 writes such data).
Imports happen before the clock starts, for both tools. Prints wall time,
peak RSS, their ratios, and whether the metrics agree.
"""

from __future__ import annotations

import argparse
import tempfile

from _bench import run_child, synth_pair

KEYS = ("precision", "recall", "density", "coverage")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--modes", type=int, default=10, help="Gaussian modes of the synthetic sets (1: no cluster structure)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        real, fake = synth_pair(tmp, args.rows, args.dim, args.modes)

        def largeemb_run(options: str) -> dict:
            return run_child(
                "import time, largeemb.api\n"
                f"t = time.perf_counter(); r = largeemb.api.evaluate({real!r}, {fake!r}, k={args.k}{options})\n"
                "_out = {'seconds': time.perf_counter() - t, **r.metrics}\n"
            )

        ours = largeemb_run(", samples=False, plots=False")
        unpruned = largeemb_run(", samples=False, plots=False, prune=False")
        default = largeemb_run("")
        theirs = run_child(
            "import contextlib, io, time, numpy as np, zarr\nfrom prdc import compute_prdc\n"
            f"real = zarr.open_array({real!r})[:]; fake = zarr.open_array({fake!r})[:]\n"
            "t = time.perf_counter()\n"
            f"with contextlib.redirect_stdout(io.StringIO()): m = compute_prdc(real, fake, {args.k})\n"
            "_out = {'seconds': time.perf_counter() - t, **{k: float(v) for k, v in m.items()}}\n"
        )

    print(f"n = m = {args.rows}, dim {args.dim}, k {args.k}, {args.modes} modes")
    print(f"{'':10}{'seconds':>10}{'peak MiB':>10}   " + "  ".join(f"{k:>9}" for k in KEYS))
    for name, res in (("largeemb", ours), ("no-prune", unpruned), ("defaults", default), ("prdc", theirs)):
        print(f"{name:10}{res['seconds']:10.2f}{res['peak_mib']:10.0f}   " + "  ".join(f"{res[k]:9.5f}" for k in KEYS))
    print(f"speed-up: {theirs['seconds'] / ours['seconds']:.1f}x   memory: {ours['peak_mib'] / theirs['peak_mib']:.3f} of prdc's peak")
    print(f"speed-up with pruning off: {theirs['seconds'] / unpruned['seconds']:.1f}x")
    same = all(abs(res[k] - theirs[k]) <= 1e-12 for k in KEYS for res in (ours, unpruned, default))
    print("metrics identical" if same else "METRICS DIFFER")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
