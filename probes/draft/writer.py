"""Card files written with comments: the YAML a drafted card is (``probes/draft.py``).

PyYAML writes no comments, and a drafted card's comments are half its value (what was
measured, what margin a bound keeps), so cards are written here: block mappings for
sections, one flow line per list item or short mapping, a comment after the line it is
about. Every string is double-quoted as JSON quotes it (valid YAML), with every
character that is not printable escaped, so a token piece such as U+2028 cannot become a
line break. ``write_card`` reads its own output back and refuses to return text that
does not parse to the data it was given.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import yaml

from probes.draft.settings import Draft, DraftSettings


@dataclass(frozen=True)
class Commented:
    """A value with the comment written after it (or after its key, for a section)."""

    value: Any
    comment: str


@dataclass(frozen=True)
class Block:
    """A multi-line string written as a YAML literal block (``|``)."""

    text: str


_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
# words YAML 1.1 (PyYAML) reads as booleans or null, which must stay quoted
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none"}
FLOW_WIDTH = 100  # a list item or mapping longer than this is written as a block


def _string(text: str) -> str:
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(c if c.isprintable() or c == " " else _escape(c) for c in quoted)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _float(number: float) -> str:
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"a card cannot hold {number}")
    text = repr(float(number))
    # PyYAML reads 1e-05 as a string: the mantissa needs a dot
    mantissa, _, exponent = text.partition("e")
    if exponent and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def flow(value: Any) -> str:
    """One value on one line."""
    if isinstance(value, Commented):
        raise TypeError("a comment inside a flow value cannot be written")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(str(k))}: {flow(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} into a card")


def _with_comment(line: str, comment: str | None) -> str:
    if not comment:
        return line
    return f"{line}  # {comment}"


def _is_section(value: Any) -> bool:
    """Written as a block: a mapping or list holding a comment, a mapping or list too long
    for one line, a list of mappings."""
    if isinstance(value, dict):
        return _holds_comment(value) or len(flow(strip(value))) > FLOW_WIDTH
    if isinstance(value, list):
        return _holds_comment(value) or any(isinstance(strip(v), dict) for v in value)
    return False


def _holds_comment(value: Any) -> bool:
    if isinstance(value, Commented):
        return True
    if isinstance(value, dict):
        return any(_holds_comment(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_comment(v) for v in value)
    return False


def _mapping(node: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key, entry in node.items():
        comment = entry.comment if isinstance(entry, Commented) else None
        value = entry.value if isinstance(entry, Commented) else entry
        head = f"{pad}{_string(str(key))}:"
        if isinstance(value, Block):
            lines.append(_with_comment(f"{head} |", comment))
            lines += [f"{pad}  {line}" if line else "" for line in value.text.rstrip("\n").split("\n")]
        elif _is_section(value):
            lines.append(_with_comment(head, comment))
            lines += _mapping(value, indent + 2) if isinstance(value, dict) else _sequence(value, indent + 2)
        else:
            lines.append(_with_comment(f"{head} {flow(value)}", comment))
    return lines


def _sequence(items: list[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for entry in items:
        comment = entry.comment if isinstance(entry, Commented) else None
        value = entry.value if isinstance(entry, Commented) else entry
        if isinstance(value, dict) and _is_section(value):
            if comment:  # on a line of its own, above the item
                lines.append(f"{pad}# {comment}")
            block = _mapping(value, indent + 2)
            lines.append(f"{pad}- {block[0][indent + 2 :]}")
            lines += block[1:]
        else:
            lines.append(_with_comment(f"{pad}- {flow(value)}", comment))
    return lines


def strip(value: Any) -> Any:
    """The data without comments: what the YAML parses to."""
    if isinstance(value, Commented):
        return strip(value.value)
    if isinstance(value, Block):
        return value.text.rstrip("\n") + "\n"  # what a literal block with one final newline reads as
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip(v) for v in value]
    return value


def write_card(card: dict[str, Any], header: list[str] = ()) -> str:
    """The card as YAML text: ``header`` lines as comments on top, then the sections."""
    lines = [f"# {line}" if line else "#" for line in header]
    lines += _mapping(card, 0)
    text = "\n".join(lines) + "\n"
    parsed = yaml.safe_load(text)
    if parsed != strip(card):
        raise AssertionError("the card text does not read back as the data written (a card_writer bug)")
    return text


# The tests whose known failures the draft decides (it measures them); a re-measured
# card's other xfail entries (a finding on a check every model must pass, recorded by
# hand) and its leave_out entries are decisions, not measurements: they are kept.
DRAFTED_TESTS = frozenset(
    {
        "test_bos_prepended_by_default_and_absent_without_special_tokens",
        "test_chat_template_ids_are_the_rendered_text_with_one_bos",
        "test_semantic_group_is_closer_inside_than_outside",
        "test_unrelated_group_is_not_coherent",
        "test_pairs_sit_apart_from_outsiders",
        "test_beam_search_is_deterministic_and_beats_greedy",
        "test_knowledge_answer",
    }
)


def kept_entries(entries: Any) -> list[Any]:
    """A re-measured card's known failures and left-out tests that the draft does not
    decide, each marked as kept (``KnownFailure`` objects, as the card holds them)."""
    return [
        Commented(entry.model_dump(exclude_none=True), "kept from the card the draft re-measured")
        for entry in entries
        if entry.test not in DRAFTED_TESTS
    ]


def card_text(
    name: str,
    sources: dict[str, Any],
    draft: Draft,
    versions: dict[str, str],
    settings: DraftSettings,
    description: str | None = None,
    kept_xfail: list[Any] = (),
    kept_leave_out: list[Any] = (),
) -> str:
    """The drafted card's YAML: a header saying how it was made, the sources as given,
    the measured expectations and the known failures (with those kept from a re-measured
    card)."""
    made = ", ".join(f"{k} {v}" for k, v in versions.items())
    header = [
        f"Drafted by `lm-probes draft-card` on {date.today().isoformat()} ({made}):",
        "every value below was measured on this model; bounds keep the margin their comment states.",
        f"Sampling bounds hold for {settings.draws} draws (the first is the suite's seed 0).",
        "Review it, then commit it.",
    ]
    if draft.left_out:
        header.append("Not drafted (a bound there could not fail):")
        header += [f"  {line}" for line in draft.left_out]
    card: dict[str, Any] = {
        "name": name,
        "description": Block(description or f"{name}: drafted from measurement ({made}). Say what the model is.\n"),
        **sources,
    }
    if settings.reference is not None:
        card["reference"] = settings.reference.name
    card["expect"] = draft.expect
    if draft.xfail or kept_xfail:
        card["xfail"] = [*kept_xfail, *draft.xfail]
    if kept_leave_out:
        card["leave_out"] = list(kept_leave_out)
    return write_card(card, header)
