"""lm_probes/batching.py (U5): batch invariance and its diagnosis, rounding told from a real
difference, and the higher-precision rerun undone bit for bit (moved from
test_internals_probe.py, issue 36: a test file per module)."""

from __future__ import annotations

import torch

from lm_probes import batching
from lm_probes.inputs import article_inputs
from lm_probes.subjects.subject import Subject


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
    from lm_probes import batching
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
