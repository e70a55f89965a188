"""Cards: one YAML file per model, saying what to load, how, and what to expect.

A card is plain data (``fixtures/cards/<name>.yaml``). It is validated when it is read,
so a typo in a field name or a wrong type is reported once, naming the file and the
field, instead of surfacing later as a confusing test failure.

Layout of a card::

    name: smollm2-135m-instruct          # must match the file name
    description: ...
    marks: [gpu]                         # pytest marks every test of this card carries
    tokenizer: {source: ..., ...}        # where the tokenizer comes from (see SOURCES)
    model:     {source: ..., ...}        # where the weights come from; absent = tokenizer only
    load:      {device: cpu, dtype: float32, quantization: none}
    expect:                              # expected values, keyed by probe then field
      tokenizer: {...}

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
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# The shipped cards, probe inputs and CPU snapshots: fixtures/ of a source checkout (and
# of an editable install), probes/fixtures/ inside a non-editable one (pyproject.toml
# installs fixtures/ there as the package probes.fixtures).
FIXTURES_DIR = REPO_ROOT / "fixtures" if (REPO_ROOT / "fixtures" / "cards").is_dir() else PACKAGE_DIR / "fixtures"
CARDS_DIR = FIXTURES_DIR / "cards"


class CardError(ValueError):
    """A card file is missing, does not parse, or does not match the schema."""


# --------------------------------------------------------------------------- schema
# A schema is a dict (known keys -> sub-schema), a one-element list (each item matches
# the element), a type or tuple of types, or ANY. Dicts whose only key is ``int`` map
# integer keys (token ids) to the sub-schema.

ANY = object()

_ENCODE_CASE = {
    "id": str,
    "observation": str,
    "text": str,
    # None = the tokenizer's default (encode() without the argument)
    "add_special_tokens": (bool, type(None)),
    "ids": [int],
    "tokens": [str],
    "decoded": str,
    "decoded_per_id": [str],
    # decode(encode(text, add_special_tokens=False)) == text; default true
    "round_trips": bool,
}

# decoding settings of a knowledge task (the card's, or one case's)
_DECODING = {"do_sample": bool, "top_p": (int, float), "temperature": (int, float)}

EXPECT_SCHEMA: dict[str, Any] = {
    "tokenizer": {
        "vocab_size": int,
        "bos": {
            "id": (int, type(None)),
            "token": (str, type(None)),
            "added_by_default": bool,
            "probe_text": str,
        },
        "encode": [_ENCODE_CASE],
        "first_token": [{"id": str, "text": str, "first_id": int, "first_token": str, "first_decoded": str}],
        "vocab_table": [{"id": int, "token": str, "decoded": str}],
        "duplicate_bos": [
            {
                "id": str,
                "prompt": str,
                "leading_bos": int,
                "duplicated": bool,
                "trailing_space_token": bool,
            }
        ],
    },
    "embedding": {
        "coherent_groups": [str],  # intra-group cosine - inter-group cosine >= min_margin
        "incoherent_groups": [str],  # ... < min_margin
        "min_margin": (int, float),
        "apart": [{"id": str, "pair": [str], "outsiders": [str]}],  # pair closer than to any outsider
        "pca_explained_at_most": (int, float),  # two components explain little of the variance
        "pca_nearer": [{"id": str, "group": str, "nearer": str, "than": str}],  # centroid distances in 2-D
    },
    "next_token": {"top1": str, "min_top1_prob": (int, float)},
    "greedy": {
        "with_bos_contains": [str],
        "without_bos_contains": [str],
        "bos_changes_continuation": bool,
        "batch_invariant": bool,
        "default_generate_is_greedy": bool,  # generate() without decoding arguments
    },
    "sampling": {
        "near-greedy": {"min_greedy_agreement": (int, float)},
        "warm": {"answer": str, "min_answer_share": (int, float), "min_distinct": int},
        "hot": {"min_distinct": int, "min_distinct_2": (int, float)},
    },
    # at_least_greedy_logprob: beam's sequence log p >= greedy's (equality allowed: for a
    # model whose greedy path is already best); min_gain_over_greedy: beam's log p exceeds
    # greedy's by at least this many nats (a search that silently ran greedy gains 0)
    "beam_search": {"at_least_greedy_logprob": bool, "min_gain_over_greedy": (int, float)},
    "tasks": {
        # "{question}" is replaced; "chat" applies the tokenizer's chat template
        "prompt_format": str,
        "decoding": _DECODING,
        "max_new_tokens": int,
        # question: an id of fixtures/inputs/article.yaml's knowledge list (default: id);
        # prompt: the whole prompt instead; prompt_format and decoding override the card's
        "knowledge": [
            {"id": str, "question": str, "prompt": str, "prompt_format": str, "decoding": _DECODING, "answer": str}
        ],
        "creative": {"greedy_repeats": bool, "min_distinct_samples": int},
    },
    "model": {
        "embedding_shape": [int],
        "embedding_dtype": str,
        "architecture": str,
    },
    # what the loaded model's layers are (probes/quantization.py inspect_quantization)
    "quantization": {
        "method": str,  # nf4, fp4, int8 or none
        "linear_4bit": int,
        "linear_8bit": int,
        "full_precision_linear": [str],
        "compute_dtype": str,
        "embedding_class": str,
        "embedding_dtype": str,
    },
    # against the card's full-precision `reference` card, on the article's prompts
    "drift": {
        "max_kl": (int, float),  # nats, KL(reference || this) of the next-token distributions, worst prompt
        "min_top1_agreement": (int, float),  # share of prompts whose most likely next token is the reference's
        "min_top10_overlap": (int, float),  # mean share of the reference's top 10 in this model's top 10
        "min_greedy_agreeing_tokens": int,  # greedy tokens equal to the reference's before the first difference
        "max_footprint_ratio": (int, float),  # memory footprint over the reference's
    },
}

_SOURCE_SCHEMA = {
    "source": str,
    "id": str,  # hub id or local folder
    "revision": str,
    "gguf_file": str,
    "package": str,  # python package holding a data file
    "file": str,
    "architecture": str,
    "seed": int,
    "config": {str: ANY},
    "tokenizer_config": {str: ANY},
    "trust_remote_code": bool,
    "allow_pickle": bool,  # read .bin/.pt checkpoints (pickle can run code); off by default
}

CARD_SCHEMA: dict[str, Any] = {
    "name": str,
    "description": str,
    "marks": [str],
    "tokenizer": _SOURCE_SCHEMA,
    "model": (dict, type(None)),  # checked against _SOURCE_SCHEMA below when present
    "load": {
        "device": str,
        "device_map": str,
        "dtype": str,
        "quantization": str,
    },
    "expect": EXPECT_SCHEMA,
    # a full-precision card of the same weights, for expect.drift (a quantized card)
    "reference": str,
    # sections left out of this card's snapshot (greedy, embedding, sampled): for a
    # model too slow to decode them all in the default run
    "snapshot": {"leave_out": [str]},
    # snapshot comparison tolerances (probes/snapshots.py DEFAULT_TOLERANCES)
    "tolerances": {
        "prob_atol": (int, float),
        "entropy_atol": (int, float),
        "logit_tie": (int, float),
        "cosine_atol": (int, float),
        "norm_rtol": (int, float),
    },
    # known failures: a test (optionally one case) that this model fails, with why.
    # Applied as a strict xfail, so a fix shows up as XPASS and fails the run.
    "xfail": [{"test": str, "case": str, "reason": str}],
    # tests this card does not run, with why (shown as skips in the report): for a card
    # too slow for a generic check that its reference card already runs
    "leave_out": [{"test": str, "case": str, "reason": str}],
}

REQUIRED = ("name", "description", "tokenizer")

# Every expect section but these reads the model: derived, so a new section needs a model
# unless it is added here.
TOKENIZER_SECTIONS = ("tokenizer",)
MODEL_SECTIONS = tuple(section for section in EXPECT_SCHEMA if section not in TOKENIZER_SECTIONS)

# Fields an expect section must hold when a card has that section: its tests read them
# unconditionally ("x[]" = every item of the list x). The rest of a section is optional.
REQUIRED_EXPECT_FIELDS: dict[str, tuple[str, ...]] = {
    "tokenizer.bos": ("id", "token", "added_by_default", "probe_text"),
    "tokenizer.encode[]": ("id", "text", "ids"),
    "tokenizer.first_token[]": ("id", "text", "first_id", "first_token", "first_decoded"),
    "tokenizer.vocab_table[]": ("id", "token", "decoded"),
    "tokenizer.duplicate_bos[]": ("id", "prompt", "leading_bos", "duplicated", "trailing_space_token"),
    "embedding.apart[]": ("id", "pair", "outsiders"),
    "embedding.pca_nearer[]": ("id", "group", "nearer", "than"),
    "next_token": ("top1",),
    "sampling.near-greedy": ("min_greedy_agreement",),
    "sampling.warm": ("answer", "min_answer_share", "min_distinct"),
    "sampling.hot": ("min_distinct",),
    "beam_search": ("at_least_greedy_logprob",),
    "tasks.knowledge[]": ("id", "answer"),
}


# ------------------------------------------------------------------- JSON Schema

CARD_SCHEMA_FILE = FIXTURES_DIR / "card.schema.json"
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null", dict: "object"}


def _json_schema(schema: Any, path: str) -> dict[str, Any]:
    """The JSON Schema of one node of the card schema notation above."""
    if schema is ANY:
        return {}
    if isinstance(schema, dict):
        key_types = [k for k in schema if isinstance(k, type)]
        if key_types:
            return {"type": "object", "additionalProperties": _json_schema(schema[key_types[0]], path + ".*")}
        node: dict[str, Any] = {
            "type": "object",
            "properties": {k: _json_schema(v, f"{path}.{k}".lstrip(".")) for k, v in schema.items()},
            "additionalProperties": False,
        }
        required = REQUIRED if path == "" else REQUIRED_EXPECT_FIELDS.get(path.removeprefix("expect."), ())
        if required:
            node["required"] = list(required)
        return node
    if isinstance(schema, list):
        return {"type": "array", "items": _json_schema(schema[0], path + "[]")}
    types = [_JSON_TYPES[t] for t in _as_tuple(schema)]
    if "integer" in types and "number" in types:
        types.remove("integer")  # JSON numbers include the integers
    return {"type": types[0] if len(types) == 1 else types}


def card_json_schema() -> dict[str, Any]:
    """The card format as a JSON Schema (draft 2020-12), for editors that validate YAML
    (``# yaml-language-server: $schema=...``). Generated from CARD_SCHEMA, committed as
    fixtures/card.schema.json (``python -m probes.cards > fixtures/card.schema.json``);
    load_card remains the full check (file names, folders, sources' required fields)."""
    schema = _json_schema(CARD_SCHEMA, "")
    source = _json_schema(_SOURCE_SCHEMA, "source")
    schema["properties"]["model"] = {"anyOf": [source, {"type": "null"}]}
    properties = schema["properties"]
    properties["tokenizer"]["properties"]["source"]["enum"] = list(TOKENIZER_SOURCES)
    source["properties"]["source"]["enum"] = list(MODEL_SOURCES)
    properties["load"]["properties"]["dtype"]["enum"] = list(DTYPES)
    properties["load"]["properties"]["quantization"]["enum"] = list(QUANTIZATIONS)
    properties["load"]["properties"]["device"]["pattern"] = DEVICES_RE.pattern
    properties["marks"]["items"]["enum"] = list(KNOWN_MARKS)
    for key in ("xfail", "leave_out"):
        properties[key]["items"]["required"] = ["test", "reason"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "lm-probes model card",
        **schema,
    }


def unknown_expect_path(dotted: str) -> str | None:
    """Why ``dotted`` (a test's ``expects=``, e.g. ``tokenizer.encode``) is not a path of
    EXPECT_SCHEMA, with the nearest known name; None when it is one."""
    node: Any = EXPECT_SCHEMA
    walked = []
    for part in dotted.split("."):
        key = part.split("[", 1)[0]
        if isinstance(node, list):
            node = node[0]
        if not isinstance(node, dict) or key not in node:
            known = [str(k) for k in node] if isinstance(node, dict) else []
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{'.'.join([*walked, near[0]])}'?" if near else ""
            return f"'{dotted}' is not a field of the card schema (probes/cards.py EXPECT_SCHEMA){hint}"
        walked.append(key)
        node = node[key]
    return None


def _missing_required(expect: dict[str, Any]) -> list[str]:
    """``expect.<path>: required field is missing`` for each REQUIRED_EXPECT_FIELDS gap
    (and min_margin, which the E4 group checks compare with)."""
    problems = []
    for path, fields in REQUIRED_EXPECT_FIELDS.items():
        *parents, last = path.removesuffix("[]").split(".")
        node: Any = expect
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            continue  # the section is not in this card
        items = node[last] if path.endswith("[]") else [node[last]]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue  # a type problem, reported by the schema check
            where = f"expect.{path.removesuffix('[]')}" + (f"[{item.get('id', i)}]" if path.endswith("[]") else "")
            problems += [f"{where}.{name}: required field is missing" for name in fields if name not in item]
    embedding = expect.get("embedding") or {}
    if (
        isinstance(embedding, dict)
        and ({"coherent_groups", "incoherent_groups"} & embedding.keys())
        and "min_margin" not in embedding
    ):
        problems.append(
            "expect.embedding.min_margin: required field is missing "
            "(coherent_groups and incoherent_groups are judged by it)"
        )
    return problems


# tokenizer sources
#   mistral-common   the SentencePiece file shipped in the mistral-common package
#   hf               AutoTokenizer.from_pretrained(id) (hub id or folder, gguf_file optional)
#   model            the same place as the model
# model sources
#   hf               AutoModelForCausalLM.from_pretrained(id)
#   package-gguf     a GGUF file inside an installed python package, converted once
#                    to a cached safetensors folder
#   random-init      a randomly initialised architecture from `config`, seeded
TOKENIZER_SOURCES = ("mistral-common", "hf", "model")
MODEL_SOURCES = ("hf", "package-gguf", "random-init")
DEVICES_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
DTYPES = ("float32", "float16", "bfloat16", "auto")
QUANTIZATIONS = ("none", "nf4", "int8")
KNOWN_MARKS = ("gpu",)
# the sections a card may leave out of its snapshot (snapshot.leave_out): a slow model
# (NF4 on CPU decodes at ~0.2 s a token) records what it can afford
LEAVABLE_SECTIONS = ("greedy", "embedding", "sampled")


def _type_name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_type_name(e) for e in expected)
    if expected is type(None):
        return "null"
    if isinstance(expected, dict):
        return "a mapping"
    if isinstance(expected, list):
        return "a list"
    return getattr(expected, "__name__", str(expected))


def _check(value: Any, schema: Any, where: str, problems: list[str]) -> None:
    if schema is ANY:
        return
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
            return
        key_types = [k for k in schema if isinstance(k, type)]
        if key_types:  # {int: str} style: free keys of one type
            (key_type,) = key_types
            for k, v in value.items():
                if not isinstance(k, key_type) or isinstance(k, bool):
                    problems.append(f"{where}: key {k!r} should be {key_type.__name__}")
                _check(v, schema[key_type], f"{where}.{k}", problems)
            return
        for k, v in value.items():
            if k not in schema:
                near = difflib.get_close_matches(str(k), [str(s) for s in schema], n=1)
                hint = f"; did you mean '{near[0]}'?" if near else f"; known: {', '.join(map(str, schema))}"
                problems.append(f"{where}.{k}: unknown field{hint}")
                continue
            _check(v, schema[k], f"{where}.{k}", problems)
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            label = item.get("id", i) if isinstance(item, dict) else i
            _check(item, schema[0], f"{where}[{label}]", problems)
        return
    # bool is a subclass of int: `vocab_size: true` must not pass as an int
    ok = isinstance(value, schema) and not (isinstance(value, bool) and bool not in _as_tuple(schema))
    if not ok:
        problems.append(f"{where}: expected {_type_name(schema)}, got {type(value).__name__} {value!r}")


def _as_tuple(t: Any) -> tuple:
    return t if isinstance(t, tuple) else (t,)


# --------------------------------------------------------------------------- the Card


@dataclass(frozen=True)
class Card:
    name: str
    path: Path
    description: str
    tokenizer: dict[str, Any]
    model: dict[str, Any] | None
    load: dict[str, Any]
    marks: tuple[str, ...] = ()
    expect: dict[str, Any] = field(default_factory=dict)
    xfail: tuple[dict[str, str], ...] = ()
    leave_out: tuple[dict[str, str], ...] = ()
    tolerances: dict[str, float] = field(default_factory=dict)
    reference: str | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    # set when --model replaced the card's own source (the expectations stay the card's)
    model_override: str | None = None

    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def device(self) -> str:
        return self.load.get("device", "cpu")

    @property
    def dtype(self) -> str:
        return self.load.get("dtype", "float32")

    @property
    def quantization(self) -> str:
        return self.load.get("quantization", "none")

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
        source = {"source": "hf", "id": model_id}
        gguf = _single_gguf(model_id)
        if gguf:
            source["gguf_file"] = gguf
        model = dict(source) if self.has_model else None
        tokenizer = {"source": "model"} if self.has_model else dict(source)
        return replace(self, tokenizer=tokenizer, model=model, model_override=model_id)

    def xfail_reason(self, test: str, case: str | None) -> str | None:
        """The recorded reason this card fails ``test`` (for ``case``), if any."""
        return _reason(self.xfail, test, case)

    def leave_out_reason(self, test: str, case: str | None) -> str | None:
        """Why this card does not run ``test`` (for ``case``), if it leaves it out."""
        return _reason(self.leave_out, test, case)

    def with_tokenizer_config(self, **overrides: Any) -> Card:
        """This card with some tokenizer_config entries changed (e.g. add_bos_token=False):
        how the library's own tests build a deliberately altered tokenizer."""
        config = {**(self.tokenizer.get("tokenizer_config") or {}), **overrides}
        return replace(self, tokenizer={**self.tokenizer, "tokenizer_config": config})

    def field_location(self, dotted: str) -> str:
        return f"card '{self.name}' ({_display_path(self.path)}), field expect.{dotted}"


def _reason(entries: tuple[dict[str, str], ...], test: str, case: str | None) -> str | None:
    for entry in entries:
        if entry["test"] == test and entry.get("case") in (None, case):
            return entry["reason"]
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


def load_card(path: str | Path) -> Card:
    """Read and validate one card file (YAML, safe loader)."""
    path = Path(path)
    shown = _display_path(path)
    if not path.is_file():
        raise CardError(f"card file {shown} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CardError(f"card file {shown} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CardError(f"card file {shown} must be a YAML mapping, got {type(raw).__name__}")

    problems: list[str] = []
    for key in REQUIRED:
        if key not in raw:
            problems.append(f"{key}: required field is missing")
    _check(raw, CARD_SCHEMA, "card", problems)
    problems = [p.removeprefix("card.") for p in problems]
    if isinstance(raw.get("model"), dict):
        sub: list[str] = []
        _check(raw["model"], _SOURCE_SCHEMA, "model", sub)
        problems += sub
    if not problems:
        problems += _missing_required(raw.get("expect") or {}) + _check_values(raw, path)
    if problems:
        listing = "\n  - ".join(problems)
        raise CardError(f"card file {shown} is invalid:\n  - {listing}")

    load = dict(raw.get("load") or {})
    return Card(
        name=raw["name"],
        path=path,
        description=raw["description"],
        tokenizer=dict(raw["tokenizer"]),
        model=dict(raw["model"]) if raw.get("model") else None,
        load=load,
        marks=tuple(raw.get("marks") or ()),
        expect=raw.get("expect") or {},
        xfail=tuple(raw.get("xfail") or ()),
        leave_out=tuple(raw.get("leave_out") or ()),
        tolerances=dict(raw.get("tolerances") or {}),
        reference=raw.get("reference"),
        snapshot=dict(raw.get("snapshot") or {}),
    )


def _check_values(raw: dict[str, Any], path: Path) -> list[str]:
    problems = []
    if raw["name"] != path.stem:
        problems.append(f"name: '{raw['name']}' differs from the file name '{path.stem}'")
    tok_source = raw["tokenizer"].get("source")
    if tok_source not in TOKENIZER_SOURCES:
        problems.append(f"tokenizer.source: {tok_source!r} is not one of {', '.join(TOKENIZER_SOURCES)}")
    if tok_source == "model" and not raw.get("model"):
        problems.append("tokenizer.source: 'model' needs a model section")
    model = raw.get("model")
    if model:
        if model.get("source") not in MODEL_SOURCES:
            problems.append(f"model.source: {model.get('source')!r} is not one of {', '.join(MODEL_SOURCES)}")
        for need in {"hf": ("id",), "package-gguf": ("package", "file"), "random-init": ("architecture", "config")}.get(
            model.get("source"), ()
        ):
            if need not in model:
                problems.append(f"model.{need}: required for source '{model['source']}'")
    load = raw.get("load") or {}
    if "device" in load and not DEVICES_RE.match(load["device"]):
        problems.append(f"load.device: {load['device']!r} is not auto, cpu, cuda, cuda:N or mps")
    if "dtype" in load and load["dtype"] not in DTYPES:
        problems.append(f"load.dtype: {load['dtype']!r} is not one of {', '.join(DTYPES)}")
    if "quantization" in load and load["quantization"] not in QUANTIZATIONS:
        problems.append(f"load.quantization: {load['quantization']!r} is not one of {', '.join(QUANTIZATIONS)}")
    for mark in raw.get("marks") or ():
        if mark not in KNOWN_MARKS:
            problems.append(f"marks: {mark!r} is not one of {', '.join(KNOWN_MARKS)}")
    for section in MODEL_SECTIONS:
        if section in (raw.get("expect") or {}) and not model:
            problems.append(f"expect.{section}: this card has no model section to check")
    if "drift" in (raw.get("expect") or {}) and not raw.get("reference"):
        problems.append("expect.drift: needs `reference:`, the full-precision card to compare with")
    if raw.get("reference") == raw["name"]:
        problems.append("reference: a card cannot be its own reference")
    for section in (raw.get("snapshot") or {}).get("leave_out") or ():
        if section not in LEAVABLE_SECTIONS:
            problems.append(f"snapshot.leave_out: {section!r} is not one of {', '.join(LEAVABLE_SECTIONS)}")
    for key in ("xfail", "leave_out"):
        for i, entry in enumerate(raw.get(key) or ()):
            for need in ("test", "reason"):
                if need not in entry:
                    problems.append(f"{key}[{i}].{need}: required")
    return problems


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


if __name__ == "__main__":  # python -m probes.cards > fixtures/card.schema.json
    import json
    import sys

    json.dump(card_json_schema(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
