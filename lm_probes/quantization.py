"""Quantization probes: how far a quantized model drifted. (What a loaded model really is,
its 4-bit layers and compute dtype, is the subject's own fact: lm_probes/subjects/loaded.py.)

- ``drift``: the quantized model against a full-precision reference of the same
  weights, on the article's prompts: KL divergence of the next-token distributions,
  top-1 agreement, top-10 overlap, greedy tokens until the first divergence, and the
  memory footprint ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lm_probes.maths import kl_divergence, softmax64

if TYPE_CHECKING:
    from lm_probes.generation import Generation

# -------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class PromptDrift:
    """One prompt's next-token distributions, reference against quantized."""

    prompt: str
    kl: float  # KL(reference || quantized) in nats, computed in float64
    top1_reference: int
    top1_quantized: int
    top10_overlap: float  # |top-10 reference ∩ top-10 quantized| / 10
    top_reference: tuple[tuple[int, str, float], ...]  # (id, decoded, p), the 10 most likely
    top_quantized: tuple[tuple[int, str, float], ...]

    @property
    def top1_agrees(self) -> bool:
        return self.top1_reference == self.top1_quantized


@dataclass(frozen=True)
class Drift:
    reference: str  # card names
    quantized: str
    prompts: tuple[PromptDrift, ...]
    greedy_reference: Generation = field(repr=False)
    greedy_quantized: Generation = field(repr=False)
    footprint_reference: int
    footprint_quantized: int

    @property
    def max_kl(self) -> float:
        return max(p.kl for p in self.prompts)

    @property
    def top1_agreement(self) -> float:
        return sum(p.top1_agrees for p in self.prompts) / len(self.prompts)

    @property
    def mean_top10_overlap(self) -> float:
        return float(np.mean([p.top10_overlap for p in self.prompts]))

    @property
    def greedy_agreeing_tokens(self) -> int:
        """New greedy tokens the two models share before the first that differs."""
        a, b = self.greedy_reference.new_ids[0], self.greedy_quantized.new_ids[0]
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    @property
    def footprint_ratio(self) -> float:
        return self.footprint_quantized / self.footprint_reference


def drift_figures(d: Drift) -> dict[str, float]:
    """The drift's figures keyed by the card field that bounds each (expect.drift.<key>:
    max_ an upper bound, min_ a lower one), rounded as they are compared and reported."""
    return {
        "max_kl": round(d.max_kl, 4),
        "min_top1_agreement": round(d.top1_agreement, 4),
        "min_top10_overlap": round(d.mean_top10_overlap, 4),
        "min_greedy_agreeing_tokens": d.greedy_agreeing_tokens,
        "max_footprint_ratio": round(d.footprint_ratio, 4),
    }


def prompt_drift(
    tokenizer: Any, prompt: str, reference_logits: np.ndarray, quantized_logits: np.ndarray, k: int = 10
) -> PromptDrift:
    p, q = softmax64(reference_logits), softmax64(quantized_logits)
    top_p = np.argsort(-p, kind="stable")[:k]
    top_q = np.argsort(-q, kind="stable")[:k]

    def bars(ids: np.ndarray, probs: np.ndarray) -> tuple[tuple[int, str, float], ...]:
        return tuple((int(i), tokenizer.decode([int(i)]), float(probs[i])) for i in ids)

    return PromptDrift(
        prompt=prompt,
        kl=kl_divergence(p, q),
        top1_reference=int(top_p[0]),
        top1_quantized=int(top_q[0]),
        top10_overlap=len(set(top_p.tolist()) & set(top_q.tolist())) / k,
        top_reference=bars(top_p, p),
        top_quantized=bars(top_q, q),
    )
