"""What the card schema implies beyond pydantic's own checks: the JSON Schema for editors, the
expect paths a test may name, the card sections that need a model, and pydantic's errors
turned into one message per field, naming the file."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from lm_probes.cards.choices import card_name_problem
from lm_probes.cards.expect_schema import Bound, Expect, ExpectSection
from lm_probes.cards.schema import CardFile
from lm_probes.inputs import article_inputs
from lm_probes.registry import did_you_mean


def card_json_schema() -> dict[str, Any]:
    """The card format as a JSON Schema (draft 2020-12), for editors that validate YAML
    (``# yaml-language-server: $schema=...``). Generated from CardFile, committed as
    fixtures/card.schema.json (``python -m lm_probes.cards.card > fixtures/card.schema.json``);
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


def unwrap_type(annotation: Any) -> Any:
    """``X | None`` -> X, ``Annotated[X, ...]`` -> X; a union of several stays."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType) and type(None) in get_args(annotation):
            rest = tuple(a for a in get_args(annotation) if a is not type(None))
            annotation = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 (a runtime union)
        else:
            return annotation


def bound_of(annotation: Any, metadata: Sequence[Any] = ()) -> Bound | None:
    """The Bound a declared number carries (``Probability | None``, ``list[TokenId]``'s item, or a
    required field's ``metadata``, where pydantic moves a top-level Annotated's), or None."""
    found = next((m for m in metadata if isinstance(m, Bound)), None)
    if found is not None or annotation is None:
        return found
    origin = get_origin(annotation)
    if origin is Annotated:
        return bound_of(get_args(annotation)[0], annotation.__metadata__)
    if origin in (Union, UnionType):
        return next((b for b in (bound_of(a) for a in get_args(annotation)) if b), None)
    return None


def _bound_at(loc: Sequence[str | int]) -> Bound | None:
    if loc and isinstance(loc[-1], int):  # a list item: its declared type carries the bound
        return bound_of(_type_at(CardFile, loc))
    parent = unwrap_type(_type_at(CardFile, loc[:-1]))
    if get_origin(parent) in (Union, UnionType):  # a source: the union's member named by the tag
        parent = _type_at(CardFile, loc[:-1])
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        field = next((f for name, f in parent.model_fields.items() if loc[-1] in (name, f.alias)), None)
        return bound_of(field.annotation, field.metadata) if field else None
    return None


# pydantic's error types for a number out of its bounds (or not finite)
_OUT_OF_BOUNDS = ("finite_number", "greater_than", "greater_than_equal", "less_than", "less_than_equal")


def source_tags(member: Any) -> tuple[str, ...]:
    field = member.model_fields.get("source") if isinstance(member, type) and issubclass(member, BaseModel) else None
    return get_args(field.annotation) if field else ()


def _section_class(annotation: Any) -> type[ExpectSection]:
    return unwrap_type(annotation)


def _field_names(annotation: Any) -> list[str]:
    annotation = unwrap_type(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
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
            return f"'{dotted}' is not a field of the card schema (lm_probes/cards/expect_schema.py Expect){hint}"
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


def describe_error(error: Any, raw: dict[str, Any]) -> str:
    """One line for one pydantic error, in the card's words."""
    loc, kind, value = error["loc"], error["type"], error.get("input")
    where = _where(loc, raw)
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind == "extra_forbidden":
        known = _field_names(_type_at(CardFile, loc[:-1]))
        hint = did_you_mean(str(loc[-1]), known) or f"; known: {', '.join(known)}"
        return f"{where}: unknown field{hint}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = [tag for member in get_args(unwrap_type(_type_at(CardFile, loc))) for tag in source_tags(member)]
        if kind == "union_tag_not_found":
            return f"{where}.source: required field is missing (one of {', '.join(tags)})"
        tag = error["ctx"]["tag"]
        return f"{where}.source: {tag!r} is not one of {', '.join(tags)}{did_you_mean(str(tag), tags)}"
    if kind == "literal_error":
        # the value is named, so a list item's index adds nothing: "marks: 'fast' ..."
        shown = _where(loc[:-1], raw) if isinstance(loc[-1], int) else where
        allowed = get_args(unwrap_type(_type_at(CardFile, loc)))
        hint = did_you_mean(value, map(str, allowed)) if isinstance(value, str) else ""
        return f"{shown}: {value!r} is not one of {', '.join(map(str, allowed))}{hint}"
    if kind == "string_pattern_mismatch" and where == "load.device":
        return f"load.device: {value!r} is not auto, cpu, cuda, cuda:N or mps"
    if kind in ("string_pattern_mismatch", "string_too_long") and where in ("name", "reference"):
        return f"{where}: {card_name_problem(value)}"
    if kind in _OUT_OF_BOUNDS:
        bound = _bound_at(loc)
        if bound is not None:
            return f"{where}: {value!r} is not {bound.what}; give {bound.allowed}"
    if kind in _TYPE_NAMES:
        return f"{where}: expected {_TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}"
    return f"{where}: {error['msg']}"


def cross_field_problems(raw: dict[str, Any], path: Path) -> list[str]:
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
    requests = [r["id"] for r in article_inputs()["answer_ends"]["requests"]]
    for i, entry in enumerate(mapping(expect.get("answer_ends")).get("prompts") or []):
        if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"] not in requests:
            problems.append(
                f"expect.answer_ends.prompts[{i}].id: '{entry['id']}' is not a request of "
                f"fixtures/inputs/article.yaml's answer_ends; known: {', '.join(requests)}"
            )
    return problems
