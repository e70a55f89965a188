"""U1-U4 probes (issue 13) on hand-made inputs and on SmolLM2's loaded model: what each
catches, and what it lets pass. (The library and model-folder breaks of U1, U2 and U4
are rows of test_break_table.py.)"""

from __future__ import annotations

import functools

import pytest
import torch

from lm_probes import hidden_states as hs
from lm_probes import tokenizer as tk
from lm_probes.cards.card import find_card
from lm_probes.inputs import article_inputs
from lm_probes.maths import first_moved_layer
from lm_probes.snapshots.compare import compare
from lm_probes.snapshots.observe import fingerprint_entries
from lm_probes.snapshots.record import load, snapshot_path
from lm_probes.subjects.subject import Subject
from tests.unit.conftest import tokenizer_subject

# ------------------------------------------------------------------------------ U1


def test_a_tokenizer_without_a_template_says_so():
    chat = tk.chat_rendering(tokenizer_subject().tokenizer, article_inputs()["chat"])
    assert not chat.has_template and chat.ids == () and chat.leading_bos == 0


def test_a_template_that_writes_bos_gives_one_bos_and_matching_ids():
    tokenizer = tokenizer_subject(chat_template="{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    chat = tk.chat_rendering(tokenizer.tokenizer, [{"role": "user", "content": "Hello"}])
    assert (chat.text, chat.leading_bos, chat.consistent) == ("<s>Hello", 1, True)


def test_first_difference_points_at_the_extra_bos():
    chat = tk.ChatRendering(has_template=True, text="<s>Hi", ids=(1, 1, 15359), ids_from_text=(1, 15359), bos_id=1)
    assert not chat.consistent and chat.leading_bos == 2
    assert chat.first_difference().startswith("at position 1: tokenize=True gives [1, 1, 15359]")


# ------------------------------------------------------------------------------ U3


def test_first_moved_layer_by_norm_and_by_direction():
    norms, projections = [1.0, 2.0, 3.0], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    assert first_moved_layer(norms, projections, norms, projections, 1e-4, 1e-5) is None
    longer = first_moved_layer(norms, projections, [1.0, 2.001, 3.5], projections, 1e-4, 1e-5)
    assert longer.layer == 1 and longer.describe().startswith(
        "first moved at hidden state 1 (the output of model.layers[0])"
    )
    turned = first_moved_layer(norms, projections, norms, [[1.0, 0.0], [0.0, 1.0], [1.0, 0.9]], 1e-4, 1e-5)
    assert turned.layer == 2 and turned.cosine < 1 - 1e-5


@functools.lru_cache(maxsize=1)
def _smollm2() -> Subject:
    return Subject(find_card("smollm2-135m-instruct"))


def _hidden_state_differences(subject: Subject) -> list[str]:
    """The model's fingerprints now against the committed CPU snapshot's."""
    recorded = load(snapshot_path(subject), "re-record the CPU snapshots")["observed"]
    prompts = article_inputs()["internals"]["prompts"]
    current = fingerprint_entries([hs.fingerprint(subject.tokenizer, subject.model, p) for p in prompts])
    return [str(d) for d in compare({"hidden_states": recorded["hidden_states"]}, {"hidden_states": current})]


@pytest.mark.parametrize(
    "change, moved",
    [
        ("scaled by 1.01", True),  # a checkpoint or loader that changed one layer (measured: norm +3e-4)
        ("noise of 1e-7 (relative)", False),  # far below float32 rounding of the layer's output (measured 2e-7)
    ],
)
def test_the_fingerprint_names_the_first_layer_that_moved_and_ignores_rounding(change, moved):
    """SmolLM2's model.layers[10] attention output projection changed in place (and put
    back): the snapshot comparison names hidden state 11, not the final logits, and says
    nothing for noise at the level of rounding. (Another thread count, the other harmless
    change, runs the whole snapshot in test_break_table.py.)"""
    subject = _smollm2()
    weight = subject.model.model.layers[10].self_attn.o_proj.weight
    kept = weight.detach().clone()
    try:
        with torch.no_grad():
            if moved:
                weight.mul_(1.01)
            else:
                noise = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
                weight.add_(1e-7 * weight.abs().mean() * noise)
        differences = _hidden_state_differences(subject)
    finally:
        with torch.no_grad():
            weight.copy_(kept)
    if moved:
        assert differences and all(
            "first moved at hidden state 11 (the output of model.layers[10])" in d for d in differences
        ), differences
    else:
        assert differences == [], differences
