"""bfloat16 GEMM against NumPy's float32 matmul on this CPU, and what screening costs.

    python scripts/bench_bf16.py [--threads 2] [--dim 512] [--mkl /path/to/libmkl_rt.so.2]

1. One 4096 x 4096 x dim GEMM (best of 5; ``--dim``, default 512): NumPy float32, oneDNN bf16 (the
   ``bf16`` extra, when it loads), MKL's ``cblas_gemm_bf16bf16f32`` (with
   ``--mkl``: MKL is not a dependency, this only measures it), and the
   emulation the tests use; plus rounding one 4096 x 514 operand to bfloat16.
2. One engine tile as a task computes it (one thread), with the selection of
   the entries below each row's and each column's cut that follows: the
   float32 tile (``sqdist32``, then a scan of the whole tile) against the
   screened one (``ScreenedTiles.tile`` with each block's rows rounded once,
   then a selection from its open entries), on 2048 x 2048 Gaussian
   panels, dim 512, with cuts at the 0.05% and 0.25% quantiles of each row
   and column (about k-NN cuts in a 20,000-row set, late and early), and the
   share of entries re-checked in float32.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time

import numpy as np


def best(func, reps: int = 5) -> float:
    func()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=512, help="inner dimension of part 1's GEMM")
    parser.add_argument("--mkl", help="path of libmkl_rt (measures MKL's bf16 GEMM too)")
    args = parser.parse_args()
    os.environ["LARGEEMB_BF16_THREADS"] = str(args.threads)
    from threadpoolctl import threadpool_limits

    from largeemb.io import onednn
    from largeemb.kernels import bf16
    from largeemb.kernels.distance import prepare_block, sqdist32
    from largeemb.kernels.screen import ScreenedTiles, below

    m = n = 4096
    k = args.dim
    flops = 2.0 * m * n * k
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32)
    a_bits, b_bits = bf16.to_bits(a), bf16.to_bits(b)
    gemm = onednn.onednn()
    print(f"CPU bf16 flags: {onednn.cpu_has_bf16()}; oneDNN loaded: {gemm is not None}")
    rates = {}
    with threadpool_limits(args.threads):
        rates["numpy float32"] = flops / best(lambda: a @ b.T)
        if gemm is not None:
            rates["oneDNN bf16"] = flops / best(lambda: gemm(a_bits, b_bits))
        if args.mkl:
            rates["MKL bf16"] = flops / best(_mkl_gemm(args.mkl, a_bits, b_bits))
        rates["emulated bf16"] = flops / best(lambda: bf16.emulated(a_bits, b_bits))
        operand = rng.standard_normal((m, k + 2), dtype=np.float32)
        convert = best(lambda: bf16.to_bits(operand))
    base = rates["numpy float32"]
    print(f"{m} x {n} x {k} GEMM on {args.threads} threads (best of 5):")
    for name, rate in rates.items():
        print(f"  {name:15} {rate / 1e9:7.0f} GFLOP/s  {rate / base:5.2f}x float32")
    print(f"  rounding a {m} x {k + 2} operand to bfloat16: {convert * 1e3:.1f} ms")

    rows, dim = 2048, 512
    x, y = rng.standard_normal((rows, dim), dtype=np.float32), rng.standard_normal((rows, dim), dtype=np.float32)
    centre = np.zeros(dim, np.float32)
    with threadpool_limits(1):
        os.environ["LARGEEMB_BF16_THREADS"] = "1"
        plain = prepare_block(x, 0, centre, "euclidean")
        right = prepare_block(y, 0, centre, "euclidean").right()
        d32 = sqdist32(plain, right)

        def selected(dist, open_entries, row_cut, col_cut):
            return below(dist, open_entries, row_cut, False), below(dist, open_entries, col_cut, True)

        for quantile in (0.0005, 0.0025):
            row_cut = np.quantile(d32, quantile, axis=1).astype(np.float32)
            col_cut = np.quantile(d32, quantile, axis=0).astype(np.float32)
            t32 = best(lambda: selected(sqdist32(plain, right), None, row_cut, col_cut))  # noqa: B023 (timed at once)
            for name, g in (("oneDNN", gemm), ("emulated", bf16.emulated)):
                if g is None:
                    continue
                block, other = prepare_block(x, 0, centre, "euclidean"), prepare_block(y, 0, centre, "euclidean")
                strategy, origins = ScreenedTiles(g), ((block, np.arange(rows)), (other, np.arange(rows)))
                t = best(
                    lambda: selected(*strategy.tile(block, right, row_cut, col_cut, *origins), row_cut, col_cut),  # noqa: B023
                    reps=3,
                )
                share = strategy.counts.rechecked / strategy.counts.entries
                print(
                    f"tile {rows} x {rows} x {dim} + selection, one thread, cuts at the {quantile:.2%} quantile: "
                    f"float32 {t32 * 1e3:.0f} ms, "
                    f"screened ({name}) {t * 1e3:.0f} ms ({t32 / t:.2f}x), re-checked in float32: {share:.3%}"
                )


def _mkl_gemm(path: str, a_bits: np.ndarray, b_bits: np.ndarray):
    lib = ctypes.CDLL(path)
    call = lib.cblas_gemm_bf16bf16f32
    ptr = ctypes.c_void_p
    call.argtypes = [ctypes.c_int] * 6 + [
        ctypes.c_float, ptr, ctypes.c_int, ptr, ctypes.c_int, ctypes.c_float, ptr, ctypes.c_int,
    ]
    (m, k), n = a_bits.shape, b_bits.shape[0]
    out = np.empty((m, n), np.float32)
    row_major, no_trans, trans = 101, 111, 112
    return lambda: call(
        row_major, no_trans, trans, m, n, k, 1.0, a_bits.ctypes.data, k, b_bits.ctypes.data, k, 0.0, out.ctypes.data, n
    )


if __name__ == "__main__":
    main()
