"""The commands on finished results: ``history``, ``compare`` and ``report``.

``cli.py`` adds them to its app with :func:`add_series_commands`.
Annotations are evaluated here at definition time (no ``from __future__
import annotations``): typer reads them from the closures below.
"""

import os
import warnings
from typing import Annotated

import typer

from largeemb.cli_options import Command, Debug, force_option
from largeemb.cli_process import run_action
from largeemb.errors import GATE_FAILED, InputError


def add_series_commands(app: typer.Typer) -> None:
    """Register ``history``, ``compare`` and ``report`` on ``app``."""

    @app.command(cls=Command)
    def history(
        file: Annotated[
            str,
            typer.Argument(metavar="FILE", help="History file (one JSON line per evaluated run).", show_default=False),
        ],
        out: Annotated[
            str | None, typer.Option("--out", "-o", metavar="DIR", help="Write DIR/trend.png and DIR/history.html.")
        ] = None,
        k: Annotated[
            int | None, typer.Option("--k", metavar="K", help="The k to show (default: the last run's primary k).")
        ] = None,
        baseline: Annotated[
            str | None,
            typer.Option(
                metavar="LABEL", help="The baseline run (default: the first run against the last run's real set)."
            ),
        ] = None,
        as_csv: Annotated[
            bool, typer.Option("--csv", help="Print the table as CSV (one row per run) instead of text.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON instead of text.")] = False,
        add: Annotated[
            list[str] | None,
            typer.Option("--add", metavar="RESULT", help="First append the run in this result directory (repeatable)."),
        ] = None,
        force: force_option("Replace trend.png/history.html in --out that another tool wrote.") = False,
        debug: Debug = False,
    ):
        """Show the runs of a history file: a table, trend.png and history.html."""
        from largeemb.io.results import read_metrics
        from largeemb.series import table as tables
        from largeemb.series.history import append_history, history_line, read_history
        from largeemb.series.pages import write_history_outputs
        from largeemb.series.record import same_run

        def action():
            if as_csv and as_json:
                raise InputError("--csv and --json exclude each other", "on the command line", "pass one of them")
            # all readable first
            new = [(directory, history_line(read_metrics(directory), directory)) for directory in add or ()]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for directory, line in new:
                    if os.path.exists(file) and any(same_run(line, old) for old in read_history(file)):
                        typer.echo(f"{directory} is in the history already; not added again", err=True)
                        continue
                    append_history(file, line)
                lines = read_history(file)
            table = tables.history_table(lines, k=k, baseline=baseline)
            for message in dict.fromkeys([str(w.message) for w in caught] + table.warnings):
                typer.echo(f"warning: {message}", err=True)
            if as_csv or as_json:
                typer.echo((tables.as_csv if as_csv else tables.as_json)(table).rstrip("\n"))
            else:
                typer.echo("\n".join(tables.text_table(table)))
            if out is not None:
                for path in write_history_outputs(table, out, force=force):
                    typer.echo(f"wrote {path}", err=as_csv or as_json)

        run_action(debug, action)

    @app.command(cls=Command)
    def compare(
        run_a: Annotated[
            str,
            typer.Argument(
                metavar="RUN_A", help="Result directory of the earlier (reference) run.", show_default=False
            ),
        ],
        run_b: Annotated[
            str, typer.Argument(metavar="RUN_B", help="Result directory of the run to judge.", show_default=False)
        ],
        fail_on_regression: Annotated[
            float | None,
            typer.Option(
                metavar="Z",
                help=f"Exit {GATE_FAILED} when precision, recall, density or coverage is lower in RUN_B "
                "by more than Z standard errors of the difference.",
            ),
        ] = None,
        debug: Debug = False,
    ):
        """Compare two results: B − A per metric and k, its standard error and z
        (paired when they share the real set)."""
        from largeemb.io.results import read_metrics
        from largeemb.series.compare import compare_runs, format_comparison, regressions

        def action():
            comparison = compare_runs(read_metrics(run_a), read_metrics(run_b), f"comparing {run_a} with {run_b}")
            failures = regressions(comparison, fail_on_regression) if fail_on_regression is not None else []
            typer.echo("\n".join(format_comparison(comparison)))
            for line in failures:
                typer.echo(line)
            if failures:
                raise typer.Exit(GATE_FAILED)

        run_action(debug, action)

    @app.command(cls=Command)
    def report(
        directory: Annotated[
            str, typer.Argument(metavar="DIR", help="The --out directory of an evaluate run.", show_default=False)
        ],
        debug: Debug = False,
    ):
        """(Re)write DIR/report.html: one self-contained page with the numbers, figures and worst rows."""
        from largeemb.report.page import write_report

        run_action(debug, lambda: typer.echo(f"wrote {write_report(directory)}"))
