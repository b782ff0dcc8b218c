"""Scaling over dask worker processes: tiles/s and wall time for 1 and 2 worker
processes (LocalCluster) on the same data, and the speed-up.

    python scripts/bench_scaling.py [--rows 20000] [--dim 128] [--block-rows 2048]
                                    [--workers 1,2] [--threads-per-worker 1] [--repeats 3]

Writes a synthetic real/fake pair to zarr stores in a temporary directory. Each
worker count runs in a fresh process that starts the same LocalCluster as
``largeemb evaluate --workers N`` once (start-up is reported apart), then
evaluates ``--repeats`` times; the median is quoted. The last line measures how
much parallel float32 GEMM this machine allows at all.
Every task uses one faiss/BLAS thread, so 1 worker process with 1 task thread
uses one core and 2 use two. An in-process run (dask threads on all cores, the
default) is shown for reference. A tile is
one block x block distance computation (self k-NN diagonals and upper triangle
of both sets, plus every fake x real tile).
"""

from __future__ import annotations

import argparse
import tempfile

from _bench import run_child, synth_pair
from largeemb.kernels.plan import row_blocks


def tiles(rows: int, block_rows: int) -> int:
    blocks = len(row_blocks(rows, block_rows))
    self_tiles = blocks + blocks * (blocks - 1) // 2
    return 2 * self_tiles + blocks * blocks


CHILD = """
import statistics, time
import largeemb
workers, threads, repeats = {workers!r}, {threads!r}, {repeats!r}
options = dict(k=5, block_rows={block_rows!r}, prune=False)  # every tile computed, so tiles/s means what it says
start = time.perf_counter()
if workers:
    from largeemb.run import cluster  # the LocalCluster that --workers starts, held across repeats
    opened = cluster.open_executor(None, None, workers, threads)
    client = opened.__enter__().client
    client.run(lambda: __import__("largeemb.pipeline"))  # workers import the package once, before timing
    options["client"] = client
else:
    options["threads_per_worker"] = threads
startup = time.perf_counter() - start
seconds, metrics = [], None
for _ in range(repeats):
    t = time.perf_counter()
    metrics = largeemb.evaluate({real!r}, {fake!r}, **options).metrics
    seconds.append(time.perf_counter() - t)
_out = {{"startup": startup, "seconds": statistics.median(seconds), "all": seconds, **metrics}}
if workers:
    opened.__exit__(None, None, None)
"""


def gemm_ceiling(parallel: int, size: int = 1024, repeats: int = 8) -> float:
    """How much faster ``parallel`` threads of one-thread float32 GEMMs get through
    the same work per thread than one: the most any worker count can gain here."""
    import threading
    import time

    import numpy as np
    from threadpoolctl import threadpool_limits

    matrix = np.random.default_rng(0).random((size, size), dtype=np.float32)

    def work():
        for _ in range(repeats):
            matrix @ matrix

    def timed(count):
        threads = [threading.Thread(target=work) for _ in range(count)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    with threadpool_limits(1):
        timed(1)  # warm up
        return parallel * timed(1) / timed(parallel)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--block-rows", type=int, default=2048)
    parser.add_argument("--workers", default="1,2", help="worker process counts to compare, e.g. 1,2,4")
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",")]

    from largeemb.run.threads import cores

    n_tiles = tiles(args.rows, args.block_rows)
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = synth_pair(tmp, args.rows, args.dim)
        runs = {}
        for workers in [0] + counts:
            threads = args.threads_per_worker if workers else None
            code = CHILD.format(
                workers=workers, threads=threads, repeats=args.repeats, block_rows=args.block_rows, real=real, fake=fake
            )
            runs[workers] = run_child(code)

    print(
        f"n = m = {args.rows}, dim {args.dim}, block rows {args.block_rows}: {n_tiles} tiles; "
        f"{cores()} cores; {args.threads_per_worker} task thread(s) per worker; median of {args.repeats}"
    )
    print(f"{'':26}{'seconds':>9}{'tiles/s':>9}{'start-up s':>12}{'speed-up':>10}")
    base = runs[counts[0]]["seconds"]
    for workers, res in runs.items():
        name = "in-process (threads)" if workers == 0 else f"{workers} worker process{'es' if workers > 1 else ''}"
        speedup = f"{base / res['seconds']:.2f}x" if workers else ""
        print(f"{name:26}{res['seconds']:9.2f}{n_tiles / res['seconds']:9.1f}{res['startup']:12.2f}{speedup:>10}")
    most = max(counts)
    print(
        f"machine ceiling: {most} threads of one-thread float32 GEMM do {gemm_ceiling(most):.2f}x the work of one "
        "in the same time (no worker count can beat this)"
    )
    keys = ("precision", "recall", "density", "coverage", "fd")
    same = all(all(res[key] == runs[0][key] for key in keys) for res in runs.values())
    print("metrics identical across all runs" if same else "METRICS DIFFER")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
