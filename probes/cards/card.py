"""Cards: one YAML file per model, saying what to load, how, and what to expect.

A card is plain data (``fixtures/cards/<name>.yaml``). It is validated when it is read,
so a typo in a field name or a wrong type is reported once, naming the file and the
field, instead of surfacing later as a confusing test failure.

Layout of a card::

    name: smollm2-135m-instruct          # must match the file name
    description: ...
    marks: [gpu]                         # pytest marks every test of this card carries
    tokenizer: {source: ..., ...}        # where the tokenizer comes from (probes/sources.py)
    model:     {source: ..., ...}        # where the weights come from; absent = tokenizer only
    load:      {device: cpu, dtype: float32, quantization: none}
    expect:                              # expected values, keyed by probe then field
      tokenizer: {...}

The format is declared in ``probes/card_schema.py`` (a pydantic model per section) and
``probes/sources.py`` (a class per ``source:``); fixtures/card.schema.json is generated
from them for editors.

A probe's tests run for a card only if the card has that probe's section under
``expect``: an absent section means "not checked for this model", shown in the report;
an unknown section or field is an error.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from probes.cards.schema import CardFile, Expect, ExpectSection, KnownFailure, SnapshotSettings
from probes.cards.sources import FollowModel, HubSource, LoadSettings, MistralCommonTokenizer
from probes.cards.sources import ModelSource as ModelSourceType
from probes.cards.sources import TokenizerSource as TokenizerSourceType
from probes.paths import CARDS_DIR, REPO_ROOT


class CardError(ValueError):
    """A card file is missing, does not parse, or does not match the schema."""


# --------------------------------------------------------------------------- schema
# The card format is declared in probes/card_schema.py (sections) and probes/sources.py
# (where the tokenizer and weights come from). Here: what is derived from it.


def card_json_schema() -> dict[str, Any]:
    """The card format as a JSON Schema (draft 2020-12), for editors that validate YAML
    (``# yaml-language-server: $schema=...``). Generated from CardFile, committed as
    fixtures/card.schema.json (``python -m probes.cards.card > fixtures/card.schema.json``);
    load_card remains the full check (file names, cross-field rules)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **CardFile.model_json_schema(by_alias=True),
        "title": "lm-probes model card",
    }


def _type_at(root: Any, loc: Sequence[str | int]) -> Any:
    """The declared type at a location of the card (pydantic's error ``loc``, or a dotted
    path split into parts); None if the schema has nothing there. A discriminated
    union's location carries the tag (``model.hf.id``), which picks the member."""
    node = root
    for part in loc:
        node = unwrap_type(node)
        if node is None:
            return None
        origin = get_origin(node)
        if origin in (Union, UnionType):
            node = next((m for m in get_args(node) if part in source_tags(m)), None)
        elif origin is list:
            node = get_args(node)[0] if isinstance(part, int) else None
        elif origin is dict:
            node = get_args(node)[1]
        elif isinstance(node, type) and issubclass(node, BaseModel):
            node = next(
                (f.annotation for name, f in node.model_fields.items() if part in (name, f.alias)),
                None,
            )
        else:
            return None
    return node


