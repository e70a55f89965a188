"""Quantization: is the model loaded as the card asks (Q1), and how far did 4-bit
weights move it from the full-precision reference of the same weights (Q2-Q5)?

Q1 reads the layers themselves (bitsandbytes Linear4bit, their quant type and compute
dtype), so a quantization config that an upgrade stops applying fails here and at load.
Q2-Q5 compare with the card's `reference` on the article's prompts; the bounds in the
card were set from measurement (docs/observations.md, "Quantization drift, measured")."""

from __future__ import annotations

import pytest

from lm_probes.expect import check_at_least, check_at_most, check_equal, check_that
from lm_probes.quantization import Drift, drift_figures
from lm_probes.report import plots
from lm_probes.report.html import Cell
from lm_probes.subjects.drift import drift, quantization


@pytest.mark.observation("Q1", expects="quantization")
def test_layers_are_quantized_as_the_card_says(lm_probes_model_subject, lm_probes_attach):
    """The layers as loaded, and the dtype their kernels computed in, read after a forward:
    on a CPU with AVX512-BF16, bitsandbytes computes 4-bit layers in bfloat16 whatever
    bnb_4bit_compute_dtype asks. A card states what it expects per machine class."""
    card = lm_probes_model_subject.card
    loaded = quantization(lm_probes_model_subject).as_dict()
    numerics, machine_class = lm_probes_model_subject.numerics, lm_probes_model_subject.machine_class
    lm_probes_attach.table(
        ["machine class", "compute dtype asked", "computed in", "kernel path"],
        [[machine_class, loaded["compute_dtype"], loaded["computed_dtype"], numerics.compute_note() or "-"]],
        summary="Quantization: what the kernels computed in (Q1)",
    )
    for key in card.expected("quantization"):
        if key == "computed_dtype":
            by_class = card.expected("quantization.computed_dtype")
            expected = by_class.get(machine_class, by_class.get("default"))
            check_that(
                card,
                loaded["computed_dtype"] == expected,
                field="quantization.computed_dtype",
                expected=f"{expected} on machine class {machine_class}"
                + ("" if machine_class in by_class else " (the card's default)"),
                obtained=numerics.compute_note(),
                note=f"{numerics.describe()}. If this machine class is meant to compute so, add "
                f"'{machine_class}: {loaded['computed_dtype']}' under expect.quantization.computed_dtype",
            )
            continue
        check_equal(card, f"quantization.{key}", loaded[key], note=f"loaded model: {loaded}")


def _attach_drift(lm_probes_attach, d: Drift, tokenizer) -> None:
    """The per-prompt drift table, then the two greedy texts split where they part."""
    lm_probes_attach.table(
        ["prompt", "KL nats", "reference top-1", "quantized top-1", "same top-1", "top-10 overlap"],
        [
            [
                Cell(repr(p.prompt), code=True),
                f"{p.kl:.4f}",
                f"{p.top_reference[0][1]!r} {p.top_reference[0][2]:.3f}",
                f"{p.top_quantized[0][1]!r} {p.top_quantized[0][2]:.3f}",
                "yes" if p.top1_agrees else Cell("no", strong=True),
                f"{p.top10_overlap:.0%}",
            ]
            for p in d.prompts
        ],
        caption=(
            f"{d.quantized} against its reference {d.reference}: worst KL {d.max_kl:.4f} nats, "
            f"top-1 agreement {d.top1_agreement:.0%}, mean top-10 overlap {d.mean_top10_overlap:.0%}, "
            f"greedy tokens until the first difference {d.greedy_agreeing_tokens}, memory footprint "
            f"{d.footprint_quantized / 1e6:.0f} MB / {d.footprint_reference / 1e6:.0f} MB = {d.footprint_ratio:.2f}"
        ),
        summary="Quantization drift",
    )
    n = d.greedy_agreeing_tokens
    shared = tokenizer.decode(list(d.greedy_reference.new_ids[0][:n]))
    lm_probes_attach.table(
        ["card", "shared", "from the first difference"],
        [
            [
                name,
                Cell(repr(shared), code=True),
                Cell(repr(tokenizer.decode(list(g.new_ids[0][n:]))), code=True, highlight=True),
            ]
            for name, g in ((d.reference, d.greedy_reference), (d.quantized, d.greedy_quantized))
        ],
        caption=f"Greedy after {d.greedy_reference.prompt!r}: the first {n} new tokens agree.",
        summary="Quantization drift",
    )


@pytest.mark.observation("Q2", expects="drift.max_kl")
def test_next_token_distributions_stay_close_to_the_reference(
    lm_probes_model_subject, lm_probes_reference_subject, lm_probes_attach
):
    d = drift(lm_probes_model_subject, lm_probes_reference_subject)
    _attach_drift(lm_probes_attach, d, lm_probes_model_subject.tokenizer)
    lm_probes_attach.png(
        plots.drift_bars(d.prompts[0], lm_probes_reference_subject.name, lm_probes_model_subject.name),
        name="top-10 next tokens: reference and quantized",
        summary="Quantization drift",
    )
    worst = max(d.prompts, key=lambda p: p.kl)
    check_at_most(
        lm_probes_model_subject.card, "drift.max_kl", drift_figures(d)["max_kl"], note=f"worst prompt: {worst.prompt!r}"
    )


@pytest.mark.observation("Q3", expects="drift.min_top1_agreement")
def test_most_likely_next_token_agrees_with_the_reference(lm_probes_model_subject, lm_probes_reference_subject):
    d = drift(lm_probes_model_subject, lm_probes_reference_subject)
    differing = [(p.prompt, p.top_reference[0][1], p.top_quantized[0][1]) for p in d.prompts if not p.top1_agrees]
    check_at_least(
        lm_probes_model_subject.card,
        "drift.min_top1_agreement",
        drift_figures(d)["min_top1_agreement"],
        note=f"(prompt, reference, quantized) that differ: {differing}",
    )


@pytest.mark.observation("Q3", expects="drift.min_top10_overlap")
def test_top10_next_tokens_overlap_the_reference(lm_probes_model_subject, lm_probes_reference_subject):
    d = drift(lm_probes_model_subject, lm_probes_reference_subject)
    per_prompt = {p.prompt: p.top10_overlap for p in d.prompts}
    check_at_least(
        lm_probes_model_subject.card,
        "drift.min_top10_overlap",
        drift_figures(d)["min_top10_overlap"],
        note=f"per prompt: {per_prompt}",
    )


@pytest.mark.observation("Q4", expects="drift.min_greedy_agreeing_tokens")
def test_greedy_follows_the_reference_for_the_first_tokens(lm_probes_model_subject, lm_probes_reference_subject):
    d = drift(lm_probes_model_subject, lm_probes_reference_subject)
    check_at_least(
        lm_probes_model_subject.card,
        "drift.min_greedy_agreeing_tokens",
        drift_figures(d)["min_greedy_agreeing_tokens"],
        note=f"reference: {d.greedy_reference.texts[0]!r}\n  quantized: {d.greedy_quantized.texts[0]!r}",
    )


@pytest.mark.observation("Q5", expects="drift.max_footprint_ratio")
def test_memory_footprint_shrinks_against_the_reference(lm_probes_model_subject, lm_probes_reference_subject):
    d = drift(lm_probes_model_subject, lm_probes_reference_subject)
    check_at_most(
        lm_probes_model_subject.card,
        "drift.max_footprint_ratio",
        drift_figures(d)["max_footprint_ratio"],
        note=f"{d.footprint_quantized} bytes against the reference's {d.footprint_reference}",
    )
