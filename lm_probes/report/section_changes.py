"""How ``lm-probes diff`` shows a section that changed: each section's entry
(snapshots/sections.py) names one of these. A renderer takes the section's name, its two
recordings and the two sides' labels and returns details for the diff page, each a heading and a
piece of already-escaped HTML; none where the section's differences table says it all. Like
every piece of HTML, they are written in the report stage (moved from snapshots/render.py), with
report/html.py's tables."""

from __future__ import annotations

import difflib
import html
from dataclasses import dataclass
from typing import Any

from lm_probes.report.html import Cell, table

MAX_ROWS = 12  # changed values listed per section; the differences table has the rest


@dataclass(frozen=True)
class Detail:
    title: str
    html: str  # escaped


def word_diff(a: str, b: str) -> str:
    """Two texts as one line of words, removed words struck through and added ones marked
    (escaped HTML)."""
    words_a, words_b = a.split(" "), b.split(" ")
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=words_a, b=words_b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(words_a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{html.escape(' '.join(words_a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{html.escape(' '.join(words_b[j1:j2]))}</ins>")
    return " ".join(out)


def greedy_texts(name: str, rec: dict, cur: dict, labels: tuple[str, str]) -> list[Detail]:
    """Per greedy run that changed: both texts as a word diff, where they part, and each
    side's recorded margin (top-1 minus top-2 logit) at that step."""
    details = []
    for run, was in rec.items():
        now = cur.get(run)
        if now is None or was["ids"] == now["ids"]:
            continue
        i = next((k for k, (x, y) in enumerate(zip(was["ids"], now["ids"])) if x != y), None)
        lines = []
        if i is not None:
            margins = [side.get("margins", []) for side in (was, now)]
            a, b = (m[i] if i < len(m) else None for m in margins)
            lines.append(
                f"<p>token {was['ids'][i]} → {now['ids'][i]}; top-1 minus top-2 logit at that step: "
                f"{a} ({html.escape(labels[0])}), {b} ({html.escape(labels[1])})</p>"
            )
        lines.append(f"<p>{word_diff(was['text'], now['text'])}</p>")
        details.append(Detail(f"Greedy ({run}): the texts part at new token {i}", "\n".join(lines)))
    return details


def answer_end_texts(name: str, rec: dict, cur: dict, labels: tuple[str, str]) -> list[Detail]:
    """Per answer whose end moved: how each side ended, and both texts as a word diff."""
    details = []
    for request, was in rec.items():
        now = cur.get(request)
        if now is None or (was["ids"], was["end"]) == (now["ids"], now["end"]):
            continue
        sides = "; ".join(
            # str(): a hand-edited file may hold another type there; the page still shows it
            f"{html.escape(label)}: {html.escape(str(side['end']))} after {side['new_tokens']} new tokens"
            for label, side in zip(labels, (was, now))
        )
        details.append(
            Detail(f"Answer end ({request})", f"<p>{sides}</p>\n<p>{word_diff(str(was['text']), str(now['text']))}</p>")
        )
    return details


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """A recording flattened to dotted paths (lists of numbers kept whole)."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found |= _leaves(item, f"{prefix}.{key}" if prefix else str(key))
        return found
    if isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
        found = {}
        for i, item in enumerate(value):
            found |= _leaves(item, f"{prefix}[{i}]")
        return found
    return {prefix: value}


def _short(value: Any, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def changed_values(name: str, rec: Any, cur: Any, labels: tuple[str, str]) -> list[Detail]:
    """The values that differ between the two recordings, side by side (at most MAX_ROWS)."""
    a, b = _leaves(rec), _leaves(cur)
    changed = [key for key in dict.fromkeys([*a, *b]) if a.get(key) != b.get(key)]
    if not changed:
        return []
    rows = [(Cell(key, code=True), _short(a.get(key, "-")), _short(b.get(key, "-"))) for key in changed[:MAX_ROWS]]
    more = f"<p>and {len(changed) - MAX_ROWS} more</p>" if len(changed) > MAX_ROWS else ""
    return [Detail(f"{name}: {len(changed)} recorded value(s) changed", table(["value", *labels], rows) + more)]
