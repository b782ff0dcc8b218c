"""``largeemb worst``: the rows a result's samples.zarr ranks worst, or (``--copies``) the closest fake-real pairs.

``cli.py`` adds it to its app with :func:`add_worst_command`. Annotations are
evaluated here at definition time (no ``from __future__ import
annotations``): typer reads them from the closure below.
"""

from typing import Annotated

import typer

from largeemb.cli_options import Command, Debug
from largeemb.cli_process import run_action
from largeemb.errors import InputError


def add_worst_command(app: typer.Typer) -> None:
    """Register ``worst`` on ``app``."""

    @app.command(cls=Command)
    def worst(
        out: Annotated[
            str, typer.Argument(metavar="DIR", help="The --out directory of an evaluate run.", show_default=False)
        ],
        n: Annotated[int, typer.Option("--n", metavar="N", help="Rows to list on each side (at least 1).")] = 20,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object (for scripts) instead of tables.")
        ] = False,
        closest: Annotated[
            bool,
            typer.Option("--copies", help="List the closest fake-real pairs instead (possible copies of real rows)."),
        ] = False,
        debug: Debug = False,
    ):
        """List the fake rows least supported by the real set and the real rows least covered (--copies: the
        fake rows nearest to a real row)."""
        import json

        from largeemb.io import samples as store

        def action():
            if n < 1:
                raise InputError(f"--n must be at least 1, got {n}", "on the command line", "pass e.g. --n 20")
            samples = store.read_samples(out)
            if closest:
                pairs = store.copies(samples, n)
                if as_json:
                    typer.echo(json.dumps({"copies": pairs, "sorted_by": store.COPIES_ORDER}, indent=2))
                    return
                typer.echo(f"closest fake-real pairs, sorted by {store.COPIES_ORDER}:")
                _table(pairs)
                return
            fake, real = store.worst_rows(samples, n)
            k = samples["k"][0]
            if as_json:
                typer.echo(
                    json.dumps(
                        {"k": k, "fake": fake, "real": real, "fake_sorted_by": store.FAKE_ORDER,
                         "real_sorted_by": store.REAL_ORDER},
                        indent=2,
                    )
                )
                return
            typer.echo(f"fake rows least supported by the real set (k={k}), sorted by {store.FAKE_ORDER}:")
            _table(fake)
            typer.echo(f"real rows least covered by the fake set (k={k}), sorted by {store.REAL_ORDER}:")
            _table(real)
            note = store.zero_radius_note(samples)
            if note:
                typer.echo(f"note: {note}")

        run_action(debug, action)


def _table(rows: list[dict]) -> None:
    """Columns named as the arrays in samples.zarr (and the keys of --json), right-aligned."""
    if not rows:
        return
    cells = [
        [f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v) for v in row.values()] for row in rows
    ]
    widths = [max(len(name), *(len(c[i]) for c in cells)) for i, name in enumerate(rows[0])]
    typer.echo("  ".join(name.rjust(w) for name, w in zip(rows[0], widths)))
    for c in cells:
        typer.echo("  ".join(v.rjust(w) for v, w in zip(c, widths)))
