"""The page of ``lm-probes diff`` and ``lm-probes upgrade-check``: two observation sets
side by side (snapshots/sets.py compares them), each changed section shown the way its
entry in snapshots/sections.py says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from probes.report.html import provenance_table, templates
from probes.snapshots import sections
from probes.snapshots.sets import DIFFERENT, CardComparison, as_json, exit_code, fingerprint_line, summary_lines


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


def render(comparisons: list[CardComparison], label_a: str, label_b: str) -> str:
    cards = []
    for c in comparisons:
        by_section = c.by_section()
        cards.append(
            {
                "comparison": c,
                "rows": [
                    {
                        "section": section,
                        "count": len(found),
                        "worst": "error" if any(d.severity == "error" for d in found) else "warning",
                    }
                    for section, found in by_section.items()
                ],
                "provenance": Markup(provenance_table(c.provenance_a, c.provenance_b, labels=(label_a, label_b))),
                "details": section_details(c, (label_a, label_b)),
                "fingerprints": (fingerprint_line(c.provenance_a), fingerprint_line(c.provenance_b)),
            }
        )
    verdict = exit_code(comparisons)
    return (
        templates()
        .get_template("diff.html.j2")
        .render(cards=cards, label_a=label_a, label_b=label_b, verdict=verdict, DIFFERENT=DIFFERENT)
    )


def write_report(comparisons: list[CardComparison], label_a: str, label_b: str, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(comparisons, label_a, label_b), encoding="utf-8")
    return path


def report_comparisons(
    comparisons: list[CardComparison], label_a: str, label_b: str, html: Path, json_path: str | None
) -> int:
    """The terminal lines, the page (and JSON if asked) of a comparison; returns the exit code."""
    for line in summary_lines(comparisons):
        print(line)
    written = write_report(comparisons, label_a, label_b, html)
    if json_path:
        Path(json_path).write_text(as_json(comparisons), encoding="utf-8")
    code = exit_code(comparisons)
    print(f"report: {written}  (exit {code}: {'differences' if code else 'no difference beyond tolerance'})")
    return code
