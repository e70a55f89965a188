"""Batch invariance (D3): whether a prompt decodes the same alone and padded into a batch,
and, where it does not, what the difference comes from (precision, padding)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probes.engine import generate, generate_rows, strip_padding

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class BatchComparison:
    """Greedy ids of a prompt alone and inside a left-padded batch."""

    prompt: str
    alone: tuple[int, ...]
    batched: tuple[int, ...]
    first_difference: int | None  # index into the new tokens, None if equal
    detail: str  # tokens and logits at the first difference

    @property
    def identical(self) -> bool:
        return self.first_difference is None


def batch_invariance(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompt: str,
    others: list[str],
    max_new_tokens: int,
) -> BatchComparison:
    alone = generate(tokenizer, model, prompt, max_new_tokens=max_new_tokens).new_ids[0]
    prompts = [*others, prompt]
    row = len(prompts) - 1
    enc, out, _ = generate_rows(tokenizer, model, prompts, max_new_tokens=max_new_tokens, output_scores=True)
    batched = strip_padding(out.sequences[row, enc.input_ids.shape[1] :].tolist(), tokenizer.eos_token_id)
    first = next((i for i, (a, b) in enumerate(zip(alone, batched)) if a != b), None)
    if first is None and len(alone) != len(batched):
        first = min(len(alone), len(batched))
    detail = ""
    if first is not None and first < len(out.logits):
        scores = out.logits[first][row].float()  # (vocab,) raw logits of our row at that step
        parts = [
            f"{label} chose {ids[first]} {tokenizer.decode([ids[first]])!r} "
            f"(logit in the batch {float(scores[ids[first]]):.4f})"
            for label, ids in (("alone", alone), ("batched", batched))
            if first < len(ids)
        ]
        detail = f"first difference at new token {first}: " + "; ".join(parts)
    return BatchComparison(prompt, alone, batched, first, detail)


@contextmanager
def higher_precision(model: PreTrainedModel) -> Iterator[str]:
    """The model one step more precise for the block, then back as it was (lossless both
    ways): float16/bfloat16 weights and buffers to float32, float32 to float64, and a
    bitsandbytes 4-bit layer's compute dtype to float32 (its packed weights stay). Yields
    the precision name, for messages."""
    import torch

    def target(dtype: torch.dtype) -> torch.dtype:
        return torch.float64 if dtype == torch.float32 else torch.float32

    kept_compute = {}
    for module in model.modules():
        if type(module).__name__ == "Linear4bit":
            kept_compute[module] = module.compute_dtype
            module.compute_dtype = torch.float32
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    tensors = [t for t in tensors if type(t).__name__ != "Params4bit"]
    kept = [(t, t.data) for t in tensors]
    precision = str(target(tensors[0].dtype)).removeprefix("torch.") if tensors else "float32"
    try:
        for t, data in kept:
            t.data = data.to(target(data.dtype))
        yield precision
    finally:
        for t, data in kept:
            t.data = data
        for module, dtype in kept_compute.items():
            module.compute_dtype = dtype


@dataclass(frozen=True)
class BatchDiagnosis:
    """U5: the batch comparison (D3) and, when the prompt's greedy ids differ inside the
    batch, the same comparison one precision step up. If the difference goes away there it
    is rounding (padding changes the order of float sums: transformers#26869, #28732,
    lm-evaluation-harness#3357); if it stays, the batch computes something else (a padding
    mask not applied, positions shifted)."""

    comparison: BatchComparison
    precise: BatchComparison | None = None  # None when there was nothing to diagnose
    precision: str | None = None

    @property
    def verdict(self) -> str:
        if self.comparison.identical:
            return "none"
        assert self.precise is not None
        return "rounding" if self.precise.identical else "real"

    def describe(self) -> str:
        if self.comparison.identical:
            return "the prompt's greedy ids are the same alone and in the batch"
        assert self.precise is not None
        again = "agree" if self.precise.identical else f"still differ ({self.precise.detail})"
        return f"{self.comparison.detail}; in {self.precision}, alone and batched {again}: {self.verdict}"


def diagnose_batch_invariance(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompt: str,
    others: list[str],
    max_new_tokens: int,
) -> BatchDiagnosis:
    comparison = batch_invariance(tokenizer, model, prompt, others, max_new_tokens)
    if comparison.identical:
        return BatchDiagnosis(comparison)
    with higher_precision(model) as precision:
        precise = batch_invariance(tokenizer, model, prompt, others, max_new_tokens)
    return BatchDiagnosis(comparison, precise, precision)
