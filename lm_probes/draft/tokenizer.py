"""The tokenizer part of a drafted card: BOS, the encode cases, first tokens, vocabulary entries,
the chat template, all read from the tokenizer alone."""

from __future__ import annotations

from typing import Any

from lm_probes import tokenizer as tk
from lm_probes.draft.settings import Draft, short_text
from lm_probes.draft.writer import Commented
from lm_probes.inputs import article_inputs


def draft_tokenizer(tokenizer: Any, draft: Draft) -> dict[str, Any]:
    """T1-T6, U1, U6: every value exact. Texts with special tokens use this tokenizer's
    own (a card copied from another model carries that model's '<s>' or '<|im_start|>')."""
    inputs = article_inputs()
    bos_text = tokenizer.bos_token
    section: dict[str, Any] = {"vocab_size": tokenizer.vocab_size}

    drafted = inputs["draft"]
    probe_text = drafted["bos_probe_text"]
    bos = tk.bos_behaviour(tokenizer, probe_text)
    section["bos"] = Commented(
        {"id": bos.bos_id, "token": bos.bos_token, "added_by_default": bos.added_by_default, "probe_text": probe_text},
        f"encode({probe_text!r}) gave {list(bos.default_ids)}",
    )
    if not (bos.default_matches_special and bos.absent_without_special):
        draft.fails(
            "test_bos_prepended_by_default_and_absent_without_special_tokens",
            f"encode(text) {list(bos.default_ids)}, with special tokens {list(bos.with_special_ids)}, "
            f"without {list(bos.without_special_ids)} (measured by lm-probes draft-card)",
        )

    # the inputs' texts; one naming {bos} only for a tokenizer that has a BOS, with its own
    section["encode"] = [
        _encode_case(tokenizer, c["id"], c["observation"], c["text"].replace("{bos}", bos_text or ""), c.get("special"))
        for c in drafted["encode"]
        if bos_text or "{bos}" not in c["text"]
    ]
    section["first_token"] = [
        {"id": c["id"], "text": c["text"], **_first(tokenizer, c["text"])} for c in drafted["first_token"]
    ]
    section["vocab_table"] = [entry.as_dict() for entry in tk.vocab_table(tokenizer, tk.head_and_tail_ids(tokenizer))]

    prompts = [
        (c["id"], c["prompt"].replace("{bos}", bos_text or ""))
        for c in drafted["duplicate_bos"]
        if bos_text or "{bos}" not in c["prompt"]
    ]
    section["duplicate_bos"] = []
    for case_id, prompt in prompts:
        found = tk.duplicate_bos(tokenizer, prompt)
        section["duplicate_bos"].append(
            {
                "id": case_id,
                "prompt": prompt,
                "leading_bos": found.leading_bos,
                "duplicated": found.duplicated,
                "trailing_space_token": found.trailing_space_token,
            }
        )

    section["chat"] = _chat(tokenizer, inputs["chat"], draft)
    section["special_text"] = []
    for case_id, template in inputs["special_texts"].items():
        found = tk.special_text(tokenizer, case_id, template)
        entry: dict[str, Any] = {"id": case_id, "ids": list(found.ids)}
        if not found.round_trips:
            entry["round_trips"] = False
            entry = Commented(entry, f"decode gives {found.decoded!r} for {found.text!r}")
        section["special_text"].append(entry)
    return section


def _encode_case(tokenizer: Any, case_id: str, observation: str, text: str, special: bool | None) -> Any:
    encoding = tk.encode(tokenizer, text, special)
    case: dict[str, Any] = {"id": case_id, "observation": observation, "text": text}
    if special is not None:
        case["add_special_tokens"] = special
    case.update(
        ids=list(encoding.ids),
        tokens=list(encoding.tokens),
        decoded=encoding.decoded,
        # the text users read: special tokens dropped (decoded keeps them); both, so a change
        # in how decode joins pieces shows in each
        decoded_skipping_special=tokenizer.decode(list(encoding.ids), skip_special_tokens=True),
        decoded_per_id=list(encoding.decoded_per_id),
    )
    decoded = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False))
    if decoded != text:
        case["round_trips"] = False
        return Commented(case, f"decode(encode(text, add_special_tokens=False)) gives {decoded!r}")
    return case


def _first(tokenizer: Any, text: str) -> dict[str, Any]:
    first = tk.first_token(tokenizer, text)
    return {"first_id": first.first_id, "first_token": first.first_token, "first_decoded": first.first_decoded}


def _chat(tokenizer: Any, messages: list[dict[str, str]], draft: Draft) -> Any:
    rendering = tk.chat_rendering(tokenizer, messages)
    if not rendering.has_template:
        return Commented({"has_template": False}, "the tokenizer has no chat template")
    chat: dict[str, Any] = {"has_template": True, "leading_bos": rendering.leading_bos}
    # what add_generation_prompt=True appends: the rendered text without it is a prefix
    bare = tk.chat_rendering(tokenizer, messages, add_generation_prompt=False)
    if rendering.text.startswith(bare.text) and len(rendering.text) > len(bare.text):
        chat["generation_prompt"] = rendering.text[len(bare.text) :]
    if not rendering.consistent:
        draft.fails(
            "test_chat_template_ids_are_the_rendered_text_with_one_bos",
            f"{rendering.first_difference()} (measured by lm-probes draft-card)",
        )
    return Commented(chat, f"renders {short_text(rendering.text)}")
