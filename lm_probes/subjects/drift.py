"""A quantized subject's results against its full-precision reference (Q1-Q5), computed once
per session and shared as results.py's are: the next-token drift over the article's prompts,
the greedy texts, the footprints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lm_probes import generate_calls, generation
from lm_probes import quantization as qz
from lm_probes.inputs import article_inputs
from lm_probes.subjects.memo import RESULTS

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


def quantization(subject: Subject) -> qz.QuantizationInfo:
    """What the loaded model's layers are (read once, at load)."""
    return subject.quantization


def drift_prompts() -> list[str]:
    """The article's prompts: the next-token prompt, the knowledge questions as asked,
    and the story openings."""
    inputs = article_inputs()
    return [inputs["next_token_prompt"], *(q["question"] for q in inputs["knowledge"]), *inputs["creative"]["openings"]]


DRIFT_GREEDY_TOKENS = 12  # enough to see where greedy first differs (SmolLM2 NF4: after 8)


def drift_greedy(subject: Subject) -> generation.Generation:
    """The article's greedy prompt, one call, DRIFT_GREEDY_TOKENS new tokens."""
    prompt = article_inputs()["greedy"]["prompt"]
    return RESULTS.get(
        subject,
        ("drift-greedy", prompt),
        lambda: generate_calls.generate(subject.tokenizer, subject.model, prompt, max_new_tokens=DRIFT_GREEDY_TOKENS),
    )


def drift(subject: Subject, reference: Subject) -> qz.Drift:
    """``subject`` (quantized) against ``reference`` (full precision, same weights).

    The next-token logits of all prompts come from one batched forward pass per model
    (the reference's is cached, so the break tests recompute only the quantized side)."""

    def compute() -> qz.Drift:
        prompts = drift_prompts()
        reference_logits = RESULTS.get(
            reference,
            ("next_token_many", tuple(prompts)),
            lambda: generate_calls.next_token_logits_many(reference.tokenizer, reference.model, prompts),
        )
        quantized_logits = generate_calls.next_token_logits_many(subject.tokenizer, subject.model, prompts)
        per_prompt = tuple(
            qz.prompt_drift(subject.tokenizer, prompt, ref, quant)
            for prompt, ref, quant in zip(prompts, reference_logits, quantized_logits)
        )
        return qz.Drift(
            reference=reference.name,
            quantized=subject.name,
            prompts=per_prompt,
            greedy_reference=drift_greedy(reference),
            greedy_quantized=drift_greedy(subject),
            footprint_reference=quantization(reference).footprint_bytes,
            footprint_quantized=quantization(subject).footprint_bytes,
        )

    return RESULTS.get(subject, ("drift", reference.name), compute)
