"""The behaviour changelog's two renderings: Markdown (committed as docs/behaviour-changelog.md)
and HTML (autoescaped through report/html.py's one environment). Both are pure functions of
the matrix (snapshots/changelog.py) and the changelog folder's state, so a committed page can
be re-rendered and checked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lm_probes.report.html import templates
from lm_probes.snapshots.changelog import CHANGED, FIRST, NOT_INSTALLABLE, NOT_LOADABLE, UNCHANGED, Cell, Matrix

ALL_SECTIONS = "(all sections)"  # the one column of a card none of whose sections changed


@dataclass(frozen=True)
class Page:
    """What both renderings show, worked out once."""

    title: str
    columns: list[tuple[str, str]]
    rows: list[tuple[str, list[tuple[Cell, int]]]]  # release, then (cell, note number or 0) per column
    notes: list[str]  # note N is notes[N - 1]
    changes: list[dict[str, Any]]
    never_changed: dict[str, list[str]]
    not_compared: dict[str, dict[str, str]]
    machines: list[str]
    runs: list[dict[str, Any]]


def page(matrix: Matrix, runs: list[dict[str, Any]], provenance: list[dict[str, Any]], notes_of) -> Page:
    columns = matrix.columns
    columns += [(card, ALL_SECTIONS) for card in matrix.cards if not any(c == card for c, _ in columns)]
    columns.sort(key=lambda column: matrix.cards.index(column[0]))
    notes: list[str] = []

    def note(text: str) -> int:
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    rows = []
    for row in matrix.rows:
        cells = []
        for card, section in columns:
            cell = matrix.cell(row, card, section)  # ALL_SECTIONS: the card's own state, never "changed"
            numbered = note(cell.detail) if cell.state in (CHANGED, NOT_LOADABLE, NOT_INSTALLABLE) else 0
            cells.append((cell, numbered))
        rows.append((row.release, cells))
    changes = [
        {
            "release": row.release,
            "since": cell.since,
            "card": card,
            "section": section,
            "detail": cell.detail,
            "notes": notes_of(row.release),
        }
        for row, card, section, cell in matrix.transitions()
    ]
    first, last = (matrix.rows[0].release, matrix.rows[-1].release) if matrix.rows else ("", "")
    return Page(
        title=f"Behaviour changelog: {matrix.package} {first} → {last}",
        columns=columns,
        rows=rows,
        notes=notes,
        changes=changes,
        never_changed={card: matrix.never_changed(card) for card in matrix.cards},
        not_compared=matrix.not_compared,
        machines=machines(provenance),
        runs=runs,
    )


def machines(provenance: list[dict[str, Any]]) -> list[str]:
    """Each machine the sets were recorded on, in one line: class, CPU, features, torch, Python, threads."""
    seen = []
    for p in provenance:
        numerics = p.get("numerics") or {}
        line = (
            f"class `{p.get('class', '?')}`: {numerics.get('device_name', '?')} "
            f"({', '.join(numerics.get('cpu_features') or []) or 'no listed features'}), torch {p.get('torch', '?')}, "
            f"Python {p.get('python', '?')}, {p.get('cpu threads', '?')} torch thread(s)"
        )
        if line not in seen:
            seen.append(line)
    return seen


def _cell_text(cell: Cell, number: int) -> str:
    if cell.state == UNCHANGED:
        return "·"
    if cell.state == FIRST:
        return "first"
    word = "**changed**" if cell.state == CHANGED else cell.state
    return f"{word} [{number}]"


def _shortened(text: str, limit: int = 160) -> str:
    """A change in the list, cut to a line (the notes under the table and the HTML keep it whole)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _escape(text: str) -> str:
    """A value inside a Markdown table cell or list: pipes and line breaks would end it."""
    return text.replace("|", "\\|").replace("\n", " ")


READING_GUIDE = """\
## Reading this page

- **Rows** are releases, oldest first. **Columns** are a card's sections (what the suite
  observes of a model: `tokenizer`, `greedy`, `next_token` ...; docs/snapshots.md lists
  them) that changed in at least one release; a card none of whose sections changed has one
  column. Sections that never changed are listed after the table.
- **changed** means the snapshot comparison of that release against the previous release
  where the same card recorded (its "since", in the list below) found an error-severity
  difference in that section: exactly what `lm-probes diff` and `upgrade-check` report.
  The note gives the first difference. `·` means compared and unchanged; `first` is the
  first release the card recorded under, what the next one is compared with.
- **Tolerances** are the snapshots' own: each section's defaults (lm_probes/snapshots/sections.py)
  and the card's `snapshot.tolerances`, the same ones the default suite uses. Token ids,
  texts and top-1 choices are compared exactly; probabilities and hidden states within the
  stated tolerances. Sampled texts are not compared across transformers versions (the
  sampler's code is part of what moves).
- **not loadable** means the card did not record under that release (the note gives the
  test's error: a GGUF reader or tokenizer class that release lacks); **not installable**
  means the release's environment could not be built here (the note says which package the
  index lacks). Neither is a failure of the release: it marks where the table is blind.
- Recorded on one machine class, with one torch thread (below); on another class the same
  releases may differ within the cross-class rules (docs/snapshots.md), not beyond them.
"""


def markdown(shown: Page, regenerate: str) -> str:
    lines = [f"# {shown.title}", ""]
    lines += [
        f"Generated by `lm-probes changelog`; do not edit by hand. {regenerate}",
        "",
        READING_GUIDE,
        "## Recorded on",
        "",
        *[f"- {line}" for line in shown.machines],
        "",
        "Commands that recorded it:",
        "",
        *[
            f"- `{run['command']}` ({run['date']}; {len(run['added'])} release(s) added, {run['seconds']:.0f} s)"
            for run in shown.runs
        ],
        "",
        "## What changed, release by release",
        "",
    ]
    if not shown.changes:
        lines.append("Nothing changed in this range.")
    for change in shown.changes:
        link = f" ([release notes]({change['notes']}))" if change["notes"] else ""
        lines.append(
            f"- **{change['release']}** (since {change['since']}) {change['card']} `{change['section']}`: "
            f"{_escape(_shortened(change['detail']))}{link}"
        )
    header = ["release", *[f"{card} `{section}`" for card, section in shown.columns]]
    lines += ["", "## The matrix", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for release, cells in shown.rows:
        lines.append("| " + " | ".join([release, *[_cell_text(cell, n) for cell, n in cells]]) + " |")
    lines += ["", "## Never changed in this range", ""]
    lines += [
        f"- {card}: {', '.join(f'`{s}`' for s in sections) or '(none)'}"
        for card, sections in shown.never_changed.items()
    ]
    for card, sections in shown.not_compared.items():
        for section, why in sections.items():
            lines.append(f"- {card}: `{section}` is not compared between these releases ({_escape(why)})")
    lines += ["", "## Notes", ""]
    lines += [f"{number}. {_escape(text)}" for number, text in enumerate(shown.notes, start=1)] or ["(none)"]
    return "\n".join(lines) + "\n"


def html(shown: Page, regenerate: str) -> str:
    return templates().get_template("changelog.html.j2").render(page=shown, regenerate=regenerate)


def render(matrix: Matrix, runs, provenance, notes_of: Callable[[str], str | None], regenerate: str) -> tuple[str, str]:
    """(Markdown, HTML) of one changelog."""
    shown = page(matrix, runs, provenance, notes_of)
    return markdown(shown, regenerate), html(shown, regenerate)
