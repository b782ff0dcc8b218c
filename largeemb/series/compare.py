"""Is run B better or worse than run A, and is the difference more than noise?

For each k both runs hold, each of precision, recall, density and coverage
gets B − A, the standard error of that difference and z = (B − A) / SE.

- **Paired** (both runs used the same real set, by content fingerprint): the
  real set is a common fixed quantity, and the two fake sets are independent
  given it, so SE² = SE_A² + SE_B² with each run's standard error *given the
  real set* (``standard_errors_given_real``). Noise in the real set itself
  moves both runs alike and cancels from the difference.
- **Unpaired** (different real sets): both sets of each run are samples, so
  SE² = SE_A² + SE_B² with ``standard_errors``.

FD is shown as B − A without a test (it has no standard error). All four
tested metrics are "higher is better": a regression is z below −Z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from largeemb.errors import InputError
from largeemb.report.definitions import CORE
from largeemb.series import record

MINUS = "−"


@dataclass
class Difference:
    k: str
    metric: str
    a: float
    b: float
    se: float | None  # None: no test (FD)

    @property
    def diff(self) -> float:
        return self.b - self.a

    @property
    def z(self) -> float | None:
        if self.se is None:
            return None
        if self.se > 0:
            return self.diff / self.se
        return 0.0 if self.diff == 0 else math.copysign(math.inf, self.diff)


@dataclass
class Comparison:
    label_a: str
    label_b: str
    paired: bool
    rows: list[Difference]
    notes: list[str] = field(default_factory=list)

    def method(self) -> str:
        if self.paired:
            return (
                "paired: both runs use the same real set, so the SE of B − A comes from each run's "
                "standard errors given the real set (the two fake sets are independent given it)"
            )
        return (
            "unpaired: the runs use different real sets, so the SE of B − A comes from each run's "
            "standard errors with both sets as samples"
        )


def compare_runs(a: dict, b: dict, where: str = "between the two runs") -> Comparison:
    """Compare run ``b`` with run ``a`` (metrics.json documents or history lines)."""
    why = record.comparable(a, b)
    if why:
        raise InputError(
            f"{why}: their metrics measure different things", where,
            "compare runs made with the same --metric and --inclusive",
        )
    shared = [k for k in record.ks(a) if k in b["by_k"]]
    if not shared:
        raise InputError(
            f"the runs share no k (A: {','.join(record.ks(a))}; B: {','.join(record.ks(b))})", where,
            "compare runs evaluated with at least one common --k",
        )
    paired = bool(record.real_fingerprint(a)) and record.real_fingerprint(a) == record.real_fingerprint(b)
    notes = []
    only = sorted(set(record.ks(a)) ^ set(record.ks(b)), key=int)
    if only:
        notes.append(f"k={','.join(only)} is in one run only and is not compared")
    if paired and not (record.has_given_real(a) and record.has_given_real(b)):
        notes.append(
            "a run has no standard_errors_given_real (written by an older largeemb): its standard_errors are used"
        )
    rows = []
    for k in shared:
        for name in CORE:
            va, vb = record.value(a, name, k), record.value(b, name, k)
            if va is None or vb is None:
                continue
            se_a, se_b = record.standard_error(a, name, k, paired), record.standard_error(b, name, k, paired)
            se = math.sqrt(se_a**2 + se_b**2) if se_a is not None and se_b is not None else None
            if se is None:
                notes.append(f"{name} at k={k} has no standard error in a run: shown without a test")
            rows.append(Difference(k, name, va, vb, se))
    fd_a, fd_b = record.value(a, "fd"), record.value(b, "fd")
    if fd_a is not None and fd_b is not None:
        rows.append(Difference("", "fd", fd_a, fd_b, None))
    return Comparison(record.label(a), record.label(b), paired, rows, notes)


def regressions(comparison: Comparison, z: float) -> list[str]:
    """One line per metric that is worse in B by more than ``z`` standard errors of the difference."""
    if not z > 0:
        raise InputError(
            f"the regression threshold must be a positive number of standard errors, got {z}",
            "for --fail-on-regression", "pass e.g. 3",
        )
    return [
        f"regression: {row.metric} {_num(row.a)} → {_num(row.b)} "
        f"({_signed(row.diff)}, z = {_signed(row.z, 1)} < {MINUS}{z:g}) at k={row.k}"
        for row in comparison.rows
        if row.z is not None and row.z < -z
    ]


def format_comparison(comparison: Comparison) -> list[str]:
    """The comparison as text lines: the method, then one row per metric."""
    lines = [f"A = {comparison.label_a}, B = {comparison.label_b}", comparison.method()]
    header = f"{'k':>4}  {'metric':<10}  {'A':>9}  {'B':>9}  {'B − A':>9}  {'SE':>8}  {'z':>6}"
    lines.append(header)
    for row in comparison.rows:
        se = "no test" if row.se is None else f"{row.se:.4f}"
        z = "" if row.z is None else _signed(row.z, 2)
        lines.append(
            f"{row.k or '–':>4}  {row.metric:<10}  {row.a:>9.4f}  {row.b:>9.4f}  "
            f"{_signed(row.diff, 4):>9}  {se:>8}  {z:>6}"
        )
    lines += [f"note: {note}" for note in comparison.notes]
    return lines


def _num(value: float) -> str:
    """Three decimals for everyday values, two significant digits for tiny ones."""
    if value == 0 or abs(value) >= 0.01 or not math.isfinite(value):
        return f"{value:.3f}"
    return f"{value:.2g}"


def _signed(value: float, decimals: int | None = None) -> str:
    text = _num(abs(value)) if decimals is None else f"{abs(value):.{decimals}f}"
    return (MINUS if value < 0 else "+") + text
