"""A wrong expected value fails with card file, field, expected and obtained."""

from __future__ import annotations

import pytest

from lm_probes.cards.card import find_card
from lm_probes.expect import ExpectationMismatch, check_equal


def test_equal_values_pass_and_tuples_compare_to_yaml_lists():
    card = find_card("mistral-tokenizer")
    check_equal(card, "tokenizer.encode[english].ids", (1, 415, 5565, 302, 4720, 349))


def test_mismatch_names_card_file_field_expected_obtained_and_first_difference():
    card = find_card("mistral-tokenizer")
    with pytest.raises(ExpectationMismatch) as err:
        check_equal(card, "tokenizer.encode[english].ids", (415, 5565, 302, 4720, 349))
    message = str(err.value)
    assert "card 'mistral-tokenizer' (fixtures/cards/mistral-tokenizer.yaml)" in message
    assert "field expect.tokenizer.encode[english].ids" in message
    assert "expected: [1, 415, 5565, 302, 4720, 349]" in message
    assert "obtained: [415, 5565, 302, 4720, 349]" in message
    assert "first difference at index 0: expected 1, obtained 415" in message
    assert "update that field in mistral-tokenizer.yaml" in message


def test_mismatch_mentions_the_model_override():
    card = find_card("mistral-tokenizer").with_model("/some/folder")
    with pytest.raises(ExpectationMismatch, match="model loaded from --lm-probes-model /some/folder"):
        check_equal(card, "tokenizer.vocab_size", 32001)


def test_absent_field_is_a_key_error_not_a_pass():
    card = find_card("mistral-tokenizer").replace(expect={})
    with pytest.raises(KeyError):
        check_equal(card, "tokenizer.vocab_size", 32000)


def test_at_least_passes_at_the_bound_and_fails_below_it():
    from lm_probes.expect import check_at_least

    card = find_card("smollm2-135m-instruct")
    check_at_least(card, "next_token.min_top1_prob", 0.6)  # the bound itself passes
    with pytest.raises(ExpectationMismatch) as err:
        check_at_least(card, "next_token.min_top1_prob", 0.59, note="top-10: ...")
    message = str(err.value)
    assert "field expect.next_token.min_top1_prob" in message
    assert "expected: '>= 0.6'" in message and "obtained: 0.59" in message and "top-10: ..." in message


# ------------------------------------------------ one failure style (issue 12)


def test_check_that_names_the_cards_field_or_says_it_is_a_property_of_every_model():
    from lm_probes.expect import check_that

    card = find_card("smollm2-135m-instruct")
    check_that(card, True, expected="anything", obtained="anything")  # holds: nothing raised
    with pytest.raises(ExpectationMismatch) as err:
        check_that(card, False, field="tasks.knowledge[japan].answer", expected="Tokyo", obtained="Kyoto")
    assert "field expect.tasks.knowledge[japan].answer" in str(err.value)
    assert "update that field in smollm2-135m-instruct.yaml" in str(err.value)
    with pytest.raises(ExpectationMismatch) as err:
        check_that(card, False, expected="greedy is the argmax", obtained="token 3 is not", note="settings: {}")
    message = str(err.value)
    assert message.startswith(
        "card 'smollm2-135m-instruct' (fixtures/cards/smollm2-135m-instruct.yaml), a property every model must have"
    )
    assert "expected: greedy is the argmax\n  obtained: token 3 is not\n  settings: {}" in message
    assert "record it under xfail: in smollm2-135m-instruct.yaml" in message


def test_behavioural_tests_fail_only_through_the_check_helpers():
    """One failure style: every behavioural test fails through lm_probes.expect (card, file,
    field or property, expected, obtained), never a bare assert with a message of its own
    (the snapshot test fails with the snapshot's own comparison message)."""
    import ast

    from lm_probes.paths import REPO_ROOT

    bare = []
    for path in sorted((REPO_ROOT / "tests" / "behaviour").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assert):
                bare.append(f"{path.name}:{node.lineno}")
    assert not bare, f"bare asserts in tests/behaviour (use lm_probes.expect's check_*): {bare}"
