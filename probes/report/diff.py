"""The page of ``lm-probes diff`` and ``lm-probes upgrade-check``: two observation sets
side by side (snapshots/sets.py compares them), each changed section shown the way its
entry in snapshots/sections.py says, and what only one side holds named."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from probes.paths import write_blocker
from probes.report.html import provenance_table, templates
from probes.snapshots import sections
from probes.snapshots.sets import (
    BAD_INPUT,
    DIFFERENT,
    CardComparison,
    SetComparison,
    as_json,
    exit_code,
    fingerprint_line,
    summary_lines,
)

if TYPE_CHECKING:
    from probes.snapshots.bisection import Bisection

VERDICTS = {0: "no difference beyond tolerance", 1: "differences"}


def output_path_problem(path: Path | str, option: str) -> str | None:
    """Why ``path`` (an ``--html`` or ``--json`` file) could not be written, in one sentence,
    or None. Checked before anything is compared, and without writing: the folders it
    needs are made only when the report is written."""
    if not str(path).strip():
        return f"{option} is empty; give a file path, e.g. {option} reports/diff.{option.lstrip('-')}"
    path = Path(path)
    if path.is_dir():
        return f"{option} {path} is a folder; give a file path, e.g. {option} {path / ('diff.' + option.lstrip('-'))}"
    # the nearest folder that exists: where the report's folders would be made
    folder, kind = write_blocker(path.parent) or (None, None)
    if kind == "file":
        return f"{option} {path} cannot be written: {folder} is a file, not a folder; give a path in a folder"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{option} {path} cannot be written: the file is read-only; give another path or make it writable"
    if not path.exists() and kind == "read-only":
        return f"{option} {path} cannot be written: the folder {folder} is read-only; give a path in a writable folder"
    return None


def output_paths_problem(html: Path | str | None, json_path: Path | str | None) -> str | None:
    """The first problem with the report's paths (``output_path_problem``), or None."""
    if html and json_path and Path(html).resolve() == Path(json_path).resolve():
        return f"--html and --json both name {html}; give each its own file"
    for path, option in ((html, "--html"), (json_path, "--json")):
        problem = output_path_problem(path, option) if path is not None else None
        if problem:
            return problem
    return None


def section_details(c: CardComparison, labels: tuple[str, str]) -> list[dict[str, Any]]:
    """Per changed section both sides hold, what its renderer shows of the change."""
    details = []
    for name in c.by_section():
        section = sections.find(name)
        if section is None or name not in c.observed_a or name not in c.observed_b:
            continue
        for d in section.render(name, c.observed_a[name], c.observed_b[name], labels):
            details.append({"title": d.title, "html": Markup(d.html)})
    return details


def render(comparisons: SetComparison | Sequence[CardComparison], label_a: str, label_b: str) -> str:
    found = SetComparison.of(comparisons)
    cards = []
    for c in found:
        by_section = c.by_section()
        cards.append(
            {
                "comparison": c,
                "rows": [
                    {
                        "section": section,
                        "count": len(differences),
                        "worst": "error" if any(d.severity == "error" for d in differences) else "warning",
                    }
                    for section, differences in by_section.items()
                ],
                "provenance": Markup(provenance_table(c.provenance_a, c.provenance_b, labels=(label_a, label_b))),
                "details": section_details(c, (label_a, label_b)),
                "fingerprints": (fingerprint_line(c.provenance_a), fingerprint_line(c.provenance_b)),
            }
        )
    labels = {"A": label_a, "B": label_b}
    one_sided = [{"item": o, "label": labels[o.side]} for o in found.one_sided]
    return (
        templates()
        .get_template("diff.html.j2")
        .render(
            cards=cards,
            one_sided=one_sided,
            label_a=label_a,
            label_b=label_b,
            verdict=exit_code(found),
            DIFFERENT=DIFFERENT,
            BAD_INPUT=BAD_INPUT,
        )
    )


def write_report(comparisons: SetComparison | Sequence[CardComparison], label_a: str, label_b: str, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(comparisons, label_a, label_b), encoding="utf-8")
    return path


def report_comparisons(
    comparisons: SetComparison | Sequence[CardComparison],
    label_a: str,
    label_b: str,
    html: Path,
    json_path: str | None,
) -> int:
    """The terminal lines, the page (and JSON if asked) of a comparison; returns the exit code."""
    found = SetComparison.of(comparisons)
    for line in summary_lines(found):
        print(line)
    written = write_report(found, label_a, label_b, html)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(as_json(found), encoding="utf-8")
    code = exit_code(found)
    print(f"report: {written}  (exit {code}: {verdict_line(found)})")
    if found.missing_cards:  # bad input, said where errors go too (a CI log, a script reading stderr)
        print(f"lm-probes: {verdict_line(found)}", file=sys.stderr)
    return code


def verdict_line(found: SetComparison) -> str:
    """What the exit code says, and for exit 4 which cards were not compared and what to do."""
    if not found.missing_cards:
        return VERDICTS[exit_code(found)]
    cards = ", ".join(f"{o.card} (only in {o.side})" for o in found.missing_cards)
    also = "; the cards compared differ too" if any(c.errors for c in found) else ""
    return (
        f"not every card was compared: {cards}{also}. Give both sides a snapshot of each, "
        "or name the cards to compare with --card"
    )


def write_bisect_pages(found: Bisection, package: str, folder: Path, notes_of: Callable[[str], str | None]) -> Path:
    """lm-probes bisect's pages: ``folder``/index.html, the transitions, and transition-N.html
    per transition (the diff page of the release before it against it, for the transition's
    card, as the search compared them); returns the index."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for number, transition in enumerate(found.transitions, start=1):
        page = f"transition-{number}.html"
        compared = found.comparisons[(transition.before, transition.release)]
        write_report(
            SetComparison(tuple(card for card in compared if card.name == transition.card)),
            f"{package} {transition.before}",
            f"{package} {transition.release}",
            folder / page,
        )
        rows.append(
            {**transition.__dict__, "exact": transition.exact, "page": page, "notes": notes_of(transition.release)}
        )
    index = folder / "index.html"
    index.write_text(
        templates()
        .get_template("bisect.html.j2")
        .render(
            package=package,
            good=found.good,
            bad=found.bad,
            releases=found.releases,
            recorded=found.recorded,
            transitions=rows,
            skipped=found.skipped,
        ),
        encoding="utf-8",
    )
    return index
