"""Tie-heavy data against tie-free data of the same shape, in one run.

    python scripts/bench_ties.py [--rows 3072] [--dim 1024] [--k 5] [--repeats 3] [--samples]

Three real/fake pairs, each n = m = rows x dim float32, written to zarr stores
in a temporary directory and evaluated (metrics only, like
``bench_vs_prdc.py``) in fresh child processes:

- ``random``: Gaussian rows, no ties (the baseline);
- ``all-ties``: rows s·e_i (s in ±1, ±2, 3: one-hot or quantised embeddings
  look like this), where almost every distance ties with many others;
- ``duplicated``: Gaussian rows, each repeated 5 to 50 times, shuffled.

Prints the median wall time of each (``--repeats`` runs, interleaved so that
load on a shared machine hits all alike) and its ratio to ``random``, the
same for the distance passes alone (radii, float64 radii, cross, samples: FD's
sqrtm at dim 1024 takes seconds and varies with load, whatever the data),
and the float64 work per pass (metrics.json's ``float64``: whether the tiles
were exact, rows and pairs settled in float64 by the radii, float64 and cross
passes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import numpy as np

from _bench import run_child

#: The passes whose work ties and duplicates can change (not moments, FD).
TIE_PASSES = ("radii", "radii_float64", "cross", "samples")


def all_ties(rows: int, dim: int, scales) -> np.ndarray:
    out = np.zeros((rows, dim), np.float32)
    i = np.arange(rows)
    out[i, i % dim] = np.asarray(scales, np.float32)[(i // dim) % len(scales)]
    return out


def duplicated(rows: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = []
    while sum(counts) < rows:
        counts.append(int(rng.integers(5, 51)))
    base = rng.standard_normal((len(counts), dim)).astype(np.float32)
    out = np.repeat(base, counts, axis=0)[:rows]
    return out[rng.permutation(rows)]


def write(path: str, data: np.ndarray) -> str:
    import zarr

    arr = zarr.create_array(path, shape=data.shape, dtype=data.dtype, chunks=(min(len(data), 4096), data.shape[1]))
    arr[:] = data
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3072)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--samples", action="store_true", help="per-sample values on too (the cross pass's nearest rows and realism)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pairs = {
        "random": (
            rng.standard_normal((args.rows, args.dim)).astype(np.float32),
            (rng.standard_normal((args.rows, args.dim)) * 1.05).astype(np.float32),
        ),
        "all-ties": (
            all_ties(args.rows, args.dim, (1, -1, 2, -2, 3)), all_ties(args.rows, args.dim, (1, 2, -2, 3, -1)),
        ),
        "duplicated": (duplicated(args.rows, args.dim, 1), duplicated(args.rows, args.dim, 2) * np.float32(1.05)),
    }
    seconds = {name: [] for name in pairs}
    ties_seconds = {name: [] for name in pairs}
    fallback = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            name: (write(f"{tmp}/{name}-real.zarr", r), write(f"{tmp}/{name}-fake.zarr", f))
            for name, (r, f) in pairs.items()
        }
        for _ in range(args.repeats):
            for name, (real, fake) in paths.items():
                res = run_child(
                    "import time, largeemb.api\n"
                    "t = time.perf_counter(); "
                    f"r = largeemb.api.evaluate({real!r}, {fake!r}, k={args.k}, samples={args.samples}, plots=False)\n"
                    "_out = {'seconds': time.perf_counter() - t, 'timings': r.timings_s,\n"
                    " 'f64': r.float64}\n"
                )
                seconds[name].append(res["seconds"])
                ties_seconds[name].append(sum(res["timings"].get(p, 0.0) for p in TIE_PASSES))
                fallback[name] = (res["f64"], res["timings"])
    base = statistics.median(seconds["random"])
    tied = {name: statistics.median(t) for name, t in ties_seconds.items()}
    print(f"n = m = {args.rows}, dim {args.dim}, k {args.k}, median of {args.repeats} interleaved runs")
    for name, times in seconds.items():
        med = statistics.median(times)
        work, timings = fallback[name]
        passes = ", ".join(f"{p} {s:.2f}" for p, s in timings.items() if p != "total")
        print(
            f"{name:11}{med:8.2f} s  {med / base:5.2f}x random;  distance passes {tied[name]:7.2f} s "
            f"{tied[name] / tied['random']:5.2f}x   ({passes})"
        )
        print(f"{'':11}float64 work: {work}")


if __name__ == "__main__":
    main()
