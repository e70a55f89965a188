"""Batch invariance (D3): whether a prompt decodes the same alone and padded into a batch,
and, where it does not, what the difference comes from (precision, padding)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lm_probes.generate_calls import generate, generate_rows, strip_padding

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
    the precision name, for messages.

    A module's weights are widened only while that module runs (a forward pre-hook
    widens them, a forward hook puts the originals back), so the process holds the model
    plus one module's widened weights, never a second copy of the whole model: a 1.7B
    float32 model would need 13.7 GB more in float64. Each op computes in exactly the
    dtypes a wholly widened model would give it, so the tokens and logits are the same
    (tests/unit/probe/test_internals_probe.py). Buffers (rotary frequencies) are small and
    widened for the whole block."""
    import torch

    def target(dtype: torch.dtype) -> torch.dtype:
        return torch.float64 if dtype == torch.float32 else torch.float32

    def widenable(t: torch.Tensor) -> bool:
        return t.is_floating_point() and type(t).__name__ != "Params4bit"

    kept_compute = {}
    for module in model.modules():
        if type(module).__name__ == "Linear4bit":
            kept_compute[module] = module.compute_dtype
            module.compute_dtype = torch.float32
    weights = [t for t in model.parameters() if widenable(t)]
    buffers = [(t, t.data) for t in model.buffers() if widenable(t)]
    precision = str(target((weights or [b for b, _ in buffers] or [torch.zeros(())])[0].dtype)).removeprefix("torch.")
    originals: dict[int, torch.Tensor] = {}  # id(parameter) -> its own data while widened

    def widen(module: torch.nn.Module, *_: object) -> None:
        for t in module.parameters(recurse=False):
            if widenable(t) and id(t) not in originals:
                originals[id(t)] = t.data
                t.data = t.data.to(target(t.data.dtype))

    def restore(module: torch.nn.Module, *_: object) -> None:
        for t in module.parameters(recurse=False):
            if id(t) in originals:
                t.data = originals.pop(id(t))

    holders = [m for m in model.modules() if any(widenable(t) for t in m.parameters(recurse=False))]
    hooks = [m.register_forward_pre_hook(widen) for m in holders] + [m.register_forward_hook(restore) for m in holders]
    try:
        for t, data in buffers:
            t.data = data.to(target(data.dtype))
        yield precision
    finally:
        for hook in hooks:
            hook.remove()
        by_id = {id(t): t for t in weights}
        for key, data in list(originals.items()):  # a forward that raised left these widened
            by_id[key].data = data
        for t, data in buffers:
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
