"""The card reference (docs/cards.md): every card field with its type, whether it is
required or its default, its meaning (the schema's descriptions) and the observations
whose behavioural tests read it (their ``@pytest.mark.observation(..., expects=...)``).

    python -m lm_probes.report.card_reference > docs/cards.md
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from lm_probes.cards.schema import CardFile
from lm_probes.cards.validation import bound_of, source_tags, unwrap_type
from lm_probes.paths import REPO_ROOT

CARD_REFERENCE_FILE = REPO_ROOT / "docs" / "cards.md"


def _readable(annotation: Any, metadata: Any = ()) -> str:
    """A declared type in a card author's words: 'list of int', 'one of none, nf4, int8',
    'number (a value in [0, 1])'."""
    bound = bound_of(annotation, metadata)
    if bound is not None:
        return f"{_readable(unwrap_type(annotation))} ({bound.allowed})"
    kind = unwrap_type(annotation)
    origin = get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(kind)))
    if origin in (Union, UnionType):
        tags = [tag for member in get_args(kind) for tag in source_tags(member)]
        return "a source: " + ", ".join(tags) if tags else " or ".join(_readable(a) for a in get_args(kind))
    if origin is list:
        return "list of " + _readable(get_args(kind)[0])
    if origin is dict:
        return "mapping"
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return "mapping"
    return {float: "number", int: "int", str: "text", bool: "true/false", Any: "any"}.get(kind, str(kind))


def observations_by_field() -> dict[str, set[str]]:
    """expects= path -> the observation ids of the behavioural tests that read it, from
    their @pytest.mark.observation markers as the installed suite (``lm_probes.suite``, the
    repository's tests/behaviour) carries them: no source path is read."""
    import importlib
    import inspect
    import pkgutil

    import lm_probes.suite

    found: dict[str, set[str]] = {}
    for info in sorted(pkgutil.iter_modules(lm_probes.suite.__path__), key=lambda m: m.name):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"lm_probes.suite.{info.name}")
        for _, function in inspect.getmembers(module, inspect.isfunction):
            for mark in getattr(function, "pytestmark", []):
                if mark.name != "observation":
                    continue
                expects = mark.kwargs.get("expects")
                for path in (expects,) if isinstance(expects, str) else tuple(expects or ()):
                    found.setdefault(path, set()).update(mark.args)
    return found


def _rows(model: type[BaseModel], prefix: str, by_field: dict[str, set[str]], out: list[list[str]]) -> None:
    for name, f in model.model_fields.items():
        key = f.alias or name
        path = f"{prefix}{key}"
        kind = unwrap_type(f.annotation)
        item = get_args(kind)[0] if get_origin(kind) is list else kind
        plain_default = f.default not in (None, [], {}) and not isinstance(f.default, BaseModel)
        required = "required" if f.is_required() else f"default {f.default!r}" if plain_default else ""
        expects = path.removeprefix("expect.").replace("[]", "")
        ids = (
            sorted(
                {
                    o
                    for e, obs in by_field.items()
                    if expects == e or expects.startswith(e + ".") or e.startswith(expects + ".")
                    for o in obs
                }
            )
            if path.startswith("expect.")
            else []
        )
        out.append([f"`{path}`", _readable(f.annotation, f.metadata), required, f.description or "", ", ".join(ids)])
        if isinstance(item, type) and issubclass(item, BaseModel):
            _rows(item, f"{path}[]." if get_origin(kind) is list else f"{path}.", by_field, out)


def _table_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def card_reference() -> str:
    """Every card field: type, required or default, meaning, and the observations whose
    tests read it. Generated into docs/cards.md (``python -m lm_probes.report.card_reference > docs/cards.md``)."""
    from lm_probes.cards.schema import MODEL_SOURCES, TOKENIZER_SOURCES

    by_field = observations_by_field()
    rows: list[list[str]] = []
    _rows(CardFile, "", by_field, rows)
    lines = [
        "# Card reference",
        "",
        "Generated from `lm_probes/cards/schema.py`, `lm_probes/cards/expect_schema.py` and "
        "`lm_probes/cards/sources.py` by "
        "`python -m lm_probes.report.card_reference > docs/cards.md` (a test keeps it current). "
        "`[]` marks the fields of each item of a list; an expect section left out is not checked. "
        "Observations are the ids of the behavioural tests that read the field (docs/observations.md).",
        "",
        "| field | type | required / default | meaning | observations |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(_table_cell(cell) for cell in row) + " |" for row in rows),
        "",
        "## Sources (`tokenizer:` and `model:`)",
        "",
        "| source | class | field | type | required / default | meaning |",
        "|---|---|---|---|---|---|",
    ]
    registered = dict.fromkeys([*MODEL_SOURCES.entries(), *TOKENIZER_SOURCES.entries()])  # both roles once
    for source in sorted(registered, key=lambda c: source_tags(c)):
        if list(source.model_fields) == ["source"]:
            summary = _table_cell(" ".join((source.__doc__ or "").split()))
            lines.append(f"| `{source_tags(source)[0]}` | {source.__name__} | - | - | - | {summary} |")
        for name, f in source.model_fields.items():
            if name == "source":
                continue
            required = "required" if f.is_required() else f"default {f.default!r}"
            meaning = _table_cell(f.description or "")
            lines.append(
                f"| `{source_tags(source)[0]}` | {source.__name__} | `{name}` | {_readable(f.annotation)} | "
                f"{required} | {meaning} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(card_reference())
