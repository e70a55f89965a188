"""Card files written with comments: the YAML a drafted card is (lm_probes/draft).

PyYAML writes no comments, and a drafted card's comments are half its value (what was
measured, what margin a bound keeps), so cards are emitted with ruamel.yaml, which writes
comments where they belong and round-trips them: block mappings for sections, one flow line
per list item or short mapping, a comment after the line it is about (or above a block list
item). The cards are read with PyYAML (YAML 1.1), so two things are decided here rather than
by ruamel's YAML 1.2 rules: a string is written plain only where 1.1 reads it back as the
same string (not ``yes``, ``null``, ``1945``), else double-quoted with every character that
is not printable escaped (a token piece such as U+2028 cannot become a line break); and a
float always has a dot in its mantissa (PyYAML reads ``1e-05`` as a string). ``write_card``
reads its own output back and refuses to return text that does not parse to the data it
was given.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import LiteralScalarString

from lm_probes.draft.settings import Draft, DraftSettings


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
INDENT = 2  # a mapping's keys, and a list's dashes, two columns in from their parent


def _float(number: float) -> str:
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"a card cannot hold {number}")
    text = repr(float(number))
    # PyYAML reads 1e-05 as a string: the mantissa needs a dot
    mantissa, _, exponent = text.partition("e")
    if exponent and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


class _CardRepresenter(RoundTripRepresenter):
    """ruamel's round-trip representer with the two YAML 1.1 decisions above."""

    def represent_str(self, text: str) -> Any:
        plain = _PLAIN.fullmatch(text) and text.lower() not in _RESERVED
        return self.represent_scalar("tag:yaml.org,2002:str", text, style=None if plain else '"')

    def represent_float(self, number: float) -> Any:
        return self.represent_scalar("tag:yaml.org,2002:float", _float(number))


_CardRepresenter.add_representer(str, _CardRepresenter.represent_str)
_CardRepresenter.add_representer(float, _CardRepresenter.represent_float)


def _emitter() -> YAML:
    emitter = YAML()
    emitter.Representer = _CardRepresenter
    emitter.width = 4096  # a flow line is never folded: FLOW_WIDTH decides what is a block
    emitter.allow_unicode = True  # token pieces stay readable; non-printables are escaped
    emitter.indent(mapping=INDENT, sequence=2 * INDENT, offset=INDENT)
    return emitter


def _is_section(value: Any) -> bool:
    """Written as a block: a mapping or list holding a comment, a mapping too long for one
    line, a list of mappings."""
    if isinstance(value, dict):
        return _holds_comment(value) or len(json.dumps(strip(value), ensure_ascii=False)) > FLOW_WIDTH
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


def _node(value: Any, column: int) -> Any:
    """``value`` as ruamel's commented nodes; ``column``: where its keys or dashes start."""
    if isinstance(value, Commented):
        raise TypeError("a comment can only follow a mapping key or a list item")
    if isinstance(value, Block):
        return LiteralScalarString(value.text.rstrip("\n") + "\n")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        node = CommentedMap()
        for key, entry in value.items():
            inner = entry.value if isinstance(entry, Commented) else entry
            node[str(key)] = _node(inner, column + INDENT)
            if isinstance(entry, Commented):
                node.yaml_add_eol_comment(entry.comment, str(key))
        if not _is_section(value):
            node.fa.set_flow_style()
        return node
    if isinstance(value, (list, tuple)):
        node = CommentedSeq()
        for i, entry in enumerate(value):
            inner = entry.value if isinstance(entry, Commented) else entry
            node.append(_node(inner, column + INDENT))
            if isinstance(entry, Commented):
                if isinstance(inner, dict) and _is_section(inner):  # on a line of its own, above the item
                    node.yaml_set_comment_before_after_key(i, before=entry.comment, indent=column)
                else:
                    node.yaml_add_eol_comment(entry.comment, i)
        if not _is_section(list(value)):
            node.fa.set_flow_style()
        return node
    raise TypeError(f"cannot write {type(value).__name__} into a card")


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
    root = _node(card, 0)
    root.fa.set_block_style()
    if header:
        root.yaml_set_start_comment("\n".join(header))
    out = io.StringIO()
    _emitter().dump(root, out)
    text = out.getvalue()
    if yaml.safe_load(text) != strip(card):
        raise AssertionError(
            "the card text does not read back as the data written (a bug of lm_probes/draft/writer.py)"
        )
    return text


# The tests whose known failures the draft decides (it measures them); a re-measured
# card's other xfail entries (a finding on a check every model must pass, recorded by
# hand) and its skip entries are decisions, not measurements: they are kept.
DRAFTED_TESTS = frozenset(
    {
        "test_bos_prepended_by_default_and_absent_without_special_tokens",
        "test_chat_template_ids_are_the_rendered_text_with_one_bos",
        "test_semantic_group_is_closer_inside_than_outside",
        "test_unrelated_group_is_not_coherent",
        "test_pairs_sit_apart_from_outsiders",
        "test_beam_search_is_deterministic_and_beats_greedy",
        "test_knowledge_answer",
        "test_generation_stops_where_the_chat_template_ends_a_turn",
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


def flagged_defaults(expect: dict[str, Any]) -> list[str]:
    """What a model folder turns on by default that a checkpoint seldom means to ship (issue 45):
    a generate() that samples when called with no arguments. Drafted as measured, and said on top
    of the card, so a reviewer sees it before committing it as the baseline."""

    def plain(value: Any) -> Any:
        return value.value if isinstance(value, Commented) else value

    greedy = plain(expect.get("greedy", {}))
    if isinstance(greedy, dict) and plain(greedy.get("default_generate_is_greedy")) is False:
        return [
            "generate() with no arguments samples (generation_config.json sets do_sample): the card records "
            "it as this model's default (greedy.default_generate_is_greedy: false); if the checkpoint should "
            "decode greedily, fix generation_config.json and draft again"
        ]
    return []


def card_text(
    name: str,
    sources: dict[str, Any],
    draft: Draft,
    versions: dict[str, str],
    settings: DraftSettings,
    description: str | None = None,
    kept_xfail: list[Any] = (),
    kept_skip: list[Any] = (),
) -> str:
    """The drafted card's YAML: a header saying how it was made, the sources as given,
    the measured expectations and the known failures (with those kept from a re-measured
    card)."""
    made = ", ".join(f"{k} {v}" for k, v in versions.items())
    header = [
        f"Drafted by `lm-probes draft-card` on {date.today().isoformat()} ({made}):",
        "every value below was measured on this model; bounds keep the margin their comment states.",
        f"Sampling counts hold for {settings.draws} draws (the first is the suite's seed 0); shares come "
        f"from measured probabilities, each with its false-alarm rate.",
        "Review it, then commit it.",
    ]
    if draft.left_out:
        header.append("Not drafted (a bound there could not fail):")
        header += [f"  {line}" for line in draft.left_out]
    flags = flagged_defaults(draft.expect)
    if flags:
        header.append("Check before committing (the model's own files chose these, not the call):")
        header += [f"  {line}" for line in flags]
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
    if kept_skip:
        card["skip"] = list(kept_skip)
    return write_card(card, header)
