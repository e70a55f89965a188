"""SPEC T1-T6: the tokenizer does what we think, for every selected card.

Every expected value comes from the card (fixtures/cards/<name>.yaml); a card without
a field simply does not get that check (listed as not covered in the report).
"""

from __future__ import annotations

import pytest

from lm_probes import tokenizer as tk
from lm_probes.expect import check_equal, check_that
from lm_probes.inputs import article_inputs
from lm_probes.report.html import Cell
from lm_probes.subjects.results import chat_rendering

INPUTS = article_inputs()


@pytest.mark.observation("T4", expects="tokenizer.vocab_size")
def test_vocab_size(lm_probes_subject):
    check_equal(lm_probes_subject.card, "tokenizer.vocab_size", lm_probes_subject.tokenizer.vocab_size)


@pytest.mark.observation("T3", expects="tokenizer.bos")
def test_bos_token(lm_probes_subject):
    bos = tk.bos_behaviour(lm_probes_subject.tokenizer, lm_probes_subject.card.expected("tokenizer.bos.probe_text"))
    check_equal(lm_probes_subject.card, "tokenizer.bos.id", bos.bos_id)
    check_equal(lm_probes_subject.card, "tokenizer.bos.token", bos.bos_token)


@pytest.mark.observation("T3", expects="tokenizer.bos")
def test_bos_prepended_by_default_and_absent_without_special_tokens(lm_probes_subject):
    bos = tk.bos_behaviour(lm_probes_subject.tokenizer, lm_probes_subject.card.expected("tokenizer.bos.probe_text"))
    check_equal(
        lm_probes_subject.card,
        "tokenizer.bos.added_by_default",
        bos.added_by_default,
        note=f"encode() gave {list(bos.default_ids)}",
    )
    # Whatever the default, these two must hold for any tokenizer:
    check_that(
        lm_probes_subject.card,
        bos.default_matches_special,
        expected="encode(text) is encode(text, add_special_tokens=True)",
        obtained=f"encode(text) {list(bos.default_ids)} differs from encode(text, add_special_tokens=True) "
        f"{list(bos.with_special_ids)}: the default is not 'special tokens on'",
    )
    check_that(
        lm_probes_subject.card,
        bos.absent_without_special,
        expected="encode(text, add_special_tokens=False) has no BOS",
        obtained=f"encode(text, add_special_tokens=False) still starts with BOS: {list(bos.without_special_ids)}",
    )


@pytest.mark.observation("T1", "T2", "T3", expects="tokenizer.encode")
def test_encode(lm_probes_subject, case, lm_probes_attach):
    encoding = tk.encode(lm_probes_subject.tokenizer, case["text"], case.get("add_special_tokens"))
    lm_probes_attach.table(
        ["id", "piece", "decode([id])"],
        [
            [Cell(i, code=True), repr(piece), repr(text)]
            for i, piece, text in zip(encoding.ids, encoding.tokens, encoding.decoded_per_id)
        ],
        caption=f"{encoding.text!r} → {encoding.id_line()}",
        summary="Token ids (id: piece, decode per id)",
    )
    field = f"tokenizer.encode[{case['id']}]"
    check_equal(lm_probes_subject.card, f"{field}.ids", encoding.ids)
    if "tokens" in case:
        check_equal(lm_probes_subject.card, f"{field}.tokens", encoding.tokens)
    # how decode joins the pieces, with and without special tokens (issue 33: transformers'
    # clean_up_tokenization_spaces turns "Hello , world !" into "Hello, world!"): either
    # failing shows both strings, as the card has them and as obtained
    decoded = {"decoded": encoding.decoded}
    if "decoded_skipping_special" in case:
        decoded["decoded_skipping_special"] = lm_probes_subject.tokenizer.decode(
            list(encoding.ids), skip_special_tokens=True
        )
    both = "; ".join(
        f"{'decode(ids)' if name == 'decoded' else 'decode(ids, skip_special_tokens=True)'} gave {text!r}"
        + (f" (card: {case[name]!r})" if name in case else "")
        for name, text in decoded.items()
    )
    for name, text in decoded.items():
        if name in case:
            check_equal(lm_probes_subject.card, f"{field}.{name}", text, note=both)
    if "decoded_per_id" in case:
        check_equal(lm_probes_subject.card, f"{field}.decoded_per_id", encoding.decoded_per_id)


@pytest.mark.observation("T1", "T2", "T3", expects="tokenizer.encode")
def test_decode_round_trip(lm_probes_subject, case):
    """decode(encode(text, add_special_tokens=False)) gives the text back, unless the card
    records (round_trips: false) that this tokenizer alters it, and then it must still alter it."""
    tokenizer = lm_probes_subject.tokenizer
    ids = tokenizer.encode(case["text"], add_special_tokens=False)
    decoded = tokenizer.decode(ids)
    expected = case.get("round_trips", True)  # the schema's default (EncodeCase.round_trips)
    check_that(
        lm_probes_subject.card,
        (decoded == case["text"]) == expected,
        field=f"tokenizer.encode[{case['id']}].round_trips",
        expected=f"round_trips={expected}",
        obtained=f"decode(encode({case['text']!r})) gave {decoded!r}",
    )


