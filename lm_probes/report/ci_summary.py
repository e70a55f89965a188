"""The short Markdown summary a CI job shows (a pull request's checks, GitHub's job summary): one
verdict line, then one row per card with its first failure or difference, and the way to the
HTML page. Written by a pytest session (``--lm-probes-summary FILE``) and by ``diff``,
``upgrade-check`` and ``bisect`` (``--summary FILE``); appended to ``$GITHUB_STEP_SUMMARY`` too
when that is set, as GitHub documents it (several steps append to one job summary).

A passing run is one line; a failing one names the card, the test and its first line, so the
reader knows where to look before opening the page.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lm_probes.snapshots.bisection import Bisection
    from lm_probes.snapshots.outcome import SnapshotOutcome
    from lm_probes.snapshots.sets import SetComparison

GITHUB_STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
CELL_CHARACTERS = 160  # a table cell's text at most: the first line of a message, not its traceback


def cell(text: str) -> str:
    """One table cell: the first non-empty line, cut, with the characters Markdown tables read escaped."""
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    if len(line) > CELL_CHARACTERS:
        line = line[: CELL_CHARACTERS - 1] + "…"
    return line.replace("|", "\\|").replace("`", "'")


def write(markdown: str, path: Path | None, environ: dict[str, str] | None = None) -> list[Path]:
    """``markdown`` into ``path`` (replaced: the user named it for this run) and appended to
    ``$GITHUB_STEP_SUMMARY`` when set; the files written."""
    environ = os.environ if environ is None else environ
    written = []
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")
        written.append(path)
    step_summary = environ.get(GITHUB_STEP_SUMMARY)
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as out:
            out.write(markdown + "\n")
        written.append(Path(step_summary))
    return written


def _report_line(html: str | Path | None) -> str:
    return f"\n\nReport: `{html}`" if html else ""


# ------------------------------------------------------------------ a pytest session


@dataclass
class CardResult:
    """What one card's tests did in a session: counts by outcome, and its failures in order."""

    counts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (test id, its message's first line)

    def add(self, outcome: str, test: str, message: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if outcome in ("failed", "error"):
            self.failures.append((test, message))


def session_markdown(
    results: dict[str, CardResult],
    snapshots: dict[str, SnapshotOutcome],
    other: CardResult,
    html: str | Path | None,
    exit_code: int,
) -> str:
    """The session's summary: one line when every card passed and none changed since its
    snapshot; else the verdict, then a row per card. ``other`` holds the session's tests that no
    card parametrized (a host project's own, the library's)."""
    cards = sorted(set(results) | set(snapshots))
    changed = {c: o for c, o in snapshots.items() if o.verdict == "failed"}
    failed_cards = [c for c in cards if results.get(c, CardResult()).failures or c in changed]
    tests = sum(sum(r.counts.values()) for r in results.values())
    other_failures = other.failures
    if exit_code == 0 and not failed_cards and not other_failures:
        names = ", ".join(cards) if len(cards) <= 4 else f"{len(cards)} cards"
        return f"**lm-probes: passed**: {names}, {tests} tests, no change since the snapshots.{_report_line(html)}\n"
    lines = [
        f"**lm-probes: failed** (exit {exit_code}): {len(failed_cards)} of {len(cards)} cards"
        + (f", and {len(other_failures)} other test(s)" if other_failures else ""),
        "",
        "| card | verdict | first failure or difference |",
        "|---|---|---|",
    ]
    for card in cards:
        result = results.get(card, CardResult())
        outcome = snapshots.get(card)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items()))
        if result.failures:
            test, message = result.failures[0]
            first = f"`{cell(test)}`: {cell(message)}"
            verdict = f"failed ({counts})"
        elif outcome is not None and outcome.verdict == "failed":
            first, verdict = _first_difference(outcome), f"changed since its snapshot ({counts})"
        else:
            first, verdict = "", f"passed ({counts})" if counts else "passed"
        if outcome is not None and outcome.verdict == "failed" and result.failures:
            first += f"; snapshot: {_first_difference(outcome)}"
        lines.append(f"| {cell(card)} | {verdict} | {first} |")
    for test, message in other_failures[:5]:
        lines.append(f"| (no card) | failed | `{cell(test)}`: {cell(message)} |")
    return "\n".join(lines) + _report_line(html) + "\n"


def _first_difference(outcome: SnapshotOutcome) -> str:
    errors = outcome.errors
    if errors:
        return cell(f"{errors[0].where}: {errors[0].message}") + (
            f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        )
    return cell(outcome.message or outcome.summary or outcome.status)


# ----------------------------------------------------------------- the commands


def comparison_markdown(command: str, found: SetComparison, label_a: str, label_b: str, html: Path, code: int) -> str:
    """``diff`` / ``upgrade-check``: the verdict, then a row per card compared with its first difference."""
    title = f"**lm-probes {command}** {cell(label_a)} → {cell(label_b)}"
    errors = [c for c in found if c.errors]
    if code == 0 and not errors and not found.one_sided:
        return f"{title}: no difference beyond tolerance ({len(found)} compared).{_report_line(html)}\n"
    lines = [
        f"{title}: exit {code}, {len(errors)} of {len(found)} compared differ"
        + (f", {len(found.missing_cards)} card(s) on one side only" if found.missing_cards else ""),
        "",
        "| card | errors | first difference |",
        "|---|---|---|",
    ]
    for c in found:
        first = next((d for d in c.differences if d.severity == "error"), None)
        text = cell(f"{first.where}: {first.message}") if first else ""
        lines.append(f"| {cell(c.name)} | {c.errors} | {text} |")
    for o in found.one_sided:
        lines.append(f"| {cell(o.card)} | not compared | {cell(o.message)} |")
    return "\n".join(lines) + _report_line(html) + "\n"


def bisect_markdown(package: str, good: str, bad: str, found: Bisection, index: Path, code: int) -> str:
    """``bisect``: the verdict, then one row per transition (card, section, release, what changed)."""
    title = f"**lm-probes bisect** {cell(package)} {cell(good)} → {cell(bad)}"
    transitions = list(found.transitions)
    if not transitions:
        return f"{title}: nothing changed ({len(found.recorded)} releases).{_report_line(index)}\n"
    lines = [
        f"{title}: exit {code}, {len(transitions)} transition(s)",
        "",
        "| card | section | release | what changed |",
        "|---|---|---|---|",
    ]
    lines += _transition_rows(transitions)
    return "\n".join(lines) + _report_line(index) + "\n"


def _transition_rows(transitions: Iterable) -> list[str]:
    return [
        f"| {cell(t.card)} | {cell(t.section)} | {cell(t.release)} (after {cell(t.before)}) | {cell(t.change)} |"
        for t in transitions
    ]
