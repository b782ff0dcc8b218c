"""All-pairs work against the machine's float32 GEMM rate, in one run.

    python scripts/bench_roofline.py [--rows 100000] [--dim 512] [--k 5]

Prints, each as useful GFLOP/s and as a ratio to plain NumPy float32 matmul
measured first on this machine:
- the cross pass (fake × real tiles: every membership for the four metrics),
  without and with the per-sample values; useful work 2·n·m·dim;
- the self k-NN pass (radii of one set), useful work 2·n·n·dim, so the
  symmetric tiles show as more than 100%;
- faiss.knn on the same set with the same threads, tile by tile as a streamed
  job would run it (query block × all rows), and the self pass's speed-up on it.
Data are synthetic float32 arrays held in memory (I/O is measured elsewhere).
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
    args = parser.parse_args()

    import dask
    import faiss

    from largeemb import api, engine
    from largeemb.synth import synth_rows
    from largeemb.store import open_source

    n, dim, k = args.rows, args.dim, args.k
    threads = engine.cores()
    real = synth_rows(0, n, dim, 0, 0.0, 10, 0, 8192)
    fake = synth_rows(0, n, dim, 1, 0.05, 10, 3, 8192)
    real_src, fake_src = open_source(real, role="real"), open_source(fake, role="fake")
    centre = real.mean(axis=0).astype(np.float32)

    peak = matmul_gflops(dim, threads)
    print(f"rows {n}, dim {dim}, k {k}, {threads} threads")
    print(f"numpy float32 matmul (4096 x {dim} x 4096): {peak:8.1f} GFLOP/s")

    def rate(seconds, flops):
        return flops / seconds / 1e9

    start = time.perf_counter()
    [(real_radii, _)] = engine.radii_stage([real_src], centre, "euclidean", (k,), api.EvaluateConfig().resolved(n).block_rows)
    self_s = time.perf_counter() - start
    [(fake_radii, _)] = engine.radii_stage([fake_src], centre, "euclidean", (k,), api.EvaluateConfig().resolved(n).block_rows)
    self_flops = 2.0 * n * n * dim
    print(f"self k-NN pass       {self_s:8.2f} s  {rate(self_s, self_flops):8.1f} GFLOP/s  {rate(self_s, self_flops) / peak:6.2f} of matmul")

    block = api.EvaluateConfig().resolved(n).block_rows
    for samples in (False, True):
        realism = api.realism_radii(real_radii[:, 0]) if samples else None
        start = time.perf_counter()
        partial = engine.cross_stage(real_src, fake_src, centre, "euclidean", real_radii, fake_radii, False, block, realism)
        if samples:
            engine.settle_stage(real_src, fake_src, centre, "euclidean", partial, realism, block)
        cross_s = time.perf_counter() - start
        flops = 2.0 * n * n * dim
        label = "cross pass + samples" if samples else "cross pass          "
        print(f"{label} {cross_s:8.2f} s  {rate(cross_s, flops):8.1f} GFLOP/s  {rate(cross_s, flops) / peak:6.2f} of matmul")

    centred = np.ascontiguousarray(real - centre, dtype=np.float32)
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    for lo in range(0, n, block):
        faiss.knn(centred[lo : lo + block], centred, k + 1)
    faiss_s = time.perf_counter() - start
    print(f"faiss.knn self       {faiss_s:8.2f} s  {rate(faiss_s, self_flops):8.1f} GFLOP/s  {rate(faiss_s, self_flops) / peak:6.2f} of matmul")
    print(f"self k-NN speed-up over faiss.knn: {faiss_s / self_s:.2f}x")


if __name__ == "__main__":
    main()
