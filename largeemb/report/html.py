"""Self-contained HTML pages: one file, images as data URIs, styles inline.

Nothing is fetched when a page opens (no external CSS, scripts or fonts), so a
report can be mailed, attached to a CI run or opened from an archive years
later and look the same.
"""

from __future__ import annotations

import base64
import html
import io
import math

#: A page's generator tag: lets a later run recognise a page it may replace.
GENERATOR = "largeemb"

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --band: #f6f8fa; --accent: #0b61a4; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.sub { color: var(--muted); margin: 0 0 16px; }
.summary { font-size: 17px; background: var(--band); border-left: 4px solid var(--accent);
           padding: 10px 14px; margin: 12px 0; }
.note { color: var(--muted); font-size: 13px; margin: 6px 0; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.def { color: var(--muted); font-size: 13px; }
td.name { font-weight: 600; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
tr.mark td { background: #fff8c5 !important; }
code { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; background: var(--band); padding: 1px 4px;
       border-radius: 4px; }
.warnings { border: 1px solid #d4a72c; background: #fff8c5; padding: 8px 14px 8px 30px; margin: 8px 0; }
.warnings li { color: var(--warn); }
figure { margin: 16px 0 24px; }
figure img { display: block; max-width: min(100%, 900px); height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.columns { display: flex; flex-wrap: wrap; gap: 0 32px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def number(value, digits: int = 4) -> str:
    """A metric for people: fixed decimals for everyday sizes, significant digits otherwise."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}f}"
    return f"{value:.{digits - 1}g}"


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes at its own dpi (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def table(headers, rows, numeric=(), marked=(), classes=None) -> str:
    """An HTML table. ``numeric``: column indices, right-aligned in tabular figures;
    ``marked``: row indices highlighted; ``classes``: {column index: CSS class}.
    Cells are escaped unless given as :class:`Raw`.
    """
    style = {i: "num" for i in numeric} | dict(classes or {})

    def attr(i):
        return f' class="{style[i]}"' if i in style else ""

    head = "".join(f"<th{attr(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        ('<tr class="mark">' if r in marked else "<tr>")
        + "".join(f"<td{attr(i)}>{_cell(v)}</td>" for i, v in enumerate(row))
        + "</tr>"
        for r, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """HTML that a table shows as it is (already escaped by the caller)."""


def _cell(value) -> str:
    return value if isinstance(value, Raw) else esc(value)


def image(uri: str, alt: str, caption: str = "") -> str:
    note = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}">{note}</figure>'


def page(title: str, body: str, generator: str = GENERATOR) -> str:
    """A whole HTML document around ``body``: the styles inline, nothing to fetch."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="{esc(generator)}">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f"<body><main>\n{body}\n</main></body></html>\n"
    )


def made_by(path: str, generator: str) -> bool:
    """Whether the page at ``path`` was written by ``generator`` (so a rerun may replace it)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(2048)
    except OSError:
        return False
    return f'<meta name="generator" content="{esc(generator)}">' in head
