"""Issue 33, decode spacing: the encode cases with a space before punctuation, contractions,
and runs of spaces and newlines catch a decode that joins pieces differently, as
transformers' clean_up_tokenization_spaces does (its default changed across releases,
transformers #42898 "decode spacing changed in v5"): "Hello , world !" reads "Hello, world!".

The behavioural test functions are called directly on the card's subject (as the break table
does): each must fail on the Mistral tokenizer and on SmolLM2, its message showing both
decoded strings, and pass where nothing a user reads changed (the setting spelled out as it
is, the tokenizer saved and loaded again)."""

from __future__ import annotations

import pytest

from lm_probes.cards.card import find_card
from lm_probes.cards.sources import HubSource
from lm_probes.subjects.subject import Subject
from tests.unit.break_patches import joining_as_cleanup
from tests.unit.break_running import Check

CARDS = ["mistral-tokenizer", "smollm2-135m-instruct"]
SPACING_CASES = ["spaced-punctuation", "contractions", "spaces-and-newlines"]
# what clean_up_tokenization_spaces makes of the two texts it changes (runs of spaces and
# newlines it leaves: that case guards other changes of how pieces are joined)
CLEANED = {"spaced-punctuation": "Hello, world!", "contractions": "I don't know if it's true."}


def outcome(test: str, subject: Subject, case_id: str) -> str:
    """'passed', or the failure's message, of a behavioural test of test_tokenizer.py on one
    encode case (run as the break table runs its checks)."""
    case = subject.card.expected(f"tokenizer.encode[{case_id}]")
    verdict, message = Check(f"test_tokenizer.py::{test}", {"case": case}).run(subject)
    return "passed" if verdict == "passed" else message


@pytest.mark.parametrize("card", CARDS)
def test_a_decode_that_joins_pieces_differently_fails_showing_both_strings(card, monkeypatch):
    subject = Subject(find_card(card))
    joining_as_cleanup(monkeypatch, subject)
    bos = "<s> " if card == "mistral-tokenizer" else ""  # Mistral's encode adds <s>, SmolLM2's adds nothing
    message = outcome("test_encode", subject, "spaced-punctuation")
    assert "field expect.tokenizer.encode[spaced-punctuation].decoded" in message, message
    assert f"decode(ids) gave '{bos}Hello, world!' (card: '{bos}Hello , world !')" in message, message
    assert "decode(ids, skip_special_tokens=True) gave 'Hello, world!' (card: 'Hello , world !')" in message, message
    message = outcome("test_encode", subject, "contractions")
    assert "gave \"I don't know if it's true.\" (card: \"I don't know if it 's true .\")" in message, message
    # the text users read back from encode: the round trip fails on both texts as well
    for case_id, joined in CLEANED.items():
        message = outcome("test_decode_round_trip", subject, case_id)
        # (the message shows the obtained sentence as a repr: its quotes escaped)
        assert "round_trips=True" in message and joined.replace("'", "\\'") in message, message


@pytest.mark.parametrize("card", CARDS)
def test_the_setting_spelled_out_as_it_is_passes_every_spacing_case(card, monkeypatch):
    """The harmless twin: clean_up_tokenization_spaces=False said explicitly (the default of
    both tokenizers here): nothing a user reads changes."""
    subject = Subject(find_card(card))
    monkeypatch.setattr(subject.tokenizer, "clean_up_tokenization_spaces", False)
    for case_id in SPACING_CASES:
        for test in ("test_encode", "test_decode_round_trip"):
            assert outcome(test, subject, case_id) == "passed", (test, case_id)


@pytest.mark.parametrize("card", CARDS)
def test_a_re_saved_tokenizer_passes_every_spacing_case(card, tmp_path):
    """The harmless twin of a tokenizer release: the same tokenizer saved with
    save_pretrained and loaded from that folder (another file, the same pieces)."""
    original = find_card(card)
    Subject(original).tokenizer.save_pretrained(tmp_path)
    resaved = Subject(original.replace(tokenizer=HubSource(source="hf", id=str(tmp_path))))
    for case_id in SPACING_CASES:
        for test in ("test_encode", "test_decode_round_trip"):
            assert outcome(test, resaved, case_id) == "passed", (test, case_id)
