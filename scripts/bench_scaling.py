"""Scaling over dask worker processes: tiles/s and wall time for 1 and 2 worker
processes (LocalCluster) on the same data, and the speed-up; the scheduler's
cost per task; a projection to n = m = 1,000,000 on many cores.

    python scripts/bench_scaling.py [--rows 20000] [--dim 128] [--block-rows 2048]
                                    [--workers 1,2] [--threads-per-worker 1] [--repeats 3]
                                    [--real A.npy --fake B.npy] [--project-dim 768]

Writes a synthetic real/fake pair (or copies of two .npy files) to zarr stores
in a temporary directory. Each
worker count runs in a fresh process that starts the same LocalCluster as
``largeemb evaluate --workers N`` once (start-up is reported apart), then
evaluates ``--repeats`` times; the median is quoted. The last line measures how
much parallel float32 GEMM this machine allows at all.
Every task uses one faiss/BLAS thread, so 1 worker process with 1 task thread
uses one core and 2 use two. An in-process run (dask threads on all cores, the
default) is shown for reference. A tile is
one block x block distance computation (self k-NN diagonals and upper triangle
of both sets, plus every fake x real tile). Runs compute every tile
(``prune=False``) and no plots (their cost does not grow with n x m).

Then the scheduler's own cost per named unit: 500 near-empty units and their
merge tree, without and with checkpoints, in-process and on the LocalClusters.
The projection takes the one-worker run's cost per pair x dim (the whole run
on one core), spreads the 2 n^2 pairs of n = m = 1,000,000 over 16, 64 and 256
cores, and adds one tile of tail and every unit's scheduler cost as if serial;
it leaves out reading the blocks (each tile reads two: about 780 GB at dim
768 unless cached) and the queue wait for jobs.
"""

from __future__ import annotations

import argparse
import tempfile

from _bench import data_pair, run_child
from largeemb.kernels.plan import row_blocks


def tiles(rows: int, block_rows: int) -> int:
    blocks = len(row_blocks(rows, block_rows))
    self_tiles = blocks + blocks * (blocks - 1) // 2
    return 2 * self_tiles + blocks * blocks


CHILD = """
import statistics, time
import largeemb
workers, threads, repeats = {workers!r}, {threads!r}, {repeats!r}
# Every tile computed, so tiles/s means what it says; no plots (their cost does not grow with n x m).
options = dict(k=5, block_rows={block_rows!r}, prune=False, plots=False)
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


OVERHEAD = """
import time
import numpy as np
from largeemb.run import checkpoint, graph, session
from largeemb.config import EvaluateConfig
workers, tasks, work = {workers!r}, {tasks!r}, {work!r}
seconds = {{}}
with session.open_run(EvaluateConfig(workers=workers or None, threads_per_worker=1)) as run:
    for kind in ("plain", "checkpointed"):
        store = (
            checkpoint.open_store(f"{{work}}/{{kind}}-{{workers}}", {{"bench": 1}}, resume=False)
            if kind != "plain" else None
        )
        run.store = store
        for attempt, count in (("warm-up", 50), ("timed", tasks)):
            g = graph.Graph(f"{{kind}}-{{attempt}}")
            # a tiny array each: the cost is the bookkeeping
            keys = [g.unit(f"u-{{i}}", np.full, 8, i) for i in range(count)]
            root = g.tree(keys, np.add, "sum")
            start = time.perf_counter()
            graph.run(g, root, "overhead")
            seconds[kind] = (time.perf_counter() - start) / count
        checkpoint.discard(f"{{work}}/{{kind}}-{{workers}}") if store else None
_out = seconds
"""


def overhead(workers: int, tasks: int = 500) -> dict:
    """Seconds per near-empty named unit (plus its merge), without and with checkpoints:
    the scheduler's and the checkpoint store's own cost per unit of work."""
    with tempfile.TemporaryDirectory() as work:
        return run_child(OVERHEAD.format(workers=workers, tasks=tasks, work=work))


def projection(
    per_pair_dim_s: float, rows: int, dim: int, cores: int, overhead_s: float, block_rows: int = 16384
) -> dict:
    """Hours for n = m = ``rows`` at ``dim`` on ``cores`` one-thread task slots, every tile computed:
    the tile work (2 n² pairs x dim, as the measured run's per pair·dim cost) spread over the cores,
    plus the scheduler's cost per unit on one core, plus a tail of one tile per core."""
    blocks = -(-rows // block_rows)
    # tiles of both self passes and the cross pass, and as many merges
    units = 2 * (2 * (blocks * (blocks + 1) // 2) + blocks * blocks)
    work = per_pair_dim_s * 2 * rows * rows * dim
    tile = per_pair_dim_s * block_rows * block_rows * dim
    return {"units": units, "hours": (work / cores + tile + units * overhead_s) / 3600, "tile_s": tile}


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
    parser.add_argument("--modes", type=int, default=10)
    parser.add_argument("--real", help=".npy of the real set (with --fake) instead of the synthetic pair")
    parser.add_argument("--fake")
    parser.add_argument("--project-dim", type=int, default=768, help="dim of the n = m = 1,000,000 projection")
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",")]

    from largeemb.run.threads import cores

    with tempfile.TemporaryDirectory() as tmp:
        real, fake, what = data_pair(tmp, args)
        import zarr

        args.rows, args.dim = zarr.open_array(real).shape  # the data's own, for .npy inputs
        n_tiles = tiles(args.rows, args.block_rows)
        runs = {}
        for workers in [0] + counts:
            threads = args.threads_per_worker if workers else None
            code = CHILD.format(
                workers=workers, threads=threads, repeats=args.repeats, block_rows=args.block_rows, real=real, fake=fake
            )
            runs[workers] = run_child(code)

    print(
        f"{what}; n = m = {args.rows}, dim {args.dim}, block rows {args.block_rows}: {n_tiles} tiles; "
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
    costs = {workers: overhead(workers) for workers in [0] + counts}
    print("scheduler cost per named unit (near-empty units and their merges; ms):")
    for workers, cost in costs.items():
        name = "in-process (threads)" if workers == 0 else f"{workers} worker process{'es' if workers > 1 else ''}"
        print(f"  {name:24} plain {1000 * cost['plain']:6.2f}   with checkpoints {1000 * cost['checkpointed']:6.2f}")
    one = runs[counts[0]]
    used = counts[0] * args.threads_per_worker  # task slots of that run, one core each
    per_pair_dim = one["seconds"] * used / (2 * args.rows * args.rows * args.dim)  # one core's cost, whole run
    print(
        f"per pair x dim on one core ({counts[0]} worker process, every tile, whole run): {per_pair_dim * 1e12:.2f} ps"
    )
    for slots in (16, 64, 256):
        est = projection(per_pair_dim, 1_000_000, args.project_dim, slots, costs[max(counts)]["checkpointed"])
        print(
            f"projection n = m = 1,000,000, dim {args.project_dim}, {slots} cores: {est['hours']:.2f} h "
            f"({est['units']:,} units of {est['tile_s']:.1f} s per tile on one core)"
        )
    keys = ("precision", "recall", "density", "coverage", "fd")
    same = all(all(res[key] == runs[0][key] for key in keys) for res in runs.values())
    print("metrics identical across all runs" if same else "METRICS DIFFER")
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
