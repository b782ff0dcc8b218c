"""Shared helpers for the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import subprocess
import sys


def run_child(code: str) -> dict:
    """Run Python ``code`` in a fresh process; it must print one JSON line last.

    The child's own peak RSS (MiB) is added as ``peak_mib``.
    """
    wrapper = code + (
        "\nimport json as _j, resource as _r\n"
        "_out['peak_mib'] = _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(_j.dumps(_out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark child failed with status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def synth_pair(tmp: str, rows: int, dim: int, modes: int = 10) -> tuple[str, str]:
    """Real: a mixture of ``modes`` Gaussians; fake: shifted, without 3 of them (when it has more than 3)."""
    from largeemb.io.synth import write_synth

    real = write_synth(f"{tmp}/real.zarr", rows, dim, seed=0, modes=modes)
    fake = write_synth(f"{tmp}/fake.zarr", rows, dim, seed=1, shift=0.05, modes=modes, drop_modes=3 if modes > 3 else 0)
    return real, fake


def npy_pair(tmp: str, real_npy: str, fake_npy: str) -> tuple[str, str]:
    """Copy two .npy files (memory-mapped, never unpickled) to zarr stores under ``tmp``."""
    import numpy as np
    import zarr

    paths = []
    for name, src in (("real", real_npy), ("fake", fake_npy)):
        data = np.load(src, mmap_mode="r", allow_pickle=False)
        path = f"{tmp}/{name}.zarr"
        arr = zarr.create_array(path, shape=data.shape, dtype=data.dtype, chunks=(min(len(data), 4096), data.shape[1]))
        for lo in range(0, len(data), 4096):
            arr[lo : lo + 4096] = data[lo : lo + 4096]
        paths.append(path)
    return paths[0], paths[1]


def data_pair(tmp: str, args) -> tuple[str, str, str]:
    """The benchmark's stores under ``tmp``: two .npy files (``args.real``/``args.fake``) or the
    synthetic pair (``args.rows``, ``args.dim``, ``args.modes``); and a line saying which."""
    if args.real:
        real, fake = npy_pair(tmp, args.real, args.fake)
        return real, fake, f"real {args.real}, fake {args.fake}"
    real, fake = synth_pair(tmp, args.rows, args.dim, args.modes)
    return real, fake, f"synthetic n = m = {args.rows}, dim {args.dim}, {args.modes} modes"
