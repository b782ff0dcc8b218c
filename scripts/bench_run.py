"""Time and peak memory of one full `largeemb evaluate` run on synthetic stores on disk.

    python scripts/bench_run.py --rows 1000000 --dim 64 [--dir DIR] [--k 5] [--no-samples]

Writes the two stores under DIR (kept, reused when present with the same
shape), runs the CLI in a child process, and prints wall time, the child's
peak RSS, the achieved rate in useful GFLOP/s (2·n·m·dim for the cross pass
plus 2·n²·dim for each self pass) and, from that rate, the projected wall time
at dim 512 and 2048 (the all-pairs work grows linearly with dim).
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


def run(real: str, fake: str, out: str, k: int, samples: bool, block_rows: int | None) -> dict:
    cmd = ["largeemb", "evaluate", real, fake, "--out", out, "--k", str(k), "--force"]
    cmd += ["--block-rows", str(block_rows)] if block_rows else []
    cmd += [] if samples else ["--no-samples"]
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
    args = parser.parse_args()

    base = args.dir or tempfile.mkdtemp(prefix="largeemb-bench-")
    os.makedirs(base, exist_ok=True)
    n, dim = args.rows, args.dim
    real = ensure_store(os.path.join(base, f"real-{n}x{dim}.zarr"), n, dim, seed=0)
    fake = ensure_store(os.path.join(base, f"fake-{n}x{dim}.zarr"), n, dim, seed=1, shift=0.05, drop_modes=3)
    res = run(real, fake, os.path.join(base, f"out-{n}x{dim}"), args.k, not args.no_samples, args.block_rows)
    flops = 3 * 2.0 * n * n * dim  # cross pass + two self passes, as useful work
    rate = flops / res["wall_s"] / 1e9
    m = res["metrics"]
    print(
        f"n = m = {n}, dim {dim}, k {args.k}, samples {'off' if args.no_samples else 'on'}, "
        f"block rows {args.block_rows or 'default'}"
    )
    print(f"wall {res['wall_s']:.1f} s   peak RSS {res['peak_mib']:.0f} MiB   useful rate {rate:.1f} GFLOP/s")
    print("stage seconds: " + ", ".join(f"{key} {v:.1f}" for key, v in m["timings_s"].items()))
    print("metrics: " + ", ".join(f"{key} {v:.5f}" for key, v in m["metrics"].items()))
    for target in (512, 2048):
        print(f"projected wall at dim {target}: {res['wall_s'] * target / dim / 3600:.2f} h")


if __name__ == "__main__":
    main()
