"""Issue 32, cards: what a card file may hold is checked when it is read (exit 4 from the
command line): its name is one path component, every bound can fail and every number is
finite, a file that cannot be read or decoded is one bad card, and a name is one card. Each
refusal has a harmless twin the check lets through."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lm_probes.cards.card import CardError, available_cards, find_card, load_card
from lm_probes.cards.choices import card_name_problem
from lm_probes.cards.sources import HubSource
from lm_probes.paths import CARDS_DIR

TOKENIZER_CARD = """\
name: {name}
description: a test card
tokenizer: {source: mistral-common}
"""
MODEL_CARD = TOKENIZER_CARD + "model: {source: random-init, architecture: MistralForCausalLM, config: {}}\n"


def write_card(folder: Path, body: str, name: str = "my-card", file_name: str | None = None) -> Path:
    path = folder / f"{file_name or name}.yaml"
    path.write_text(textwrap.dedent(body).replace("{name}", name), encoding="utf-8")
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(CardError) as err:
        load_card(path)
    return str(err.value)


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    "name",
    ["../../tmp/x/escape", "a/b", "..", ".hidden", "a..b", "ends-with-dot.", "white space", "x" * 101],
    ids=["climbs", "slash", "dot-dot", "hidden", "double-dot", "trailing-dot", "space", "too-long"],
)
def test_a_card_name_that_is_not_one_path_component_is_refused_when_the_card_is_read(tmp_path, name):
    """A card's name becomes its snapshot folder, cache and report names: one component of a
    stated alphabet, refused with the rule, whatever the file is called."""
    message = problems_of(write_card(tmp_path, TOKENIZER_CARD, name=name, file_name="card"))
    assert f"name: {card_name_problem(name)}" in message, message
    assert "is not a card name" in message or "a card name has at most 100" in message


def test_a_card_name_the_file_system_takes_as_is_loads(tmp_path):
    """The harmless twin: a dot inside, digits first, underscores and 100 characters are names."""
    for name in ("qwen2.5-1.5b", "7b_model", "x" * 100):
        assert load_card(write_card(tmp_path, TOKENIZER_CARD, name=name)).name == name
    assert all(card_name_problem(name) is None for name in available_cards())  # every shipped card


def test_the_name_rule_is_one_function_the_command_line_can_call():
    """draft-card --name (and any stage that makes a file of a name) asks the same rule."""
    assert card_name_problem("../../tmp/x/escape") == (
        "'../../tmp/x/escape' is not a card name: use letters, digits, '.', '_' and '-', starting with a "
        "letter or digit, with no '..' and no '.' at the end, at most 100 characters"
    )
    assert card_name_problem("") is not None and card_name_problem("my-model") is None


def test_a_reference_is_a_card_name_too(tmp_path):
    message = problems_of(write_card(tmp_path, MODEL_CARD + "reference: ../elsewhere/x\n"))
    assert "reference: '../elsewhere/x' is not a card name" in message


# ----------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "expect: {next_token: {top1: x, min_top1_prob: -0.2}}",
            "expect.next_token.min_top1_prob: -0.2 is not a probability; give a value in [0, 1]",
        ),
        (
            "expect: {next_token: {top1: x, min_top1_prob: 1.5}}",
            "expect.next_token.min_top1_prob: 1.5 is not a probability; give a value in [0, 1]",
        ),
        ("tolerances: {prob_atol: -1}", "tolerances.prob_atol: -1 is not a tolerance; give a finite number above 0"),
        ("tolerances: {logit_tie: .nan}", "tolerances.logit_tie: nan is not a tolerance; give a finite number above 0"),
        ("tolerances: {cross_class: {kl_max: .inf}}", "tolerances.cross_class.kl_max: inf is not a tolerance"),
        (
            "expect: {sampling: {hot: {min_distinct: 6}}}",
            "expect.sampling.hot.min_distinct: 6 is not a number of distinct samples out of the 5 drawn; "
            "give an integer from 1 to 5",
        ),
        ("expect: {sampling: {warm: {answer: x, min_answer_share: 0.5, min_distinct: 0}}}", "min_distinct: 0 is not"),
        ("expect: {sampling: {warm: {answer: x, min_answer_share: 1.2, min_distinct: 2}}}", "1.2 is not a share"),
        ("expect: {sampling: {near-greedy: {min_greedy_agreement: -0.1}}}", "-0.1 is not a share"),
        ("expect: {tasks: {creative: {min_distinct_samples: 4}}}", "give an integer from 1 to 3"),
        ("expect: {tasks: {max_new_tokens: 0}}", "expect.tasks.max_new_tokens: 0 is not a positive count"),
        ("expect: {tasks: {decoding: {do_sample: true, top_p: 0}}}", "top_p: 0 is not a nucleus size"),
        ("expect: {tasks: {decoding: {do_sample: true, temperature: -1}}}", "temperature: -1 is not a temperature"),
        ("expect: {embedding: {min_margin: 3}}", "expect.embedding.min_margin: 3 is not a cosine margin"),
        ("expect: {embedding: {pca_explained_at_most: .nan}}", "pca_explained_at_most: nan is not a share"),
        ("expect: {beam_search: {at_least_greedy_logprob: true, min_gain_over_greedy: -1}}", "-1 is not a bound"),
        ("expect: {attention: {backends: [a, b], max_prob_diff: 2, greedy_agrees: true}}", "2 is not a probability"),
        ("expect: {drift: {max_kl: -0.1}}", "expect.drift.max_kl: -0.1 is not a bound of 0 or more"),
        ("expect: {drift: {min_top10_overlap: 1.01}}", "1.01 is not a share"),
        ("expect: {drift: {max_footprint_ratio: 0}}", "max_footprint_ratio: 0 is not a positive bound"),
        ("expect: {quantization: {linear_4bit: -3}}", "expect.quantization.linear_4bit: -3 is not a count"),
        ("expect: {tokenizer: {vocab_size: 0}}", "expect.tokenizer.vocab_size: 0 is not a positive count"),
        (
            "expect: {tokenizer: {encode: [{id: hi, text: hi, ids: [1, -2]}]}}",
            "expect.tokenizer.encode[hi].ids[1]: -2 is not a token id; give an integer, 0 or more",
        ),
        (
            "served: {engine: vllm, bare_request: greedy, parity: {prob_atol: 0, kl_max: .nan}}",
            "served.parity.prob_atol: 0 is not a probability tolerance; give a value in (0, 1]",
        ),
        ("served: {engine: vllm, bare_request: greedy, parity: {prob_atol: 0.1, kl_max: .nan}}", "kl_max: nan is not"),
    ],
)
def test_a_bound_that_cannot_fail_or_cannot_pass_is_refused_in_the_cards_words(tmp_path, body, message):
    """min_top1_prob -0.2 passed for every model and 1.5 failed at run time telling the user to
    update the field; a nan tolerance was accepted. Every bounded number of the schema, each
    refused when the card is read, with its field, its value and what to give."""
    text = MODEL_CARD + body + "\n"
    if "drift" in body:
        text += "reference: tiny-mistral\n"
    found = problems_of(write_card(tmp_path, text))
    assert message in found, found


@pytest.mark.parametrize(
    "body",
    [
        "expect: {next_token: {top1: x, min_top1_prob: 1.0}}",
        "expect: {next_token: {top1: x, min_top1_prob: 0.0}}",
        "expect: {next_token: {top1: x, min_top1_prob: 1}}",  # an int where a number is declared
        "expect: {sampling: {hot: {min_distinct: 5}, warm: {answer: x, min_answer_share: 0, min_distinct: 1}}}",
        "expect: {tasks: {creative: {min_distinct_samples: 3}, decoding: {do_sample: true, top_p: 1.0}}}",
        "expect: {embedding: {min_margin: -0.05}}",
        "tolerances: {prob_atol: 1.0e-6, cross_class: {kl_max: 0.06}}",
        "served: {engine: vllm, bare_request: greedy, parity: {prob_atol: 1.0, kl_max: 0.01}}",
    ],
    ids=[
        "p-1.0",
        "p-0.0",
        "p-int-1",
        "distinct-at-the-draws",
        "creative-at-the-runs",
        "negative-margin",
        "tol",
        "served",
    ],
)
def test_a_bound_at_the_edge_of_its_range_is_accepted(tmp_path, body):
    """The harmless twin: the ends of each range are values a card may hold."""
    load_card(write_card(tmp_path, MODEL_CARD + body + "\n"))


def test_the_sample_counts_are_what_the_probes_draw():
    """The distinct-sample bounds come from the inputs the probes read, not a copy."""
    from lm_probes.cards.expect_schema import CREATIVE_RUNS, SAMPLES
    from lm_probes.inputs import article_inputs

    assert (SAMPLES, CREATIVE_RUNS) == (article_inputs()["sampling"]["samples"], article_inputs()["creative"]["runs"])


def test_the_published_json_schema_carries_the_bounds():
    """An editor validating against fixtures/card.schema.json refuses what load_card refuses."""
    import jsonschema
    import yaml

    from lm_probes.cards.validation import card_json_schema

    validator = jsonschema.Draft202012Validator(card_json_schema())
    card = yaml.safe_load(MODEL_CARD.replace("{name}", "my-card"))
    for broken in ({"name": "../x"}, {"expect": {"next_token": {"top1": "x", "min_top1_prob": -0.2}}}):
        assert list(validator.iter_errors(card | broken)), broken
    assert not list(validator.iter_errors(card | {"expect": {"next_token": {"top1": "x", "min_top1_prob": 1.0}}}))


# --------------------------------------------------------- unreadable files


def test_a_card_file_that_is_not_utf8_is_a_card_error_naming_the_file(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: latin\ndescription: caf\xe9\ntokenizer: {source: mistral-common}\n")
    message = problems_of(path)
    assert f"card file {path} is not UTF-8 text (byte 0xe9 at offset 28): save it as UTF-8" == message


def test_a_folder_named_like_a_card_file_is_a_card_error(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    assert (
        problems_of(tmp_path / "folder.yaml")
        == f"card file {tmp_path / 'folder.yaml'} is a folder, not a card file: rename or move it"
    )


def test_a_card_file_that_cannot_be_read_is_a_card_error(tmp_path, monkeypatch):
    """Permission denied, shown by a read that raises it: as root (CI containers), chmod 000
    does not stop a read."""
    path = write_card(tmp_path, TOKENIZER_CARD)
    real = Path.read_text

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    assert problems_of(path) == f"card file {path} cannot be read (Permission denied): check its permissions"


# -------------------------------------------------------------- one name, one card


def test_one_name_in_two_of_the_users_folders_is_refused_naming_both_files(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    write_card(first, TOKENIZER_CARD, name="dup")
    write_card(second, TOKENIZER_CARD, name="dup")
    with pytest.raises(CardError) as err:
        available_cards([first, second])
    assert f"two cards named 'dup': {first / 'dup.yaml'} and {second / 'dup.yaml'}" in str(err.value)
    with pytest.raises(CardError, match="two cards named 'dup'"):
        find_card("dup", [first, second])


def test_a_users_card_of_a_shipped_name_and_a_folder_named_twice_are_no_duplicates(tmp_path):
    """The harmless twins: a user's card shadowing a shipped one is the documented way to change
    it (README), and one folder given twice (--lm-probes-cards-dir and the ini option) is one folder."""
    write_card(tmp_path, TOKENIZER_CARD, name="tiny-mistral")
    assert available_cards([tmp_path, tmp_path])["tiny-mistral"] == tmp_path / "tiny-mistral.yaml"
    assert find_card("tiny-mistral", [tmp_path, str(tmp_path) + "/"]).description == "a test card"


# ------------------------------------------------------------------ --lm-probes-model x.gguf


def test_with_model_of_a_gguf_file_reads_it_from_its_folder(tmp_path):
    gguf = tmp_path / "weights.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    (tmp_path / "other.gguf").write_bytes(b"GGUF")  # a second file: the folder alone would be ambiguous
    card = find_card("smollm2-135m-instruct").with_model(str(gguf))
    assert card.model == HubSource(source="hf", id=str(tmp_path), gguf_file="weights.Q8_0.gguf")
    assert card.model_override == str(gguf)


def test_a_name_too_long_for_the_file_system_is_an_unknown_card_not_an_os_error(tmp_path):
    """Found by the fuzz test: `--lm-probes-card` of a 300-character name raised OSError (ENAMETOOLONG)
    from Path.is_file; now it is the unknown-card message, and a path that long is a missing
    card file. The twin: a card file of the longest name allowed (100) is found by name."""
    with pytest.raises(CardError, match="Unknown card 'x{300}'"):
        find_card("x" * 300, [tmp_path])
    with pytest.raises(CardError, match="does not exist"):
        find_card(str(tmp_path / ("x" * 300 + ".yaml")))
    longest = "x" * 100
    text = (CARDS_DIR / "mistral-tokenizer.yaml").read_text(encoding="utf-8")
    (tmp_path / f"{longest}.yaml").write_text(text.replace("name: mistral-tokenizer", f"name: {longest}"), "utf-8")
    assert find_card(longest, [tmp_path]).name == longest
