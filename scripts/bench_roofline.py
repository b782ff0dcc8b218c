"""All-pairs work against the machine's float32 GEMM rate, in one run.

    python scripts/bench_roofline.py [--rows 100000] [--dim 512] [--k 5] [--precision auto]

Prints, each as useful GFLOP/s and as a ratio to plain NumPy float32 matmul
measured first on this machine:
- the cross pass (fake × real tiles: every membership for the four metrics),
  without and with the per-sample values; useful work 2·n·m·dim;
- the self k-NN pass (radii of one set: the mean of the two sets' passes, as
  the pipeline times them), useful work 2·n·n·dim, so the
  symmetric tiles show as more than 100%;
- faiss.knn on the same set with the same threads, tile by tile as a streamed
  job would run it (query block × all rows), and the self pass's speed-up on it.
Each pass runs twice: with every tile computed (the kernels' rate against the
GEMM roofline) and with pruning, as `evaluate` runs by default (row pairs
that provably change nothing are left out of the tiles; how much that saves
depends on the data's cluster structure: --modes 1 gives none).
Data are synthetic float32 arrays held in memory (I/O is measured elsewhere).
``--precision`` is the engine's (auto, float32, bf16): with bf16 screening the
share of tile entries re-checked in float32 is printed per pass.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def matmul_gflops(dim: int, threads: int) -> float:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, dim), dtype=np.float32)
    b = rng.standard_normal((4096, dim), dtype=np.float32)
    with threadpool_limits(threads):
        a @ b.T
        times = []
        for _ in range(5):
            start = time.perf_counter()
            a @ b.T
            times.append(time.perf_counter() - start)
    return 2 * 4096 * 4096 * dim / np.median(times) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--modes", type=int, default=10, help="Gaussian modes of the synthetic sets")
    parser.add_argument("--precision", default="auto", help="auto, float32 or bf16 (the engine's option)")
    args = parser.parse_args()

    import faiss

    from largeemb.config import EvaluateConfig
    from largeemb.io.store import open_source
    from largeemb.io.synth import synth_rows
    from largeemb.pipeline import run_passes
    from largeemb.run.threads import cores

    n, dim, k = args.rows, args.dim, args.k
    threads = cores()
    real = synth_rows(0, n, dim, 0, 0.0, args.modes, 0, 8192)
    fake = synth_rows(0, n, dim, 1, 0.05, args.modes, 3 if args.modes > 3 else 0, 8192)
    real_src, fake_src = open_source(real, role="real"), open_source(fake, role="fake")

    peak = matmul_gflops(dim, threads)
    print(f"rows {n}, dim {dim}, k {k}, {threads} threads")
    print(f"numpy float32 matmul (4096 x {dim} x 4096): {peak:8.1f} GFLOP/s")

    def rate(seconds, flops):
        return flops / seconds / 1e9

    self_flops = flops = 2.0 * n * n * dim
    self_s = {}
    for name, prune in (("every tile", False), ("pruned", True)):
        print(f"-- {name}")
        for samples in (False, True):
            # The pipeline's own stage timings: both self passes, then the cross pass (and the settle pass).
            config = EvaluateConfig(k=k, prune=prune, samples=samples, plots=False, precision=args.precision)
            config = config.resolved(n)
            passes = run_passes(real_src, fake_src, config)
            t = passes.timings
            shares = {p: f"{v['share']:.3%}" for p, v in passes.screening.items() if isinstance(v, dict)}
            print(
                f"   precision {passes.screening['precision']}"
                + (f", re-checked in float32: {shares}" if shares else "")
            )
            if not samples:
                self_s[name] = seconds = t["radii"] / 2
                centre = passes.context.centre
                block = config.block_rows
                print(
                    f"self k-NN pass       {seconds:8.2f} s  {rate(seconds, self_flops):8.1f} GFLOP/s  "
                    f"{rate(seconds, self_flops) / peak:6.2f} of matmul  (mean of the two sets)"
                )
            seconds = t["cross"] + t.get("samples", 0.0)
            label = "cross pass + samples" if samples else "cross pass          "
            print(
                f"{label} {seconds:8.2f} s  {rate(seconds, flops):8.1f} GFLOP/s  "
                f"{rate(seconds, flops) / peak:6.2f} of matmul"
            )

    centred = np.ascontiguousarray(real - centre, dtype=np.float32)
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    for lo in range(0, n, block):
        faiss.knn(centred[lo : lo + block], centred, k + 1)
    faiss_s = time.perf_counter() - start
    print(
        f"faiss.knn self       {faiss_s:8.2f} s  {rate(faiss_s, self_flops):8.1f} GFLOP/s  "
        f"{rate(faiss_s, self_flops) / peak:6.2f} of matmul"
    )
    for name, seconds in self_s.items():
        print(f"self k-NN speed-up over faiss.knn ({name}): {faiss_s / seconds:.2f}x")


if __name__ == "__main__":
    main()
