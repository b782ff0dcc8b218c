"""oneDNN's bfloat16 matmul (float32 accumulation) through ctypes: the ``bf16`` extra.

The library comes from the ``onednn-cpu-gomp`` wheel (an OpenMP build with no
other runtime; the newer ``onednn`` wheel is a SYCL build whose CPU engine
needs an OpenCL runtime), found under the environment's ``lib/`` or where
LARGEEMB_DNNL names it. Its matmul runs on AMX-BF16 and AVX512-BF16
(``brg:avx512_core_amx``/``brg:avx512_core_bf16`` kernels). Loaded once per
process (each dask worker loads its own).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from functools import lru_cache

import numpy as np

#: Where the extra's library lies, unless LARGEEMB_DNNL names another file.
LIBRARY_NAMES = ("libdnnl.so.3", "libdnnl.so")
#: CPU flags (Linux /proc/cpuinfo) under which a bf16 GEMM is faster than float32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:  # pragma: no cover - not Linux
        return False
    return any(flag in flags for flag in BF16_FLAGS)


def _library_path() -> str | None:
    named = os.environ.get("LARGEEMB_DNNL")
    if named:
        return named
    for prefix in (sys.prefix, sys.base_prefix):
        for name in LIBRARY_NAMES:
            path = os.path.join(prefix, "lib", name)
            if os.path.exists(path):
                return path
    return ctypes.util.find_library("dnnl")


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


_DIMS = ctypes.c_int64 * 12
_BF16, _F32, _CPU, _IN_ORDER = 2, 3, 1, 1
_RUNTIME = -(2**63)  # DNNL_RUNTIME_DIM_VAL: a dimension given at execution
_ARG_SRC, _ARG_WEIGHTS, _ARG_DST = 1, 33, 17


class OneDNN:
    """oneDNN's matmul ``left (m, k) bf16 @ right (n, k)^T bf16 -> (m, n) float32``."""

    def __init__(self, path: str):
        self.lib = ctypes.CDLL(path)
        self.engine = ctypes.c_void_p()
        self._check(self.lib.dnnl_engine_create(ctypes.byref(self.engine), _CPU, 0), "engine")
        # Primitives and streams per thread: this build shares a primitive's
        # scratchpad between its executions, so one primitive run from two task
        # threads at once gives wrong products (seen here: off by hundreds).
        self.local = threading.local()
        try:  # the wheel's OpenMP: one thread per task, as for BLAS and faiss
            self.omp = ctypes.CDLL(ctypes.util.find_library("gomp") or "libgomp.so.1")
        except OSError:  # pragma: no cover
            self.omp = None

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"oneDNN {what} failed with status {status}")

    def _desc(self, dims, strides, dtype) -> ctypes.c_void_p:
        desc = ctypes.c_void_p()
        self._check(
            self.lib.dnnl_memory_desc_create_with_strides(ctypes.byref(desc), 2, _DIMS(*dims), dtype, _DIMS(*strides)),
            "desc",
        )
        return desc

    def _primitive(self, k: int):
        """This thread's matmul for inner dimension k, with runtime m and n: one JIT for every tile shape
        (a fixed-shape primitive costs a new JIT, tens of ms, for each panel or gathered part size)."""
        primitives = self.local.__dict__.setdefault("primitives", {})
        if k not in primitives:
            descs = (
                self._desc((_RUNTIME, k), (k, 1), _BF16),
                self._desc((k, _RUNTIME), (1, k), _BF16),
                self._desc((_RUNTIME, _RUNTIME), (_RUNTIME, 1), _F32),
            )
            pd, prim = ctypes.c_void_p(), ctypes.c_void_p()
            try:
                src, weights, dst = descs
                self._check(
                    self.lib.dnnl_matmul_primitive_desc_create(
                        ctypes.byref(pd), self.engine, src, weights, None, dst, None
                    ),
                    "matmul",
                )
                self._check(self.lib.dnnl_primitive_create(ctypes.byref(prim), pd), "primitive")
            finally:
                self.lib.dnnl_primitive_desc_destroy(pd)
                for desc in descs:
                    self.lib.dnnl_memory_desc_destroy(desc)
            primitives[k] = prim
        return primitives[k]

    def limit_threads(self) -> None:
        """The calling thread's OpenMP threads for this library: LARGEEMB_BF16_THREADS, default one per task."""
        if self.omp is not None:
            self.omp.omp_set_num_threads(int(os.environ.get("LARGEEMB_BF16_THREADS", "1")))

    def _stream(self) -> ctypes.c_void_p:
        stream = getattr(self.local, "stream", None)
        if stream is None:
            self.limit_threads()
            stream = ctypes.c_void_p()
            self._check(self.lib.dnnl_stream_create(ctypes.byref(stream), self.engine, _IN_ORDER), "stream")
            self.local.stream = stream
        return stream

    def __call__(self, left_bits: np.ndarray, right_bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``left · rightᵀ`` in float32 from bfloat16 bit patterns, into ``out`` (C-contiguous float32) when given."""
        left_bits, right_bits = np.ascontiguousarray(left_bits), np.ascontiguousarray(right_bits)
        (m, k), n = left_bits.shape, right_bits.shape[0]
        if out is None:
            out = np.empty((m, n), np.float32)
        if out.shape != (m, n) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError("out must be a C-contiguous float32 array of the product's shape")
        if m == 0 or n == 0:
            return out
        prim = self._primitive(k)
        stream = self._stream()
        memories, descs = [], []
        try:
            for dims, strides, dtype, array in (
                ((m, k), (k, 1), _BF16, left_bits), ((k, n), (1, k), _BF16, right_bits), ((m, n), (n, 1), _F32, out)
            ):
                descs.append(self._desc(dims, strides, dtype))
                memory = ctypes.c_void_p()
                self._check(
                    self.lib.dnnl_memory_create(
                        ctypes.byref(memory), descs[-1], self.engine, ctypes.c_void_p(array.ctypes.data)
                    ),
                    "memory",
                )
                memories.append(memory)
            args = (_ExecArg * 3)(*(_ExecArg(a, mem) for a, mem in zip((_ARG_SRC, _ARG_WEIGHTS, _ARG_DST), memories)))
            self._check(self.lib.dnnl_primitive_execute(prim, stream, 3, args), "execute")
            self._check(self.lib.dnnl_stream_wait(stream), "wait")
        finally:
            for memory in memories:
                self.lib.dnnl_memory_destroy(memory)
            for desc in descs:
                self.lib.dnnl_memory_desc_destroy(desc)
        return out


@lru_cache(maxsize=1)
def onednn() -> OneDNN | None:
    """The extra's bf16 GEMM, or None where it is not installed or does not load."""
    path = _library_path()
    if path is None:
        return None
    try:
        return OneDNN(path)
    except (OSError, RuntimeError, AttributeError):
        return None


def limit_task_threads() -> None:
    """:meth:`OneDNN.limit_threads` for the calling task thread, where this process loaded oneDNN
    (its OpenMP runtime then reports the cores to every thread that has not set it)."""
    if onednn.cache_info().currsize:
        lib = onednn()
        if lib is not None:
            lib.limit_threads()


def available() -> bool:
    """Whether ``precision="auto"`` takes the bf16 path: the extra loads and the CPU has bf16."""
    return auto_choice()[0] == "bf16"


def auto_choice() -> tuple[str, str]:
    """What ``precision="auto"`` becomes here, and why (one sentence for metrics.json and the log)."""
    if not cpu_has_bf16():
        return "float32", "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX-BF16)"
    if _library_path() is None:
        return "float32", "oneDNN is not installed (a plain install has it on Linux x86-64: pip install largeemb[bf16])"
    if onednn() is None:
        return "float32", f"oneDNN did not load from {_library_path()}"
    return "bf16", "this CPU multiplies bfloat16 in hardware and oneDNN loaded"
