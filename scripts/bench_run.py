"""Time and peak memory of one full `largeemb evaluate` run on synthetic stores on disk.

    python scripts/bench_run.py --rows 1000000 --dim 64 [--dir DIR] [--k 5] [--no-samples]
    python scripts/bench_run.py --rows 200000 --dim 768 --modes 1 \
        --options "--no-plots --no-samples --no-standard-errors --precision auto" --nightly 1000000

Writes the two stores under DIR (kept, reused when present with the same
shape and modes), runs the CLI in a child process (``--options`` added to it),
and prints wall time, the child's peak RSS, the achieved rate in useful GFLOP/s
(2·n·m·dim for the cross pass plus 2·n²·dim for each self pass) and, from that
rate, the projected wall time at dim 512 and 2048 (the all-pairs work grows
linearly with dim).

``--nightly N`` projects, from the run's own stage times, a nightly evaluate of
N fake rows against a reference of N real rows (its radii stored, so the real
self pass is not run again) at the same dim: half the radii stage (the fake
set's) and the cross pass scale with N² / n², half the moments stage and the
partition with N / n, the rest (start-up, companions, FD, writing) stays; on this
machine, and on ``--cores`` cores assuming the pairs spread evenly over them
(``bench_scaling.py`` measures how far that holds on this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def ensure_store(path: str, rows: int, dim: int, **synth) -> str:
    import zarr

    from largeemb.io.synth import write_synth

    if os.path.isdir(path):
        arr = zarr.open_array(path, mode="r")
        if arr.shape == (rows, dim):
            return path
    return write_synth(path, rows, dim, force=True, **synth)


def run(real: str, fake: str, out: str, k: int, samples: bool, block_rows: int | None, options=()) -> dict:
    cmd = [sys.executable, "-m", "largeemb", "evaluate", real, fake, "--out", out, "--k", str(k), "--force"]
    cmd += ["--block-rows", str(block_rows)] if block_rows else []
    cmd += [] if samples or "--no-samples" in options else ["--no-samples"]
    cmd += list(options)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(proc.returncode)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with open(os.path.join(out, "metrics.json")) as fh:
        metrics = json.load(fh)
    return {"wall_s": wall, "peak_mib": peak, "metrics": metrics}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument(
        "--dir", default=None, help="where the stores and the result go (default: a temporary directory)"
    )
    parser.add_argument("--no-samples", action="store_true")
    parser.add_argument("--block-rows", type=int, default=None)
    parser.add_argument("--modes", type=int, default=10, help="Gaussian modes of the synthetic sets (1: no clusters)")
    parser.add_argument("--options", default="", help="options added to `largeemb evaluate`")
    parser.add_argument("--nightly", type=int, help="project a nightly run: this many fake rows against a reference")
    parser.add_argument("--cores", type=int, default=64, help="cores of the projection's cluster")
    args = parser.parse_args()

    base = args.dir or tempfile.mkdtemp(prefix="largeemb-bench-")
    os.makedirs(base, exist_ok=True)
    n, dim = args.rows, args.dim
    tag = f"{n}x{dim}" + ("" if args.modes == 10 else f"-{args.modes}modes")
    drop = 3 if args.modes > 3 else 0
    real = ensure_store(os.path.join(base, f"real-{tag}.zarr"), n, dim, seed=0, modes=args.modes)
    fake = ensure_store(
        os.path.join(base, f"fake-{tag}.zarr"), n, dim, seed=1, shift=0.05, drop_modes=drop, modes=args.modes
    )
    res = run(
        real, fake, os.path.join(base, f"out-{tag}"), args.k, not args.no_samples, args.block_rows, args.options.split()
    )
    flops = 3 * 2.0 * n * n * dim  # cross pass + two self passes, as useful work
    rate = flops / res["wall_s"] / 1e9
    m = res["metrics"]
    samples = "off" if args.no_samples or "--no-samples" in args.options else "on"
    print(
        f"n = m = {n}, dim {dim}, k {args.k}, samples {samples}, "
        f"block rows {args.block_rows or 'default'}"
    )
    print(f"wall {res['wall_s']:.1f} s   peak RSS {res['peak_mib']:.0f} MiB   useful rate {rate:.1f} GFLOP/s")
    print("stage seconds: " + ", ".join(f"{key} {v:.1f}" for key, v in m["timings_s"].items()))
    print("metrics: " + ", ".join(f"{key} {v:.5f}" for key, v in m["metrics"].items()))
    for target in (512, 2048):
        print(f"projected wall at dim {target}: {res['wall_s'] * target / dim / 3600:.2f} h")
    if args.nightly:
        print(nightly(m["timings_s"], res["wall_s"], n, args.nightly, args.cores))


def nightly(stages: dict, wall: float, n: int, rows: int, cores: int) -> str:
    """A nightly evaluate of ``rows`` fake rows against a reference of ``rows``, from one run's stage times."""
    scale = rows / n
    pairs = (stages.get("radii", 0.0) / 2 + stages.get("cross", 0.0)) * scale**2
    linear = (stages.get("moments", 0.0) / 2 + stages.get("partition", 0.0)) * scale
    fixed = wall - sum(v for key, v in stages.items() if key in ("radii", "cross", "moments", "partition"))
    here = os.cpu_count() or 1
    return (
        f"nightly projection, {rows:,} fake rows against a {rows:,}-row reference: "
        f"{(pairs + linear + fixed) / 3600:.2f} h on this machine ({here} cores; the pairs {pairs / 3600:.2f} h), "
        f"{(pairs * here / cores + linear + fixed) / 3600:.2f} h on {cores} cores "
        "(the pairs spread evenly over the cores; moments and the rest as here)"
    )

if __name__ == "__main__":
    main()
