"""Peak disk of the checkpoints (OUT/.work) during `largeemb evaluate`, against the input size.

    python scripts/bench_disk.py [--rows 200000] [--dim 128] [--k 3,5,10]

Writes the benchmarks' synthetic pair, runs `largeemb evaluate` with default
options in a child process, and samples the size of OUT/.work every 0.1 s
until the run ends. Prints the peak, the inputs' size on disk and the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _bench import synth_pair


def size_of(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:  # removed while we walked
                pass
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", default="3,5,10")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = synth_pair(tmp, args.rows, args.dim)
        inputs = size_of(real) + size_of(fake)
        out = os.path.join(tmp, "out")
        work = os.path.join(out, ".work")
        start = time.perf_counter()
        job = subprocess.Popen(
            [sys.executable, "-m", "largeemb", "evaluate", real, fake, "--out", out, "--k", args.k],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        peak = 0
        while job.poll() is None:
            if os.path.isdir(work):
                peak = max(peak, size_of(work))
            time.sleep(0.1)
        if job.returncode:
            sys.stderr.write(job.stderr.read())
            raise SystemExit(job.returncode)
        seconds = time.perf_counter() - start
    mib = 2**20
    print(f"n = m = {args.rows}, dim {args.dim}, --k {args.k}: {seconds:.0f} s")
    print(f"inputs {inputs / mib:.1f} MiB on disk; checkpoint peak {peak / mib:.1f} MiB ({peak / inputs:.2f}x the inputs)")


if __name__ == "__main__":
    main()
