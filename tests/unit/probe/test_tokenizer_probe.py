"""The tokenizer probes on the real Mistral tokenizer, and on deliberately altered copies:
each probe must report the alteration it is meant to see."""

from __future__ import annotations

import pytest

from lm_probes import tokenizer as tk
from lm_probes.cards.card import find_card
from lm_probes.subjects.subject import Subject


def mistral_tokenizer(**config):
    return Subject(find_card("mistral-tokenizer").with_tokenizer_config(**config)).tokenizer


@pytest.fixture(scope="module")
def real():
    return mistral_tokenizer()


@pytest.fixture(scope="module")
def no_bos():
    return mistral_tokenizer(add_bos_token=False)


def test_encode_gives_ids_pieces_and_per_id_text(real):
    enc = tk.encode(real, "The capital of Japan is")
    assert enc.ids == (1, 415, 5565, 302, 4720, 349)
    assert enc.id_line() == "1:<s> 415:The 5565:capital 302:of 4720:Japan 349:is"
    assert enc.tokens[1] == "▁The"


def test_bos_behaviour_of_the_real_tokenizer(real):
    bos = tk.bos_behaviour(real, "Hello world")
    assert (bos.added_by_default, bos.default_matches_special, bos.absent_without_special) == (True, True, True)


def test_bos_behaviour_reports_a_tokenizer_that_dropped_bos(no_bos):
    bos = tk.bos_behaviour(no_bos, "Hello world")
    assert bos.added_by_default is False
    assert bos.default_ids == (22557, 1526)
    # Still consistent: it just never adds BOS.
    assert bos.default_matches_special and bos.absent_without_special


def test_duplicate_bos_is_detected_and_explained(real):
    found = tk.duplicate_bos(real, "<s> What is the capital of United States? ")
    assert found.ids[:2] == (1, 1) and found.duplicated and found.leading_bos == 2
    assert found.trailing_space_token  # the trailing ' ' became the lone piece 28705
    assert "add_special_tokens=False" in found.message()


def test_duplicate_bos_not_reported_when_the_tokenizer_adds_none(no_bos):
    found = tk.duplicate_bos(no_bos, "<s> What is the capital of United States? ")
    assert found.leading_bos == 1 and not found.duplicated


def test_duplicate_bos_not_reported_for_a_plain_prompt(real):
    found = tk.duplicate_bos(real, "What is the capital?")
    assert (found.leading_bos, found.duplicated, found.trailing_space_token) == (1, False, False)


def test_first_token_sees_the_lone_boundary_piece(real):
    assert tk.first_token(real, "日本").first_id == 28705
    assert tk.first_token(real, "日本").first_decoded == ""
    assert tk.first_token(real, "Japan").first_token == "▁Japan"


def test_first_token_of_empty_text_is_an_error(real):
    with pytest.raises(ValueError, match="encodes to no tokens"):
        tk.first_token(real, "")


def test_vocab_table_rejects_ids_outside_the_vocabulary(real):
    with pytest.raises(ValueError, match=r"outside the vocabulary \(0\.\.31999\)"):
        tk.vocab_table(real, [0, 32000])


def test_head_and_tail_ids(real):
    assert tk.head_and_tail_ids(real, 3) == [0, 1, 2, 31997, 31998, 31999]


def test_legacy_false_changes_the_encoding_after_a_special_token():
    # Why the card has the "Hello <s>world" case: only it tells legacy on from off.
    assert tk.encode(mistral_tokenizer(legacy=False), "Hello <s>world").ids == (1, 22557, 28705, 1, 9471)


def test_subjects_share_one_converted_tokenizer_per_file_and_config():
    """The conversion is done once per process and (file, config): two subjects of the
    same card get the same tokenizer, a changed config gets its own (a shared one
    would hide the change, as the legacy test above shows it must not)."""
    card = find_card("mistral-tokenizer")
    assert Subject(card).tokenizer is Subject(card).tokenizer
    changed = Subject(card.with_tokenizer_config(legacy=False)).tokenizer
    assert changed is not Subject(card).tokenizer
    assert changed.encode("Hello <s>world") != Subject(card).tokenizer.encode("Hello <s>world")


def test_subjects_of_a_gguf_share_its_converted_tokenizer_and_a_folder_is_read_anew(tmp_path):
    """A GGUF conversion in the cache never changes, so its tokenizer is read once per
    process; a model folder (which a user or a break test may edit) is read each time."""
    card = find_card("smollm2-135m-instruct")
    first = Subject(card).tokenizer
    assert Subject(card).tokenizer is first
    folder = tmp_path / "saved"
    first.save_pretrained(folder)
    copy = card.with_model(str(folder))
    assert Subject(copy).tokenizer is not Subject(copy).tokenizer
