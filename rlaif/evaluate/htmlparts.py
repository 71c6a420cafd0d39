"""Pieces of the self-contained HTML reports: escaping, tables, embedded PNG figures."""

from __future__ import annotations

import base64
import html

from rlaif.evaluate.table import fmt

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { text-align: left; }
td:first-child { text-align: left; }
td.text { text-align: left; max-width: 30em; white-space: pre-wrap; }
td.best { font-weight: bold; background: #e8f4e8; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; max-width: 40em; }
.note { background: #fff8e0; border-left: 4px solid #e0b000; padding: 0.6em 1em; }
.meta td { text-align: left; }
"""


def esc(text: object) -> str:
    """Text escaped for HTML."""
    return html.escape(str(text))


def figure(png: bytes, caption: str) -> str:
    """A PNG embedded as a data: URI, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def table(header: list[str], rows: list[list[str]], text_cols: tuple[int, ...] = ()) -> str:
    """An HTML table of escaped cells; ``text_cols`` are left-aligned, wrapped text."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = ' class="text"' if i in text_cols else ""
            cells.append(f"<td{cls}>{esc(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def meta(items: list[tuple[str, object]]) -> str:
    """A two-column table of names and values."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    return f'<table class="meta">{rows}</table>'


def pct(x: float | None) -> str:
    """A share as a percentage ("-" for None)."""
    return fmt(x, True)
