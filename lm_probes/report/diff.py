"""The page of ``lm-probes diff`` and ``lm-probes upgrade-check``: two observation sets
side by side (snapshots/sets.py compares them), each changed section shown the way its
entry in snapshots/sections.py says, and what only one side holds named."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from lm_probes.exit_codes import BAD_INPUT, DIFFERENT
from lm_probes.numerics import Numerics
from lm_probes.paths import write_blocker
from lm_probes.report.html import provenance_table, templates
from lm_probes.snapshots import sections

if TYPE_CHECKING:
    from lm_probes.snapshots.bisection import Bisection
    from lm_probes.snapshots.sets import CardComparison, SetComparison


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


def output_paths_problem(
    html: Path | str | None, json_path: Path | str | None, summary: Path | str | None = None
) -> str | None:
    """The first problem with the report's paths (``output_path_problem``), or None."""
    if html and json_path and Path(html).resolve() == Path(json_path).resolve():
        return f"--html and --json both name {html}; give each its own file"
    for path, option in ((html, "--html"), (json_path, "--json"), (summary, "--summary")):
        problem = output_path_problem(path, option) if path is not None else None
        if problem:
            return problem
    return None


def fingerprint_line(provenance: dict[str, Any]) -> str:
    """A recorded side's numerics fingerprint as one line, or what a set from before
    fingerprints says of its device."""
    if isinstance(provenance.get("numerics"), dict):
        return Numerics.describe_recorded(provenance["numerics"])
    device, dtype = provenance.get("device", "?"), provenance.get("dtype", "?")
    return f"no numerics fingerprint recorded (device {device}, dtype {dtype})"


def as_json(found: SetComparison) -> str:
    """The differences as data, for CI that wants more than the exit code: one entry per card
    (and class) compared, then one per card or class only one side holds ("compared":
    false, its reason as a difference: an error for a card, a warning for a class)."""
    entries: list[dict[str, Any]] = [
        {
            "card": c.card,
            "compared": True,
            "devices": [c.device_a, c.device_b],
            "differences": [{"severity": d.severity, "where": d.where, "message": d.message} for d in c.differences],
            "unchanged": c.unchanged,
            "sections_only_in_a": list(c.sections_only_a),
            "sections_only_in_b": list(c.sections_only_b),
        }
        for c in found
    ]
    entries += [
        {
            "card": o.card,
            "compared": False,
            "only_in": o.side,
            "devices": list(o.classes),
            "differences": [
                {"severity": o.severity, "where": "card" if o.whole_card else "class", "message": o.message}
            ],
            "unchanged": [],
        }
        for o in found.one_sided
    ]
    return json.dumps(entries, indent=1)


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


def render(found: SetComparison, label_a: str, label_b: str) -> str:
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
            verdict=found.verdict,
            DIFFERENT=DIFFERENT,
            BAD_INPUT=BAD_INPUT,
        )
    )


def write_report(found: SetComparison, label_a: str, label_b: str, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(found, label_a, label_b), encoding="utf-8")
    return path


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
            replace(
                compared, comparisons=tuple(card for card in compared if card.name == transition.card), one_sided=()
            ),
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
