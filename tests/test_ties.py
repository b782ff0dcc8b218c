"""Tie-heavy data: exact duplicates, lattices, one-hot rows, against the float64 brute force.

prdc (sklearn's ``|x|^2 + |y|^2 - 2xy`` in float32 for float32 input) can
break a tie differently from the brute force: two identical rows come out at
~1e-4 instead of 0, or a tied neighbour ranks by rounding. The brute force is
the definition, so these tests compare with :mod:`oracle` only.
"""

import threading

import numpy as np
import pytest

import largeemb
from largeemb import engine, knn
from conftest import mixture
import oracle

KEYS = ("precision", "recall", "density", "coverage")


def test_unproven_rows_are_resolved_in_tasks(monkeypatch):
    """Every float64 resolution runs as a task of the executor (a worker thread),
    one per (chunk of unproven rows, block), never in the main thread."""
    calls = []
    for name in ("resolve_block", "resolve_finish"):
        def spy(*args, _f=getattr(knn, name), _n=name):
            calls.append((_n, threading.current_thread() is threading.main_thread()))
            return _f(*args)
        monkeypatch.setattr(knn, name, spy)
    monkeypatch.setattr(knn, "MARGIN", 0)
    monkeypatch.setattr(engine, "RESOLVE_ROWS", 64)
    real, fake = mixture(900, 8, 1), mixture(800, 8, 2)
    result = largeemb.evaluate(real, fake, k=3, block_rows=200, samples=False, plots=False)
    unproven = result.real["float64_fallback_rows"] + result.fake["float64_fallback_rows"]
    assert unproven > 64
    assert calls and not any(main for _, main in calls)
    chunks = [-(-getattr(result, side)["float64_fallback_rows"] // 64) for side in ("real", "fake")]
    blocks = [len(engine.row_blocks(len(x), 200)) for x in (real, fake)]
    assert sum(n == "resolve_finish" for n, _ in calls) == sum(chunks)
    assert sum(n == "resolve_block" for n, _ in calls) == sum(c * b for c, b in zip(chunks, blocks))
    assert "radii_float64" in result.timings_s
    np.testing.assert_array_equal(result.real_radii[:, 0], oracle.radii(real, 3))
    np.testing.assert_array_equal(result.fake_radii[:, 0], oracle.radii(fake, 3))
