"""What ``largeemb evaluate`` prints, for one fake set or several: the summary
line as soon as a fake's numbers exist, its warnings, what was written, a
table of all fakes, failed fakes and gates, and the exit status.

Exit status: 0; 2 when a fake set was bad input, 3 when a store could not be
read (each only after every other fake got its result); 4 when every result
was published but a gate failed (:data:`largeemb.errors.GATE_FAILED`).
"""

from __future__ import annotations

import os
import warnings

import typer

from largeemb.cli_process import log_to_stderr
from largeemb.errors import LargeembWarning


def evaluate_and_report(real, fakes: list[str], out: str, config, **options) -> int:
    """Run :func:`largeemb.batch.evaluate_all` and print as it goes; the exit status."""
    from largeemb.batch import evaluate_all
    from largeemb.report.page import other_metrics_line, summary_line

    log_to_stderr()
    several = len(fakes) > 1
    printed = {}

    def on_metrics(run, result):
        doc = result.to_dict()
        prefix = f"{run.name}: " if several else ""
        typer.echo(prefix + summary_line(doc))
        others = other_metrics_line(doc)
        if others:
            typer.echo(" " * len(prefix) + others)
        averaged = doc.get("class_averaged")
        if averaged:
            typer.echo(" " * len(prefix) + f"class-averaged over {len(averaged['classes'])} classes: "
                       + summary_line({**averaged, "params": doc["params"]}))
        for warning in result.warnings:
            typer.echo(f"warning: {prefix}{warning}", err=True)
        printed[run.name] = len(result.warnings)

    def on_failure(run):
        typer.echo(f"error: {run.name}: {run.error}", err=True)

    with warnings.catch_warnings():  # printed as `warning:` lines below, not again by Python
        warnings.simplefilter("ignore", LargeembWarning)
        outcome = evaluate_all(real, fakes, out, config, on_metrics=on_metrics, on_failure=on_failure, **options)
    for run in outcome.runs:
        if run.earlier:
            typer.echo(
                f"{run.out} already holds a finished result ({os.path.join(run.out, 'metrics.json')}); "
                "nothing to resume"
            )
        elif run.document is not None:
            for warning in run.document["warnings"][printed.get(run.name, 0):]:  # e.g. a failed plot stage
                typer.echo(f"warning: {warning}", err=True)
            _written(run)
    if several:
        _table(outcome.runs)
        typer.echo(f"wrote {os.path.join(out, 'summary.json')}")
    for line in outcome.gate_failures:
        typer.echo(line)
    if outcome.failed:
        names = ", ".join(run.name for run in outcome.failed)
        typer.echo(
            f"error: {len(outcome.failed)} of {len(outcome.runs)} fake sets failed ({names}); "
            "the others' results are published",
            err=True,
        )
    return outcome.exit_code


def _written(run) -> None:
    typer.echo(f"wrote {os.path.join(run.out, 'metrics.json')} and {os.path.join(run.out, 'report.html')}")
    if run.document["params"].get("plots"):
        typer.echo(f"wrote plots to {run.out} (redraw them with `largeemb plot {run.out}`)")


def _table(runs) -> None:
    """One row per fake: its label and the summary line (or why it failed)."""
    from largeemb.report.page import summary_line

    width = max(len(run.name) for run in runs)
    typer.echo("")
    for run in runs:
        line = summary_line(run.document) if run.document is not None else f"failed: {run.error}"
        typer.echo(f"{run.name.ljust(width)}  {line}")
