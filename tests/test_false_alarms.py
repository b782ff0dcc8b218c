"""`largeemb compare --fail-on-regression 3` seldom cries wolf: 50 pairs of fake sets drawn from one
distribution, each evaluated against the same real set, are compared (paired: they share the real set).

Why at most 2 of 50, and why it cannot flake: every set is drawn from seeded generators and largeemb's
numbers are exact (equal to a float64 brute force), so the test computes the same 50 comparisons every
time: it passes or fails deterministically. What it checks: a pair alarms when any of the four metrics
has z < −3. With honest standard errors, each metric alarms with probability Φ(−3) = 0.00135, a pair at
most 4 × 0.00135 = 0.0054, and 50 pairs give 0.27 alarms on average; P(3 or more of 50) ≤ C(50,3) · 0.0054³
= 0.003, so these seeds would have had to be a 1-in-300 draw for a correct implementation to fail.
Conversely, if the per-pair false-alarm rate were 15% (standard errors about half their true size), then
P(at most 2 of 50) = 0.014: the test bounds the false-alarm rate of --fail-on-regression 3 to below
about 15% with 98.6% confidence, and catches standard errors that are grossly too small.

The fakes are evaluated against a reference built from the real set, as a nightly job does (its
numbers equal a plain evaluate's: tests/test_reference.py); compare reads ``standard_errors_given_real``.
"""

import os

import numpy as np
import pytest
from typer.testing import CliRunner

import largeemb
from conftest import mixture, nightly_result
from largeemb.cli import app

PAIRS, ROWS, DIM, Z = 50, 400, 8, 3
MAX_ALARMS = 2


@pytest.mark.slow
def test_same_distribution_pairs_seldom_alarm(tmp_path):
    np.save(tmp_path / "real.npy", mixture(ROWS, DIM, 0))
    reference = str(tmp_path / "reference")
    largeemb.build_reference(str(tmp_path / "real.npy"), reference, k=(5,))
    runs = []
    for i in range(2 * PAIRS):
        out = tmp_path / f"fake-{i}"
        nightly_result(
            out, reference, mixture(ROWS, DIM, 1000 + i), label=f"fake-{i}", k=5, plots=False, samples=False,
            companions=(),
        )
        runs.append(str(out))
    runner = CliRunner()
    alarms = []
    for a, b in zip(runs[0::2], runs[1::2]):
        result = runner.invoke(app, ["compare", a, b, "--fail-on-regression", str(Z)])
        assert result.exit_code in (0, 4), result.output
        assert "paired" in result.stdout and "unpaired" not in result.stdout
        if result.exit_code == 4:
            alarms.append(f"{os.path.basename(a)} vs {os.path.basename(b)}: " + "; ".join(
                line for line in result.stdout.splitlines() if line.startswith("regression: ")))
    assert len(alarms) <= MAX_ALARMS, "\n".join(alarms)
