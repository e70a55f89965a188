"""Attention back-ends agree (U4): eager and sdpa give the same model.

transformers picks an attention implementation per model and device (eager, sdpa,
flash attention, flex); which one a release or a machine picks changes, and with it,
quietly, the numbers. This probe runs the same inputs under each back-end and compares:
the next-token distributions of the probe prompts (single prompts, and the first prompt
inside a left-padded batch, where back-ends differ in how they mask padding) and the
greedy tokens of the first prompt, single and batched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lm_probes import generate_calls
from lm_probes.maths import softmax64

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@contextmanager
def attention_backend(model: PreTrainedModel, name: str) -> Iterator[None]:
    """Run the block with the model's attention set to ``name``, then set it back."""
    original = model.config._attn_implementation
    switch = getattr(model, "set_attn_implementation", None) or _config_switch(model)
    switch(name)
    try:
        yield
    finally:
        switch(original)


def _config_switch(model: PreTrainedModel):
    """Before set_attn_implementation (transformers < 4.54), from 4.48 on: every attention
    layer looks its function up by ``config._attn_implementation`` at each forward, so setting
    it switches the backend. Earlier releases fix the attention class at load: no switch."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__).release < (4, 48):
        raise AttentionSwitchMissing(
            f"transformers {transformers.__version__} fixes the attention class when the model loads: the backends "
            "cannot be compared at run time (4.48 and later can)"
        )

    def switch(name: str) -> None:
        model.config._attn_implementation = name

    return switch


class AttentionSwitchMissing(RuntimeError):
    """The installed transformers cannot switch attention backends on a loaded model."""


@dataclass(frozen=True)
class BackendRun:
    backend: str
    probs: np.ndarray  # (prompts, vocab) float64 next-token distributions, one prompt per row
    batch_probs: np.ndarray  # (vocab,) the first prompt's, inside the left-padded batch
    greedy: tuple[int, ...]  # greedy new ids of the first prompt, alone
    batch_greedy: tuple[int, ...]  # ... and inside the batch


def backend_run(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    backend: str,
    prompts: list[str],
    others: list[str],
    max_new_tokens: int,
) -> BackendRun:
    """The probe inputs under one attention back-end."""
    with attention_backend(model, backend):
        single = np.stack([softmax64(generate_calls.next_token_logits_many(tokenizer, model, [p])[0]) for p in prompts])
        batch = softmax64(generate_calls.next_token_logits_many(tokenizer, model, [prompts[0], *others])[0])
        alone = generate_calls.generate(tokenizer, model, prompts[0], max_new_tokens=max_new_tokens)
        batched = generate_calls.generate_many(tokenizer, model, [prompts[0], *others], max_new_tokens=max_new_tokens)[
            0
        ]
    return BackendRun(backend, single, batch, alone.new_ids[0], batched.new_ids[0])


@dataclass(frozen=True)
class BackendAgreement:
    reference: BackendRun
    other: BackendRun
    prompts: tuple[str, ...]

    @property
    def max_prob_diff(self) -> float:
        """Largest |p_reference - p_other| over every token of every prompt, single and batched."""
        single = np.abs(self.reference.probs - self.other.probs).max()
        batched = np.abs(self.reference.batch_probs - self.other.batch_probs).max()
        return float(max(single, batched))

    @property
    def top1_agrees(self) -> bool:
        ref, other = self.reference, self.other
        return bool(
            (ref.probs.argmax(-1) == other.probs.argmax(-1)).all()
            and ref.batch_probs.argmax() == other.batch_probs.argmax()
        )

    @property
    def greedy_agrees(self) -> bool:
        return self.reference.greedy == self.other.greedy and self.reference.batch_greedy == self.other.batch_greedy

    def describe(self, tokenizer: PreTrainedTokenizerBase) -> str:
        ref, other = self.reference, self.other
        lines = [f"{ref.backend} vs {other.backend}: max |dp| {self.max_prob_diff:.3g}"]
        for label, a, b in (("alone", ref.greedy, other.greedy), ("batched", ref.batch_greedy, other.batch_greedy)):
            if a != b:
                at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                lines.append(
                    f"greedy {label} parts at new token {at}: {ref.backend} {tokenizer.decode(list(a))!r}, "
                    f"{other.backend} {tokenizer.decode(list(b))!r}"
                )
        return "; ".join(lines)


def compare_backends(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    backends: tuple[str, str],
    prompts: list[str],
    others: list[str],
    max_new_tokens: int,
) -> BackendAgreement:
    reference, other = (backend_run(tokenizer, model, b, prompts, others, max_new_tokens) for b in backends)
    return BackendAgreement(reference, other, tuple(prompts))
