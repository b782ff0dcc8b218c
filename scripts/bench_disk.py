"""Peak disk of the checkpoints (OUT/.work) during `largeemb evaluate`, against the input size.

    python scripts/bench_disk.py [--rows 200000] [--dim 128] [--k 3,5,10] [--by-unit]

Writes the benchmarks' synthetic pair, runs `largeemb evaluate` with default
options in a child process, and samples the size of OUT/.work every 0.1 s
until the run ends. Prints the peak, the inputs' size on disk and the ratio;
``--by-unit`` also prints what the work directory held at the peak, by kind
of unit (names without their numbers), and each kind's own peak.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter

from _bench import synth_pair


def sizes(path: str) -> dict[str, int]:
    """Size of each file under ``path``, by path relative to it."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            try:
                out[os.path.relpath(os.path.join(root, name), path)] = os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:  # removed while we walked
                pass
    return out


def by_kind(files: dict[str, int]) -> Counter:
    """Bytes per kind of file: a unit's name without its numbers (``cross-tile``, ``radii-real-state``)."""
    kinds = Counter()
    for name, size in files.items():
        kinds[re.sub(r"(-\d+)+", "", os.path.basename(name).split(".tmp-")[0].removesuffix(".npz"))] += size
    return kinds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", default="3,5,10")
    parser.add_argument(
        "--by-unit", action="store_true", help="what the work directory held at the peak, by kind of unit"
    )
    args = parser.parse_args()
    mib = 2**20
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = synth_pair(tmp, args.rows, args.dim)
        inputs = sum(sizes(real).values()) + sum(sizes(fake).values())
        out = os.path.join(tmp, "out")
        work = os.path.join(out, ".work")
        start = time.perf_counter()
        job = subprocess.Popen(
            [sys.executable, "-m", "largeemb", "evaluate", real, fake, "--out", out, "--k", args.k],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        peak, at_peak, own_peaks = 0, Counter(), Counter()
        while job.poll() is None:
            if os.path.isdir(work):
                files = sizes(work)
                total = sum(files.values())
                if args.by_unit:
                    kinds = by_kind(files)
                    own_peaks |= kinds  # elementwise max
                    if total > peak:
                        at_peak = kinds
                peak = max(peak, total)
            time.sleep(0.1)
        if job.returncode:
            sys.stderr.write(job.stderr.read())
            raise SystemExit(job.returncode)
        seconds = time.perf_counter() - start
    print(f"n = m = {args.rows}, dim {args.dim}, --k {args.k}: {seconds:.0f} s")
    print(
        f"inputs {inputs / mib:.1f} MiB on disk; checkpoint peak {peak / mib:.1f} MiB ({peak / inputs:.2f}x the inputs)"
    )
    if args.by_unit:
        print("kind of unit: MiB at the peak, own peak MiB")
        for kind, size in sorted(own_peaks.items(), key=lambda kv: -kv[1]):
            print(f"  {kind}: {at_peak[kind] / mib:.1f}, {size / mib:.1f}")


if __name__ == "__main__":
    main()
