"""HTML pieces of the report in one place: tests hand over data (headers, rows, text),
and every value is escaped here, in one table style."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TABLE_ATTRIBUTES = "border='1' cellpadding='3' style='border-collapse:collapse'"
HIGHLIGHT = "background:#fff3cd"  # a value that changed, or where two texts part


@dataclass(frozen=True)
class Cell:
    """A table cell that needs more than its text: monospace, bold, or highlighted."""

    text: object
    code: bool = False
    strong: bool = False
    highlight: bool = False


def _cell(value: object, tag: str) -> str:
    cell = value if isinstance(value, Cell) else Cell(value)
    inner = html.escape(str(cell.text))
    if cell.code:
        inner = f"<code>{inner}</code>"
    if cell.strong:
        inner = f"<b>{inner}</b>"
    style = f" style='{HIGHLIGHT}'" if cell.highlight else ""
    return f"<{tag}{style}>{inner}</{tag}>"


def table(headers: Sequence[object], rows: Iterable[Sequence[object]], caption: str | None = None) -> str:
    """A table with an optional caption paragraph above it; cells are escaped."""
    head = "".join(_cell(h, "th") for h in headers)
    body = "".join("<tr>" + "".join(_cell(c, "td") for c in row) + "</tr>" for row in rows)
    above = f"<p>{html.escape(caption)}</p>" if caption else ""
    return f"{above}<table {TABLE_ATTRIBUTES}><tr>{head}</tr>{body}</table>"


def texts(items: Iterable[str], caption: str | None = None) -> str:
    """Numbered texts (generations), each shown as its repr in monospace, under a caption."""
    entries = "".join(f"<li><code>{html.escape(repr(item))}</code></li>" for item in items)
    above = f"<p>{html.escape(caption)}</p>" if caption else ""
    return f"{above}<ol>{entries}</ol>"
