"""lm_probes/attention.py (U4) on the tiny model: two back-ends that compute the same attention
agree, one that computes it differently is caught with where greedy parts, and the model's
own back-end is put back, also when the block fails (issue 36: a test file per module)."""

from __future__ import annotations

import pytest

from lm_probes import attention
from tests.unit.conftest import tiny

PROMPTS = ["The capital of Japan is", "Hello"]
OTHERS = ["A longer prompt, so that the first one is left-padded in the batch"]


def test_eager_and_sdpa_agree_and_the_models_backend_is_put_back():
    subject = tiny()
    original = subject.model.config._attn_implementation  # what transformers picked on load
    agreement = attention.compare_backends(subject.tokenizer, subject.model, ("eager", "sdpa"), PROMPTS, OTHERS, 4)
    # measured 9.9e-12 here: float32 rounding of two exact computations; the card allows 1e-4
    assert agreement.max_prob_diff < 1e-9
    assert agreement.top1_agrees and agreement.greedy_agrees
    assert subject.model.config._attn_implementation == original


def test_a_backend_that_computes_attention_differently_is_caught_where_greedy_parts():
    """The break: a registered back-end (transformers' AttentionInterface, as a kernel
    package registers one) that scales sdpa's output, imitating a kernel change."""
    from transformers import AttentionInterface

    def scaled_sdpa(module, query, key, value, attention_mask, **kwargs):
        output, weights = AttentionInterface._global_mapping["sdpa"](
            module, query, key, value, attention_mask, **kwargs
        )
        return output * 1.5, weights

    AttentionInterface.register("lm_probes_scaled_sdpa", scaled_sdpa)
    try:
        subject = tiny()
        broken = attention.compare_backends(
            subject.tokenizer, subject.model, ("eager", "lm_probes_scaled_sdpa"), PROMPTS, OTHERS, 4
        )
    finally:
        del AttentionInterface._global_mapping["lm_probes_scaled_sdpa"]
    assert not broken.top1_agrees and not broken.greedy_agrees
    assert broken.max_prob_diff > 1e-6  # 1.4e-5 measured: the tiny model's distribution is flat (p ~ 3e-5)
    said = broken.describe(subject.tokenizer)
    assert said.startswith("eager vs lm_probes_scaled_sdpa: max |dp| ") and "greedy alone parts at new token" in said


def test_the_backend_is_put_back_when_the_block_fails():
    subject = tiny()
    original = subject.model.config._attn_implementation
    with pytest.raises(RuntimeError, match="inside"):
        with attention.attention_backend(subject.model, "eager"):
            assert subject.model.config._attn_implementation == "eager"
            raise RuntimeError("inside")
    assert subject.model.config._attn_implementation == original