@pytest.mark.observation("T2", expects="tokenizer.first_token")
def test_first_token(lm_probes_subject, case):
    first = tk.first_token(lm_probes_subject.tokenizer, case["text"])
    field = f"tokenizer.first_token[{case['id']}]"
    check_equal(lm_probes_subject.card, f"{field}.first_id", first.first_id)
    check_equal(lm_probes_subject.card, f"{field}.first_token", first.first_token)
    check_equal(lm_probes_subject.card, f"{field}.first_decoded", first.first_decoded)


@pytest.mark.observation("T5", expects="tokenizer.vocab_table")
def test_vocab_table(lm_probes_subject, lm_probes_attach):
    expected = lm_probes_subject.card.expected("tokenizer.vocab_table")
    table = tk.vocab_table(lm_probes_subject.tokenizer, [row["id"] for row in expected])
    head_tail = tk.vocab_table(lm_probes_subject.tokenizer, tk.head_and_tail_ids(lm_probes_subject.tokenizer))
    lm_probes_attach.table(
        ["id", "token", "decode([id])"],
        [[e.id, repr(e.token), repr(e.decoded)] for e in head_tail],
        summary="Vocabulary head and tail",
    )
    check_equal(lm_probes_subject.card, "tokenizer.vocab_table", [entry.as_dict() for entry in table])


@pytest.mark.observation("T6", expects="tokenizer.duplicate_bos")
def test_duplicate_bos_detected(lm_probes_subject, case, lm_probes_attach):
    found = tk.duplicate_bos(lm_probes_subject.tokenizer, case["prompt"])
    lm_probes_attach.text(found.message(), name="duplicate BOS check")
    field = f"tokenizer.duplicate_bos[{case['id']}]"
    check_equal(lm_probes_subject.card, f"{field}.leading_bos", found.leading_bos, note=f"ids: {list(found.ids)}")
    check_equal(lm_probes_subject.card, f"{field}.duplicated", found.duplicated, note=found.message())
    check_equal(
        lm_probes_subject.card,
        f"{field}.trailing_space_token",
        found.trailing_space_token,
        note=f"ids: {list(found.ids)}",
    )


# ---------------------------------------------------------------------- U1 (issue 13)


@pytest.mark.observation("U1", expects="tokenizer.chat")
def test_chat_template_is_there_when_the_card_says_so(lm_probes_subject, lm_probes_attach):
    """A card without a template says so (has_template: false); a template that appears
    or disappears with an upgrade (of the tokenizer files or transformers) fails here."""
    chat = chat_rendering(lm_probes_subject)
    if chat.has_template:
        lm_probes_attach.table(
            ["rendered text (tokenize=False)", "ids (tokenize=True)"],
            [[Cell(repr(chat.text), code=True), Cell(" ".join(map(str, chat.ids)), code=True)]],
            summary="Chat template: the inputs' conversation (U1)",
        )
    check_equal(lm_probes_subject.card, "tokenizer.chat.has_template", chat.has_template)


@pytest.mark.observation("U1", expects="tokenizer.chat.leading_bos")
def test_chat_template_ids_are_the_rendered_text_with_one_bos(lm_probes_subject):
    """apply_chat_template(tokenize=True) gives exactly the ids of its own rendered text
    (no special token added on top) and opens with the card's number of BOS ids."""
    chat = chat_rendering(lm_probes_subject)
    check_that(
        lm_probes_subject.card,
        chat.consistent,
        expected="apply_chat_template(tokenize=True) == encode(apply_chat_template(tokenize=False), "
        "add_special_tokens=False)",
        obtained=chat.first_difference(),
    )
    check_equal(
        lm_probes_subject.card, "tokenizer.chat.leading_bos", chat.leading_bos, note=f"ids: {list(chat.ids[:6])}..."
    )
    if lm_probes_subject.card.has_expectation("tokenizer.chat.generation_prompt"):
        prompt = lm_probes_subject.card.expected("tokenizer.chat.generation_prompt")
        check_that(
            lm_probes_subject.card,
            chat.text.endswith(prompt),
            field="tokenizer.chat.generation_prompt",
            expected=f"the rendered text ends with {prompt!r}",
            obtained=repr(chat.text[-40:]),
        )


# ---------------------------------------------------------------------- U6 (issue 13)


@pytest.mark.observation("U6", expects="tokenizer.special_text")
def test_special_tokens_and_whitespace_encode_and_round_trip(lm_probes_subject, case, lm_probes_attach):
    """Special tokens written inside text (the tokenizer's own BOS/EOS), and leading,
    trailing, doubled whitespace and newlines: the ids encode() gives with special tokens
    off, and whether decode() gives the text back (a legacy SentencePiece does not, after
    `<s>`; the card records which)."""
    found = tk.special_text(lm_probes_subject.tokenizer, case["id"], INPUTS["special_texts"][case["id"]])
    lm_probes_attach.table(
        ["case", "text", "ids", "decode(ids)", "round trip"],
        [
            [
                case["id"],
                Cell(repr(found.text), code=True),
                " ".join(map(str, found.ids)),
                repr(found.decoded),
                found.round_trips,
            ]
        ],
        summary="Special tokens and whitespace (U6)",
    )
    field = f"tokenizer.special_text[{case['id']}]"
    check_equal(lm_probes_subject.card, f"{field}.ids", found.ids, note=f"text {found.text!r}")
    expected = case.get("round_trips", True)  # the schema's default (SpecialText.round_trips)
    check_that(
        lm_probes_subject.card,
        found.round_trips == expected,
        field=f"{field}.round_trips",
        expected=f"round_trips={expected}",
        obtained=f"decode(encode({found.text!r})) gave {found.decoded!r}",
    )
