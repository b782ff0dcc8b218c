"""Gates: conditions under which an evaluation counts as failed (exit status 4).

A gate names a failure: ``precision<0.6`` fails the run when precision is
below 0.6; ``recall@10<=0.5`` reads recall at k = 10 instead of the primary
k; ``fd>80`` fails on an FD above 80. ``regression_against`` fails a run that
is worse than the previous run in a history file (or a named baseline) by more
than Z standard errors of the difference, as ``largeemb compare`` tests it.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from largeemb.errors import InputError
from largeemb.report.definitions import DEFINITIONS, PER_K
from largeemb.series import record
from largeemb.series.compare import compare_runs, regressions

OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_GATE = re.compile(
    r"^\s*([a-z][a-z0-9_]*)\s*(?:@\s*(\d+))?\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Gate:
    """Fail when ``metric`` (at ``k``; None: the run's primary k) ``op`` ``threshold``."""

    metric: str
    op: str
    threshold: float
    k: int | None = None

    def __str__(self) -> str:
        return f"{self.metric}{'' if self.k is None else f'@{self.k}'}{self.op}{self.threshold:g}"


def parse_gates(text: str) -> list[Gate]:
    """Gates from comma-separated expressions, e.g. ``"precision<0.6,recall@10<=0.5,fd>80"``."""
    gates = []
    for expression in (part for part in text.split(",") if part.strip()):
        match = _GATE.match(expression)
        if match is None or match.group(1) not in DEFINITIONS or (match.group(2) and match.group(1) not in PER_K):
            raise InputError(
                f"cannot read the gate {expression.strip()!r}", "in the gate expressions",
                "write METRIC OP NUMBER or METRIC@K OP NUMBER, OP one of < <= > >=, "
                f"METRIC one of {', '.join(DEFINITIONS)} "
                f"(@K only for {', '.join(PER_K)}), e.g. precision<0.6,recall@10<0.5",
            )
        name, k, op, threshold = match.groups()
        gates.append(Gate(name, op, float(threshold), int(k) if k else None))
    if not gates:
        raise InputError(f"no gate in {text!r}", "in the gate expressions", "write e.g. precision<0.6,recall<0.5")
    return gates


def failed_gates(metrics_doc: dict, gates) -> list[str]:
    """One line per gate that fails; a gate whose metric the run lacks fails too (it cannot be checked)."""
    failures = []
    primary = record.ks(metrics_doc)[0]
    for gate in gates:
        k = str(gate.k) if gate.k is not None else (primary if gate.metric in PER_K else None)
        value = record.value(metrics_doc, gate.metric, k)
        at = f" at k={k}" if k is not None else ""
        if value is None:
            failures.append(
                f"gate {gate} cannot be checked: the run has no {gate.metric}{at} (turn that metric or k on)"
            )
        elif OPERATORS[gate.op](value, gate.threshold):
            failures.append(f"gate failed: {gate.metric} {value:.4g} {gate.op} {gate.threshold:g}{at}")
    return failures


def regression_against(history_lines, metrics_doc: dict, z: float, baseline_label: str | None = None) -> list[str]:
    """Regression lines of ``metrics_doc`` against an earlier run of the history, as ``compare`` finds them.

    The earlier run is the line labelled ``baseline_label`` (the last such
    line), else the last line with the same real fingerprint whose numbers
    are comparable (same metric, ball rule and a common k). The run's own
    line, if it was appended already, is passed over. No earlier run: no lines.
    """
    earlier = [line for line in history_lines if not record.same_run(line, metrics_doc)]
    if baseline_label is not None:
        named = [line for line in earlier if record.label(line) == baseline_label]
        if not named:
            raise InputError(
                f"no run labelled {baseline_label!r} in the history", "for the baseline",
                "pass a label the history holds",
            )
        return regressions(compare_runs(named[-1], metrics_doc, "against the baseline"), z)
    fingerprint = record.real_fingerprint(metrics_doc)
    for line in reversed(earlier):
        same_real = fingerprint is not None and record.real_fingerprint(line) == fingerprint
        if same_real and not record.comparable(line, metrics_doc) and set(line["by_k"]) & set(metrics_doc["by_k"]):
            return regressions(compare_runs(line, metrics_doc), z)
    return []
