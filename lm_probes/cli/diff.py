"""``lm-probes diff``: two recorded observation sets compared (snapshots/sets.py), as a page
and JSON (report/diff.py), lines for the terminal and the exit code (here: the command's job;
upgrade-check reports the same way)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lm_probes.report import ci_summary
from lm_probes.report.diff import as_json, fingerprint_line, output_paths_problem, write_report
from lm_probes.snapshots import sets
from lm_probes.snapshots.compare import summary_line
from lm_probes.snapshots.sets import CardComparison, SetComparison


def run_diff(args: argparse.Namespace) -> int:
    a, b = Path(args.a), Path(args.b)
    # the report's paths first: a page that cannot be written is known before anything is read
    problem = output_paths_problem(args.html, args.json, args.summary)
    if problem:
        print(f"lm-probes diff: {problem}", file=sys.stderr)
        return sets.BAD_INPUT
    try:
        comparisons = sets.compare_sets(a, b, args.card or None)
    except sets.DiffInputError as exc:
        print(f"lm-probes diff: {exc}", file=sys.stderr)
        return sets.BAD_INPUT
    return report_comparisons(
        comparisons,
        args.label_a or str(a),
        args.label_b or str(b),
        Path(args.html),
        args.json,
        summary=("diff", args.summary),
    )


VERDICTS = {0: "no difference beyond tolerance", 1: "differences"}


def summary_lines(comparisons: SetComparison | Sequence[CardComparison]) -> list[str]:
    """One line per card (and class) compared, then one per card or class not compared,
    for the terminal."""
    found = SetComparison.of(comparisons)
    lines = []
    for c in found:
        head = summary_line(c.provenance_a, c.provenance_b, list(c.differences), classes=(c.device_a, c.device_b))
        device = f" [{c.device_note}]" if c.device_note else ""
        lines.append(f"{c.name}: {head}{device}")
        for side, provenance in (("A", c.provenance_a), ("B", c.provenance_b)):
            lines.append(f"  {side} {c.device_a if side == 'A' else c.device_b}: {fingerprint_line(provenance)}")
        for side, only in (("A", c.sections_only_a), ("B", c.sections_only_b)):
            if only:
                lines.append(f"  section(s) only in {side}, not compared: {', '.join(only)}")
    for o in found.one_sided:
        lines.append(f"{o.card}: {o.message}")
    return lines


def report_comparisons(
    comparisons: SetComparison | Sequence[CardComparison],
    label_a: str,
    label_b: str,
    html: Path,
    json_path: str | None,
    summary: tuple[str, str | None] = ("diff", None),
) -> int:
    """The terminal lines, the page (and JSON if asked) of a comparison, and the CI summary
    (``summary``: the command's name and --summary FILE; $GITHUB_STEP_SUMMARY when set); returns
    the exit code."""
    found = SetComparison.of(comparisons)
    for line in summary_lines(found):
        print(line)
    written = write_report(found, label_a, label_b, html)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(as_json(found), encoding="utf-8")
    code = found.verdict
    print(f"report: {written}  (exit {code}: {verdict_line(found)})")
    if found.missing_cards:  # bad input, said where errors go too (a CI log, a script reading stderr)
        print(f"lm-probes: {verdict_line(found)}", file=sys.stderr)
    command, summary_file = summary
    markdown = ci_summary.comparison_markdown(command, found, label_a, label_b, written, code)
    ci_summary.write(markdown, Path(summary_file) if summary_file else None)
    return code


def verdict_line(found: SetComparison) -> str:
    """What the exit code says, and for exit 4 which cards were not compared and what to do."""
    if not found.missing_cards:
        return VERDICTS[found.verdict]
    cards = ", ".join(f"{o.card} (only in {o.side})" for o in found.missing_cards)
    also = "; the cards compared differ too" if any(c.errors for c in found) else ""
    return (
        f"not every card was compared: {cards}{also}. Give both sides a snapshot of each, "
        "or name the cards to compare with --card"
    )
