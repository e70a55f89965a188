"""HTML pieces of the report in one place: tests hand over data (headers, rows, text),
and every value is escaped here, in one table style."""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The look lives in the stylesheet of templates/summary.html.j2 (classes lm and changed).
TABLE_ATTRIBUTES = "class='lm'"
HIGHLIGHT_CLASS = "changed"  # a value that changed, or where two texts part


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
    marked = f" class='{HIGHLIGHT_CLASS}'" if cell.highlight else ""
    return f"<{tag}{marked}>{inner}</{tag}>"


def table(headers: Sequence[object], rows: Iterable[Sequence[object]], caption: str | None = None) -> str:
    """A table with an optional caption paragraph above it; cells are escaped."""
    head = "".join(_cell(h, "th") for h in headers)
    body = "".join("<tr>" + "".join(_cell(c, "td") for c in row) + "</tr>" for row in rows)
    above = f"<p>{html.escape(caption)}</p>" if caption else ""
    return f"{above}<table {TABLE_ATTRIBUTES}><tr>{head}</tr>{body}</table>"


def figure(png_base64: str, name: str) -> str:
    """A PNG embedded in the page (self-contained), its name as alt text and caption."""
    return (
        f"<figure style='display:inline-block;margin:4px'><img alt='{html.escape(name)}' "
        f"src='data:image/png;base64,{png_base64}' style='max-width:640px'>"
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
    )


def texts(items: Iterable[str], caption: str | None = None) -> str:
    """Numbered texts (generations), each shown as its repr in monospace, under a caption."""
    entries = "".join(f"<li><code>{html.escape(repr(item))}</code></li>" for item in items)
    above = f"<p>{html.escape(caption)}</p>" if caption else ""
    return f"{above}<ol>{entries}</ol>"


# ------------------------------------------------------------------- summary sections

_WORST_FIRST = ("failed", "xpassed", "error", "skipped", "xfailed", "passed")
_OUTCOME_COLOURS = {
    "passed": "#c8e6c9",
    "failed": "#ffcdd2",
    "xfailed": "#fff9c4",
    "skipped": "#eeeeee",
    "xpassed": "#ffcdd2",
}


def observation_grid(outcomes: dict[tuple[str, str], list[str]]) -> dict[str, Any] | None:
    """One row per card, one column per observation id: the worst outcome of its tests
    (None where no test of that card checks it)."""
    if not outcomes:
        return None
    cards = sorted({card for card, _ in outcomes})
    ids = sorted({obs for _, obs in outcomes}, key=lambda o: (o[0], int(o[1:]) if o[1:].isdigit() else 0))
    rows = []
    for card in cards:
        cells = []
        for obs in ids:
            states = outcomes.get((card, obs))
            if not states:
                cells.append(None)
                continue
            worst = min(states, key=lambda s: _WORST_FIRST.index(s) if s in _WORST_FIRST else 0)
            cells.append({"worst": worst, "count": len(states), "colour": _OUTCOME_COLOURS.get(worst, "#fff")})
        rows.append((card, cells))
    return {"ids": ids, "rows": rows}


def provenance_table(
    recorded: dict[str, Any], current: dict[str, Any], labels: tuple[str, str] = ("snapshot", "this run")
) -> str:
    """The two provenances side by side, the values that changed highlighted."""
    keys = [k for k in current if k != "files"] or list(recorded)

    def shown(side: dict[str, Any], key: str) -> Any:
        value = side.get(key, "-")
        if key == "numerics" and isinstance(value, dict):  # the fingerprint, as one line
            from lm_probes.numerics import Numerics

            return Numerics.describe_recorded(value)
        return value

    return table(
        ["", *labels],
        [
            [
                Cell(value, highlight=shown(recorded, k) != shown(current, k))
                for value in (k, shown(recorded, k), shown(current, k))
            ]
            for k in keys
        ],
    )


@functools.cache
def templates() -> Any:
    """The one Jinja2 environment of lm_probes/report/templates (the report's summary, the diff page):
    autoescaped, so a value is escaped once, where it is rendered."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def summary_html(
    *,
    subjects: list[dict[str, Any]],
    observations: dict[tuple[str, str], list[str]],
    snapshots: dict[str, Any],
    benchmarks: tuple[list[str], list[list[object]]] | None,
    fragments: dict[str, dict[str, list[str]]],
) -> str:
    """Every summary section of the report, rendered by templates/summary.html.j2."""
    from markupsafe import Markup

    from lm_probes import memory

    return (
        templates()
        .get_template("summary.html.j2")
        .render(
            # the peak RSS figures, as data in the rows (sent by xdist workers), as one cell
            subjects=[row | {"peak_rss": memory.describe(row.get("peak_rss") or {})} for row in subjects],
            observations=observation_grid(observations),
            snapshots=snapshots,
            provenance_tables={
                card: Markup(provenance_table(o.recorded_provenance, o.current_provenance))
                for card, o in snapshots.items()
            },
            benchmarks=Markup(table(*benchmarks)) if benchmarks else None,
            # already escaped by table() / texts() / the figure markup of the attach fixture
            fragments={
                heading: {card: [Markup(f) for f in pieces] for card, pieces in by_card.items()}
                for heading, by_card in fragments.items()
            },
        )
    )
