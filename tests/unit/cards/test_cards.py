"""Cards: every shipped card validates; broken cards fail with the file and field named."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest

from lm_probes.cards.card import CardError, available_cards, find_card, load_card
from lm_probes.cards.sources import FollowModel, HubSource

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
    assert card.written_expect, f"card {name} expects nothing"


def test_the_four_cards_of_the_spec_are_shipped():
    assert set(available_cards()) >= {"mistral-7b-v0.1", "mistral-tokenizer", "smollm2-135m-instruct", "tiny-mistral"}


def test_gpu_card_carries_the_gpu_mark_and_the_articles_load_settings():
    card = find_card("mistral-7b-v0.1")
    assert card.marks == ["gpu"]
    assert (card.quantization, card.dtype, card.load.device_map) == ("nf4", "float16", "auto")
    assert card.model == HubSource(source="hf", id="mistralai/Mistral-7B-v0.1")


def test_minimal_card_loads(tmp_path):
    card = load_card(write_card(tmp_path, MINIMAL))
    assert card.name == "my-card" and not card.has_model and card.written_expect == {}


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
skip:
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
    assert "skip[0].reason: required" in message


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
    assert "transformers' code" in card.skip_reason("test_greedy_picks_the_most_likely_token", "bos")
    assert card.skip_reason("test_next_token_top1", None) is None


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
    """--lm-probes-cards-dir / lm_probes_cards_dirs: the user's cards are found by name beside the
    shipped ones (which an installed package keeps in lm_probes/fixtures/cards), and a user's
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
        ("lm_probes", True),  # exists here (tests run from the repository root)
        ("org/name", False),
        ("gpt2", False),
    ],
)
def test_one_rule_tells_a_local_path_from_a_hub_id(source_id, local, monkeypatch):
    """--lm-probes-model and the load error messages used two different rules (issue 12)."""
    from lm_probes.cards.card import looks_like_local_path
    from lm_probes.paths import REPO_ROOT

    monkeypatch.chdir(REPO_ROOT)
    assert looks_like_local_path(source_id) is local


def test_the_old_name_of_skip_is_read_with_a_warning_naming_the_new_one_and_both_names_are_refused(tmp_path):
    """Issue 36: the top-level `leave_out:` (tests not run) became `skip:`, so that `leave_out`
    means only the snapshot sections a card does not record. A card of the old form still
    loads, for one release, with a warning that names the new key; one with both is refused."""
    from lm_probes.cards.card import CardKeyRenamed

    entries = "  - {test: test_next_token_top1, reason: too slow here}\n"
    with pytest.warns(CardKeyRenamed, match=r"`leave_out:` is now `skip:` \(the same entries\); rename it"):
        card = load_card(write_card(tmp_path, MINIMAL + "leave_out:\n" + entries))
    assert card.skip_reason("test_next_token_top1", None) == "too slow here"
    with pytest.raises(CardError, match=r"leave_out: the old name of `skip:`, and the card has both; keep `skip:`"):
        load_card(write_card(tmp_path, MINIMAL + "leave_out:\n" + entries + "skip:\n" + entries))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name: no warning
        assert load_card(write_card(tmp_path, MINIMAL + "skip:\n" + entries)).skip
