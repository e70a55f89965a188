"""U1-U4 probes (issue 13) on hand-made inputs and on SmolLM2's loaded model: what each
catches, and what it lets pass. (The library and model-folder breaks of U1, U2 and U4
are rows of test_break_table.py.)"""

from __future__ import annotations

import functools

import pytest
import torch

from probes import batching
from probes import hidden_states as hs
from probes import tokenizer as tk
from probes.cards.card import find_card
from probes.inputs import article_inputs
from probes.maths import first_moved_layer
from probes.snapshots.compare import compare
from probes.snapshots.observe import fingerprint_entries
from probes.snapshots.record import load, snapshot_path
from probes.subjects.subject import Subject
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


# ------------------------------------------------------------------------------ U5


def _batched_rows_rounded(subject: Subject, scale: float = 1e5) -> Subject:
    """Logits of batched calls (more than one row) off by scale x the dtype's epsilon: a
    difference that shrinks with precision, as a padded batch's reordered float sums do
    (float32: 1.2e-2, enough to flip tiny-mistral's near-flat choices; float64: 2e-11)."""
    noise = torch.Generator().manual_seed(0)

    def rounded(module, inputs, out):
        if out.shape[0] == 1:
            return out
        return out + torch.finfo(out.dtype).eps * scale * torch.randn(out.shape, generator=noise).to(out.dtype)

    subject.model.lm_head.register_forward_hook(rounded)
    return subject


def test_the_diagnosis_tells_rounding_from_a_real_difference(monkeypatch):
    """Rounding: batched logits off by an amount that scales with the dtype's epsilon; gone
    in float64, so "rounding". Real: the padding mask dropped (padded rows attend to their
    padding, as a masking regression would have it); still there in float64, so "real"."""
    from probes import batching
    from tests.unit.break_patches import padding_mask_ignored
    from tests.unit.conftest import tiny

    spec = article_inputs()["batch_invariance"]

    def diagnose(subject: Subject) -> batching.BatchDiagnosis:
        return batching.diagnose_batch_invariance(
            subject.tokenizer, subject.model, spec["prompt"], spec["others"], spec["max_new_tokens"]
        )

    assert diagnose(tiny()).verdict == "none"
    rounding = diagnose(_batched_rows_rounded(tiny()))
    assert (rounding.verdict, rounding.precision) == ("rounding", "float64"), rounding.describe()
    padding_mask_ignored(monkeypatch)
    real = diagnose(tiny())
    assert real.verdict == "real", real.describe()
    assert "in float64, alone and batched still differ" in real.describe()


def test_higher_precision_is_undone_bit_for_bit():
    from tests.unit.conftest import tiny

    model = tiny().model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with batching.higher_precision(model) as precision:
        assert precision == "float64" and model(torch.tensor([[1, 5, 9]])).logits.dtype == torch.float64
    assert all(torch.equal(before[name], p) and p.dtype == torch.float32 for name, p in model.named_parameters())


def test_higher_precision_widens_one_module_at_a_time_and_computes_as_a_widened_copy():
    """U5's diagnosis holds the model plus one module's widened weights, not a float64 copy
    of it all (a 1.7B float32 model: 13.7 GB more), and computes exactly what a wholly
    widened copy computes. Widening everything at once (the old way) fails the first
    assertion; widening only some modules fails the second."""
    from tests.unit.conftest import tiny

    model = tiny().model
    ids = torch.tensor([[1, 5, 9, 200, 7]])
    with torch.no_grad():
        expected = tiny().model.to(torch.float64)(ids).logits  # the same seeded weights, all widened
    widest = []

    def widened_bytes(*_: object) -> None:
        widest.append(sum(p.numel() * 8 for p in model.parameters() if p.dtype == torch.float64))

    hooks = [m.register_forward_hook(widened_bytes) for m in model.modules() if not list(m.children())]
    one_module = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()) * 8
    with batching.higher_precision(model), torch.no_grad():
        found = model(ids).logits
    for hook in hooks:
        hook.remove()
    assert 0 < max(widest) <= one_module < sum(p.numel() * 8 for p in model.parameters())
    assert found.dtype == torch.float64 and torch.equal(found, expected)
