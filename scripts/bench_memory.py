"""Peak RSS does not grow with the row count beyond O((n+m)·k) bookkeeping.

    python scripts/bench_memory.py [--small 50000] [--large 400000] [--dim 128] [--dir DIR]

Runs `largeemb evaluate` (CLI, default options, stores on disk) at two sizes,
each in its own child process, and compares the growth of peak RSS with the
bookkeeping the larger run must hold (per-row radii, ball counts, flags,
candidate lists and per-sample arrays, estimated below) plus 200 MB.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from _bench import run_child
from bench_run import ensure_store
from largeemb.kernels.parts import listed_size
from largeemb.kernels.splits import SPLITS


#: Bytes of bookkeeping per row of each set in a default run (standard errors on): K float32
#: distances + int64 indices (K: the part radii's lists, 8k + 25), radii/counts per k (8 B each),
#: flags, per-sample arrays (about six 8-byte values), shortlists of about two pairs, the part
#: radii (2 x SPLITS float64) and three split masks of 4 words.
def bookkeeping_bytes(rows: int, k: int = 5) -> int:
    K = listed_size(k) + 1
    return rows * (K * 12 + 16 + 2 + 6 * 8 + 2 * 32 + 2 * SPLITS * 8 + 3 * 4 * 8)


def child_peak(real, fake, out) -> float:
    code = (
        "import sys\nfrom largeemb.cli import main\n"
        f"sys.argv = ['largeemb', 'evaluate', {real!r}, {fake!r}, '--out', {out!r}, '--force']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "_out = {}\n"
    )
    return run_child(code)["peak_mib"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="largeemb-mem-")
    peaks = {}
    for n in (args.small, args.large):
        real = ensure_store(os.path.join(base, f"real-{n}x{args.dim}.zarr"), n, args.dim, seed=0)
        fake = ensure_store(
            os.path.join(base, f"fake-{n}x{args.dim}.zarr"), n, args.dim, seed=1, shift=0.05, drop_modes=3
        )
        peaks[n] = child_peak(real, fake, os.path.join(base, f"out-{n}"))
        print(f"n = m = {n}, dim {args.dim}: peak RSS {peaks[n]:.0f} MiB", flush=True)
    growth = peaks[args.large] - peaks[args.small]
    allowance = (2 * (bookkeeping_bytes(args.large) - bookkeeping_bytes(args.small))) / 2**20 + 200
    print(f"growth {growth:.0f} MiB; allowed: bookkeeping {allowance - 200:.0f} MiB + 200 MiB = {allowance:.0f} MiB")
    print("within bound" if growth <= allowance else "OVER BOUND")


if __name__ == "__main__":
    main()