def unwrap_type(tp: Any) -> Any:
    """``X | None`` -> X, ``Annotated[X, ...]`` -> X; a union of several stays."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, UnionType) and type(None) in get_args(tp):
            rest = tuple(a for a in get_args(tp) if a is not type(None))
            tp = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 (a runtime union)
        else:
            return tp


def source_tags(member: Any) -> tuple[str, ...]:
    field = member.model_fields.get("source") if isinstance(member, type) and issubclass(member, BaseModel) else None
    return get_args(field.annotation) if field else ()


def _section_class(annotation: Any) -> type[ExpectSection]:
    return unwrap_type(annotation)


def _field_names(tp: Any) -> list[str]:
    tp = unwrap_type(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or name for name, f in tp.model_fields.items()]
    return []


# Every expect section reads the model unless its class says otherwise: derived, so a
# new section needs a model unless it declares needs_model = False.
TOKENIZER_SECTIONS = tuple(
    name for name, f in Expect.model_fields.items() if not _section_class(f.annotation).needs_model
)
MODEL_SECTIONS = tuple(name for name in Expect.model_fields if name not in TOKENIZER_SECTIONS)


def unknown_expect_path(dotted: str) -> str | None:
    """Why ``dotted`` (a test's ``expects=``, e.g. ``tokenizer.encode``) is not a path of
    the card's ``expect:``, with the nearest known name; None when it is one."""
    walked: list[str] = []
    node: Any = Expect
    for part in dotted.split("."):
        key = part.split("[", 1)[0]
        inner = unwrap_type(node)
        if get_origin(inner) is list:  # tokenizer.encode[x].ids: the item's fields
            node = get_args(inner)[0]
        known = _field_names(node)
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{'.'.join([*walked, near[0]])}'?" if near else ""
            return f"'{dotted}' is not a field of the card schema (probes/card_schema.py Expect){hint}"
        walked.append(key)
        node = _type_at(node, [key])
    return None


# pydantic's error types -> the type a card author reads in the message
_TYPE_NAMES = {
    "int_type": "int",
    "float_type": "float",
    "string_type": "str",
    "bool_type": "bool",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _where(loc: Sequence[str | int], raw: Any) -> str:
    """A readable location: ``expect.tokenizer.encode[hello].ids[1]``. List items are
    named by their ``id`` when they have one; a union's tag is left out."""
    where = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            label = item.get("id", part) if isinstance(item, dict) else part
            where += f"[{label}]"
            node = item
        elif isinstance(node, dict) and part not in node and node.get("source") == part:
            continue  # the discriminated union's tag, not a field
        else:
            where += f".{part}"
            node = node.get(part) if isinstance(node, dict) else None
    return where.lstrip(".")


def _describe_error(error: Any, raw: dict[str, Any]) -> str:
    """One line for one pydantic error, in the card's words."""
    loc, kind, value = error["loc"], error["type"], error.get("input")
    where = _where(loc, raw)
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind == "extra_forbidden":
        known = _field_names(_type_at(CardFile, loc[:-1]))
        near = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else f"; known: {', '.join(known)}"
        return f"{where}: unknown field{hint}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = [tag for member in get_args(unwrap_type(_type_at(CardFile, loc))) for tag in source_tags(member)]
        if kind == "union_tag_not_found":
            return f"{where}.source: required field is missing (one of {', '.join(tags)})"
        return f"{where}.source: {error['ctx']['tag']!r} is not one of {', '.join(tags)}"
    if kind == "literal_error":
        # the value is named, so a list item's index adds nothing: "marks: 'fast' ..."
        shown = _where(loc[:-1], raw) if isinstance(loc[-1], int) else where
        allowed = get_args(unwrap_type(_type_at(CardFile, loc)))
        return f"{shown}: {value!r} is not one of {', '.join(map(str, allowed))}"
    if kind == "string_pattern_mismatch" and where == "load.device":
        return f"load.device: {value!r} is not auto, cpu, cuda, cuda:N or mps"
    if kind in _TYPE_NAMES:
        return f"{where}: expected {_TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}"
    return f"{where}: {error['msg']}"


def _cross_field_problems(raw: dict[str, Any], path: Path) -> list[str]:
    """Rules between fields, checked on the raw mapping so that they are reported
    together with the schema's problems."""

    def mapping(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    problems = []
    expect, model = mapping(raw.get("expect")), raw.get("model")
    if "name" in raw and raw["name"] != path.stem:
        problems.append(f"name: '{raw['name']}' differs from the file name '{path.stem}'")
    if mapping(raw.get("tokenizer")).get("source") == "model" and not model:
        problems.append("tokenizer.source: 'model' needs a model section")
    for section in MODEL_SECTIONS:
        if section in expect and not model:
            problems.append(f"expect.{section}: this card has no model section to check")
    if "drift" in expect and not raw.get("reference"):
        problems.append("expect.drift: needs `reference:`, the full-precision card to compare with")
    if "reference" in raw and raw.get("reference") == raw.get("name"):
        problems.append("reference: a card cannot be its own reference")
    embedding = mapping(expect.get("embedding"))
    if {"coherent_groups", "incoherent_groups"} & embedding.keys() and "min_margin" not in embedding:
        problems.append(
            "expect.embedding.min_margin: required field is missing "
            "(coherent_groups and incoherent_groups are judged by it)"
        )
    return problems


# --------------------------------------------------------------------------- the Card


@dataclass(frozen=True)
class Card:
    """A validated card. Sources and load settings are typed objects; ``expect`` is the
    card's ``expect:`` as written (what tests walk by dotted path, and what decides which
    tests run), ``expectations`` the same values typed, with defaults filled in."""

    name: str
    path: Path
    description: str
    tokenizer: TokenizerSourceType
    model: ModelSourceType | None
    load: LoadSettings = LoadSettings()
    marks: tuple[str, ...] = ()
    expect: dict[str, Any] = field(default_factory=dict)
    xfail: tuple[KnownFailure, ...] = ()
    leave_out: tuple[KnownFailure, ...] = ()
    tolerances: dict[str, Any] = field(default_factory=dict)  # cross_class: a dict of its own
    reference: str | None = None
    snapshot: SnapshotSettings = SnapshotSettings()
    # set when --model replaced the card's own source (the expectations stay the card's)
    model_override: str | None = None

    @cached_property
    def expectations(self) -> Expect:
        return Expect.model_validate(self.expect)

    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def device(self) -> str:
        return self.load.device

    @property
    def dtype(self) -> str:
        return self.load.dtype

    @property
    def quantization(self) -> str:
        return self.load.quantization

    def has_expectation(self, dotted: str) -> bool:
        try:
            self.expected(dotted)
        except KeyError:
            return False
        return True

    def expected(self, dotted: str) -> Any:
        """The expected value at a dotted path such as ``tokenizer.encode[english].ids``.

        ``name[x]`` picks the list item whose ``id`` is x. Raises KeyError if absent.
        """
        node: Any = self.expect
        for part in dotted.split("."):
            m = re.fullmatch(r"([\w-]+)(?:\[([^\]]+)\])?", part)
            if not m:
                raise KeyError(dotted)
            key, item_id = m.groups()
            if not isinstance(node, dict) or key not in node:
                raise KeyError(dotted)
            node = node[key]
            if item_id is not None:
                matches = [x for x in node if isinstance(x, dict) and str(x.get("id")) == item_id]
                if not matches:
                    raise KeyError(dotted)
                node = matches[0]
        return node

    def cases(self, dotted: str) -> list[dict[str, Any]]:
        """The list of cases under a path (each with an ``id``), or [] if absent."""
        try:
            value = self.expected(dotted)
        except KeyError:
            return []
        return list(value) if isinstance(value, list) else []

    def with_model(self, model_id: str) -> Card:
        """This card with its tokenizer and weights loaded from ``model_id`` instead.

        The expectations stay: that is the point of ``--model`` (check another build
        of the model against the same card).
        """
        source = HubSource(source="hf", id=model_id, gguf_file=_single_gguf(model_id))
        if self.has_model:
            return replace(self, tokenizer=FollowModel(source="model"), model=source, model_override=model_id)
        return replace(self, tokenizer=source, model_override=model_id)

    def xfail_reason(self, test: str, case: str | None) -> str | None:
        """The recorded reason this card fails ``test`` (for ``case``), if any."""
        return _reason(self.xfail, test, case)

    def leave_out_reason(self, test: str, case: str | None) -> str | None:
        """Why this card does not run ``test`` (for ``case``), if it leaves it out."""
        return _reason(self.leave_out, test, case)

    def with_tokenizer_config(self, **overrides: Any) -> Card:
        """This card with some tokenizer_config entries changed (e.g. add_bos_token=False):
        how the library's own tests build a deliberately altered tokenizer."""
        if not isinstance(self.tokenizer, MistralCommonTokenizer):
            raise CardError(f"card '{self.name}': only a mistral-common tokenizer takes tokenizer_config")
        config = {**self.tokenizer.tokenizer_config, **overrides}
        return replace(self, tokenizer=self.tokenizer.model_copy(update={"tokenizer_config": config}))

    def location(self) -> str:
        return f"card '{self.name}' ({_display_path(self.path)})"

    def field_location(self, dotted: str) -> str:
        return f"{self.location()}, field expect.{dotted}"


def _reason(entries: tuple[KnownFailure, ...], test: str, case: str | None) -> str | None:
    for entry in entries:
        if entry.test == test and entry.case in (None, case):
            return entry.reason
    return None


def looks_like_local_path(source_id: str) -> bool:
    """Whether a model/tokenizer id means a folder on disk rather than a hub id
    ("org/name" or "name"): it exists, is absolute, starts with ".", "~", or has more
    than one "/". One rule for --model and for the load error messages."""
    return (
        source_id.startswith((".", "~"))
        or os.path.isabs(source_id)
        or os.path.exists(os.path.expanduser(source_id))
        or source_id.strip("/").count("/") > 1
    )


def _single_gguf(model_id: str) -> str | None:
    folder = Path(model_id)
    if folder.is_dir():
        ggufs = sorted(p.name for p in folder.glob("*.gguf"))
        if len(ggufs) == 1 and not (folder / "config.json").exists():
            return ggufs[0]
    return None


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# libyaml's safe loader where PyYAML has it: the same documents, ~7x faster than the pure
# Python one (each pytest session reads every card; make test runs ~40 sessions).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_card(path: str | Path) -> Card:
    """Read and validate one card file (YAML, safe loader)."""
    path = Path(path)
    shown = _display_path(path)
    if not path.is_file():
        raise CardError(f"card file {shown} does not exist")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise CardError(f"card file {shown} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CardError(f"card file {shown} must be a YAML mapping, got {type(raw).__name__}")

    problems: list[str] = []
    try:
        spec = CardFile.model_validate(raw)
    except ValidationError as exc:
        problems += [_describe_error(error, raw) for error in exc.errors()]
    problems += _cross_field_problems(raw, path)
    if problems:
        listing = "\n  - ".join(dict.fromkeys(problems))
        raise CardError(f"card file {shown} is invalid:\n  - {listing}")

    return Card(
        name=spec.name,
        path=path,
        description=spec.description,
        tokenizer=spec.tokenizer,
        model=spec.model,
        load=spec.load,
        marks=tuple(spec.marks),
        # as written (exclude_unset): an absent field means "not checked", not a default
        expect=spec.expect.model_dump(by_alias=True, exclude_unset=True),
        xfail=tuple(spec.xfail),
        leave_out=tuple(spec.leave_out),
        tolerances=spec.tolerances.model_dump(exclude_none=True),
        reference=spec.reference,
        snapshot=spec.snapshot,
    )


def nearest(word: str, names: list[str]) -> str | None:
    """The known name closest to a misspelt one, comparing whole names and their
    leading parts ('smolm2' is close to 'smollm2', the start of 'smollm2-135m-instruct')."""
    by_alias: dict[str, str] = {}
    # shortest first: 'smollm2' means the base card, not a variant named after it (-nf4)
    for name in sorted(names, key=len):
        parts = name.split("-")
        for i in range(1, len(parts) + 1):
            by_alias.setdefault("-".join(parts[:i]), name)
    near = difflib.get_close_matches(word, list(by_alias), n=1, cutoff=0.6)
    return by_alias[near[0]] if near else None


def cards_dirs(extra: Sequence[str | Path] = ()) -> tuple[Path, ...]:
    """Where cards are looked up by name: the user's folders (``--cards-dir``, the
    ``lm_probes_cards_dirs`` ini option) in order, then the shipped cards."""
    return (*(Path(d).expanduser() for d in extra), CARDS_DIR)


def available_cards(extra_dirs: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Card name -> file, over ``cards_dirs(extra_dirs)``; a user's card of a shipped
    card's name is the one used (the first folder wins)."""
    known: dict[str, Path] = {}
    for folder in cards_dirs(extra_dirs):
        for path in sorted(folder.glob("*.yaml")):
            known.setdefault(path.stem, path)
    return known


def find_card(name_or_path: str, extra_dirs: Sequence[str | Path] = ()) -> Card:
    """A card by name (a ``<name>.yaml`` in a cards folder) or by path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return load_card(candidate)
    known = available_cards(extra_dirs)
    if name_or_path in known:
        return load_card(known[name_or_path])
    near = nearest(name_or_path, list(known))
    hint = f" Did you mean {near}?" if near else ""
    folders = ", ".join(_display_path(d) for d in cards_dirs(extra_dirs))
    raise CardError(
        f"Unknown card '{name_or_path}'.{hint} Known cards: {', '.join(known)} "
        f"(in {folders}); or pass the path of a card file."
    )


if __name__ == "__main__":  # python -m probes.cards.card > fixtures/card.schema.json
    import json
    import sys

    json.dump(card_json_schema(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
