"""SPEC D1-D9: next-token distribution, temperature, greedy, sampling regimes, top-k, beam."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lm_probes import decoding as dc
from lm_probes import generate_calls, generation
from lm_probes import sampling as sp
from lm_probes.expect import check_at_least, check_equal, check_that
from lm_probes.inputs import article_inputs
from lm_probes.numerics import resolution
from lm_probes.report import plots
from lm_probes.sampling import apply_temperature
from lm_probes.subjects.results import (
    batch_diagnosis,
    beam_against_greedy,
    greedy,
    greedy_first_run,
    greedy_reference,
    next_token,
    sampled,
    temperature_sweep,
    top_k_samples,
)

INPUTS = article_inputs()


def _attach_texts(lm_probes_attach, generation: generation.Generation, summary: str) -> None:
    lm_probes_attach.texts(
        generation.texts, caption=f"{generation.prompt!r} with {generation.settings}", summary=summary
    )


# ------------------------------------------------------------------------- D1, D2


@pytest.mark.observation("D1", "D3")
def test_top_next_token_is_what_greedy_generates_first(lm_probes_model_subject, lm_probes_attach):
    """One forward pass and generate() (KV cache, prompt handling, logits processors)
    agree on the next token: the top of the D1 distribution is greedy's first choice."""
    result = next_token(lm_probes_model_subject)
    lm_probes_attach.png(plots.next_token_bars(result, lm_probes_model_subject.name), name="top-10 next tokens")
    lm_probes_attach.table(
        ["id: token", "p"],
        [[label, f"{p:.4f}"] for label, p in zip(result.labels(), result.top_probs)],
        summary="Next token after the prompt (D1)",
    )
    card = lm_probes_model_subject.card
    first = generate_calls.generate(
        lm_probes_model_subject.tokenizer, lm_probes_model_subject.model, result.prompt, max_new_tokens=1
    )
    check_that(
        card,
        first.prompt_ids == result.input_ids,
        expected=f"generate() reads the forward pass's prompt ids {result.input_ids}",
        obtained=f"generate() got other prompt ids: {first.prompt_ids}",
    )
    chosen = first.new_ids[0][0]
    # ties: any token sharing the top logit is a greedy choice
    tied = {int(i) for i in np.flatnonzero(result.logits == result.logits.max())}
    check_that(
        card,
        chosen in tied,
        expected=f"greedy generate()'s first token is the forward pass's top token, {result.labels()[0]}",
        obtained=f"greedy generate() chose {chosen} {lm_probes_model_subject.tokenizer.decode([chosen])!r}, "
        "but the forward "
        f"pass ranks {result.labels()[:3]} first (p {result.top_probs[:3]})",
    )


@pytest.mark.observation("D1", expects="next_token")
def test_next_token_top1(lm_probes_model_subject):
    card = lm_probes_model_subject.card
    result = next_token(lm_probes_model_subject)
    check_equal(card, "next_token.top1", result.top1_token, note=f"top-10: {result.labels()}")
    if card.has_expectation("next_token.min_top1_prob"):
        check_at_least(card, "next_token.min_top1_prob", round(result.top1_prob, 4))


@pytest.mark.observation("D2")
def test_own_temperature_matches_transformers(lm_probes_model_subject, lm_probes_attach):
    """softmax(z/T) at the article's temperatures (the three panels), by the own
    definition and by transformers' TemperatureLogitsWarper on this model's logits.
    (That a smaller T sharpens and a larger one flattens holds for any logits: a unit
    test of the probe, tests/unit/probe/test_decoding_probe.py.)"""
    from transformers import TemperatureLogitsWarper

    sweep = temperature_sweep(lm_probes_model_subject)
    labels = [f"{i}: {lm_probes_model_subject.tokenizer.decode([i])}" for i in sweep.top_ids]
    lm_probes_attach.png(
        plots.temperature_panels(sweep, labels, f"{lm_probes_model_subject.name}: temperature"),
        name="temperature panels",
    )
    logits = torch.as_tensor(next_token(lm_probes_model_subject).logits)[None, :]  # (1, vocab)
    for t in INPUTS["temperatures"]:
        ours = apply_temperature(logits, t).softmax(-1)
        theirs = TemperatureLogitsWarper(t)(None, logits.clone()).softmax(-1)
        # the same formula in the same dtype: only rounding may differ, at most one unit of
        # the dtype's resolution (probabilities are at most 1; float32: 1.2e-7)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=resolution(ours.dtype))


# ------------------------------------------------------------------------- D3, D4


@pytest.mark.observation("D3", expects="greedy")
@pytest.mark.parametrize("bos", [True, False], ids=["bos", "no-bos"])
def test_greedy_is_identical_across_runs(lm_probes_model_subject, bos, lm_probes_attach):
    result = greedy(lm_probes_model_subject, bos)
    _attach_texts(lm_probes_attach, result, summary=f"Greedy continuations ({'BOS on' if bos else 'BOS off'})")
    odd = next((i for i, ids in enumerate(result.new_ids) if ids != result.new_ids[0]), None)
    check_that(
        lm_probes_model_subject.card,
        odd is None,
        expected=f"{len(result.texts)} greedy runs give the same text",
        obtained=odd and f"greedy run {odd + 1} of {len(result.texts)} differs from run 1",
        note=odd and f"run 1: {result.texts[0]!r}\n  run {odd + 1}: {result.texts[odd]!r}",
    )


@pytest.mark.observation("D3")
@pytest.mark.parametrize("bos", [True, False], ids=["bos", "no-bos"])
def test_greedy_picks_the_most_likely_token(lm_probes_model_subject, bos, lm_probes_attach):
    """Greedy is the argmax: in every run, each new token is the highest raw logit of its
    step. Runs that agree prove nothing by themselves (a sampler with a fixed seed agrees
    too), and an inherited repetition_penalty changes tokens while staying repeatable."""
    result = greedy(lm_probes_model_subject, bos)
    ties = result.ties()
    if ties:
        lm_probes_attach.text(
            "\n".join(f"run {r + 1}, new token {i}: tied top logits {ids}" for r, i, ids in ties), name="greedy ties"
        )
    wrong = result.not_argmax()
    check_that(
        lm_probes_model_subject.card,
        not wrong,
        expected="greedy decoding picks the most likely token at every step",
        obtained=wrong
        and f"greedy decoding ({'BOS on' if bos else 'BOS off'}) picked tokens that are not the most likely "
        f"({len(wrong)} of {sum(map(len, result.new_ids))} steps); first: "
        f"{wrong[0].describe(lm_probes_model_subject.tokenizer)}",
        note=f"settings used: {result.settings}; "
        f"the model's generation_config: {lm_probes_model_subject.model.generation_config.to_diff_dict()}",
    )


@pytest.mark.observation("D3", "D4", expects=("greedy.with_bos_contains", "greedy.without_bos_contains"))
def test_greedy_continuation_contains(lm_probes_model_subject):
    card = lm_probes_model_subject.card
    for bos, field in ((True, "greedy.with_bos_contains"), (False, "greedy.without_bos_contains")):
        if not card.has_expectation(field):
            continue
        text = greedy_first_run(lm_probes_model_subject, bos).texts[0]
        missing = [s for s in card.expected(field) if s not in text]
        check_that(
            card, not missing, field=field, expected=card.expected(field), obtained=text, note=f"missing: {missing}"
        )


@pytest.mark.observation("D4", expects="greedy.bos_changes_continuation")
def test_bos_changes_the_continuation(lm_probes_model_subject):
    bos = lm_probes_model_subject.tokenizer.bos_token_id
    if bos is None:
        pytest.skip("does not apply: the tokenizer has no BOS token, so BOS on and off are the same input")
    with_bos, without = (
        greedy_first_run(lm_probes_model_subject, True),
        greedy_first_run(lm_probes_model_subject, False),
    )
    check_that(
        lm_probes_model_subject.card,
        with_bos.prompt_ids[0] == bos and without.prompt_ids[0] != bos,
        expected=f"the BOS-on run starts with BOS {bos} and the BOS-off run does not",
        obtained=f"{list(with_bos.prompt_ids)} / {list(without.prompt_ids)}",
    )
    check_equal(
        lm_probes_model_subject.card,
        "greedy.bos_changes_continuation",
        with_bos.texts[0] != without.texts[0],
        note=f"BOS on: {with_bos.texts[0]!r}; BOS off: {without.texts[0]!r}",
    )


@pytest.mark.observation("D3", expects="greedy.default_generate_is_greedy")
def test_default_generate_is_greedy(lm_probes_model_subject):
    """The model's generation_config decides what an argument-less generate() does."""
    result = dc.default_decoding(
        lm_probes_model_subject.tokenizer, lm_probes_model_subject.model, INPUTS["greedy"]["prompt"]
    )
    check_equal(
        lm_probes_model_subject.card, "greedy.default_generate_is_greedy", result.greedy, note=str(result.as_dict())
    )


@pytest.mark.observation("D3", expects="greedy.batch_invariant")
def test_greedy_is_batch_invariant(lm_probes_model_subject, lm_probes_attach):
    diagnosis = batch_diagnosis(lm_probes_model_subject)
    if not diagnosis.comparison.identical:
        lm_probes_attach.text(diagnosis.describe(), name="batch difference")
    check_equal(
        lm_probes_model_subject.card,
        "greedy.batch_invariant",
        diagnosis.comparison.identical,
        note=diagnosis.describe(),
    )


@pytest.mark.observation("U5", expects="greedy.batch_difference")
def test_a_batch_difference_is_what_the_card_says(lm_probes_model_subject):
    """When the prompt's greedy ids differ inside a left-padded batch, the same comparison
    one precision step up (float32 for half precision, float64 for float32) says whether it
    is rounding or a real difference; a card records which it expects (none, rounding, real)."""
    diagnosis = batch_diagnosis(lm_probes_model_subject)
    check_equal(lm_probes_model_subject.card, "greedy.batch_difference", diagnosis.verdict, note=diagnosis.describe())


# ------------------------------------------------------------------------- D6-D8


@pytest.mark.observation("D6", expects="sampling.near-greedy")
def test_low_top_p_low_temperature_behaves_like_greedy(lm_probes_model_subject, lm_probes_attach):
    """(top_p 0.2, T 0.2): whenever the top token holds more than 20% of the mass after
    T = 0.2 (nearly always), the nucleus is that one token: sampling *is* greedy.
    Deterministic for a seed; the bound holds for seeds 0-19 (docs/observations.md, "Statistical tests")."""
    samples = sampled(lm_probes_model_subject, "near-greedy")
    _attach_texts(lm_probes_attach, samples, summary="Sampling: top_p 0.2, T 0.2 (D6)")
    reference = greedy_reference(lm_probes_model_subject).texts[0]
    agreement = sum(t == reference for t in samples.texts) / len(samples.texts)
    check_at_least(
        lm_probes_model_subject.card,
        "sampling.near-greedy.min_greedy_agreement",
        agreement,
        note=f"greedy: {reference!r}; samples: {list(samples.texts)}",
    )


@pytest.mark.observation("D7", expects="sampling.warm")
def test_low_top_p_high_temperature_varies_but_keeps_the_answer(lm_probes_model_subject, lm_probes_attach):
    card = lm_probes_model_subject.card
    samples = sampled(lm_probes_model_subject, "warm")
    _attach_texts(lm_probes_attach, samples, summary="Sampling: top_p 0.2, T 1.4 (D7)")
    answer = card.expected("sampling.warm.answer")
    note = f"samples: {list(samples.texts)}"
    check_at_least(
        card,
        "sampling.warm.min_answer_share",
        samples.share_containing(answer),
        note=f"share containing {answer!r}; {note}",
    )
    check_at_least(card, "sampling.warm.min_distinct", samples.distinct, note=note)


@pytest.mark.observation("D8", expects="sampling.hot")
def test_high_top_p_high_temperature_is_diverse(lm_probes_model_subject, lm_probes_attach):
    card = lm_probes_model_subject.card
    samples = sampled(lm_probes_model_subject, "hot")
    _attach_texts(lm_probes_attach, samples, summary="Sampling: top_p 0.9, T 1.4 (D8)")
    check_at_least(card, "sampling.hot.min_distinct", samples.distinct, note=f"samples: {list(samples.texts)}")
    if card.has_expectation("sampling.hot.min_distinct_2"):
        check_at_least(card, "sampling.hot.min_distinct_2", round(samples.distinct_n(2), 4))


# ---------------------------------------------------------------------------- D9


@pytest.mark.observation("D9")
def test_top_k_sampling_draws_only_from_the_k_most_likely(lm_probes_model_subject):
    """Every first sampled token is among the k most likely next tokens: exact, no statistics."""
    spec = INPUTS["top_k_sampling"]
    samples = top_k_samples(lm_probes_model_subject)
    distribution = next_token(lm_probes_model_subject, spec["prompt"])  # the prompt the samples were drawn for
    allowed = sp.kept_ids(sp.top_k_filter(torch.as_tensor(distribution.logits), spec["k"]))
    drawn = {ids[0] for ids in samples.new_ids}
    check_that(
        lm_probes_model_subject.card,
        drawn <= allowed,
        expected=f"top-{spec['k']} sampling draws only from the top {spec['k']} {sorted(allowed)}",
        obtained=f"top-{spec['k']} sampling drew {sorted(drawn - allowed)}, outside the top {spec['k']}",
    )


@pytest.mark.observation("D9", expects="beam_search")
def test_beam_search_is_deterministic_and_beats_greedy(lm_probes_model_subject, lm_probes_attach):
    """num_beams=4 twice: the same hypotheses; four distinct hypotheses (beams were
    used); the best scores at least greedy's sequence log-probability, and by the card's
    margin where it has one. Same length for both (min_new_tokens), no length penalty."""
    spec = INPUTS["beam_search"]
    card, tokenizer, model = (
        lm_probes_model_subject.card,
        lm_probes_model_subject.tokenizer,
        lm_probes_model_subject.model,
    )
    n, beams = spec["max_new_tokens"], spec["num_beams"]
    result = beam_against_greedy(lm_probes_model_subject)
    first, greedy_run, beam_lp, greedy_lp = result.beam, result.greedy, result.beam_logprob, result.greedy_logprob
    second = dc.beam_search(tokenizer, model, spec["prompt"], num_beams=beams, max_new_tokens=n)
    note = f"beam log p {beam_lp:.4f} ({first.texts[0]!r}), greedy log p {greedy_lp:.4f} ({greedy_run.texts[0]!r})"
    lm_probes_attach.text(
        "\n".join(f"beam {i + 1}: {t!r}" for i, t in enumerate(first.texts))
        + f"\nbest log p = {beam_lp:.4f}\ngreedy: {greedy_run.texts[0]!r}  log p = {greedy_lp:.4f}",
        name="beam vs greedy",
    )
    check_that(
        card,
        first.hypotheses == second.hypotheses,
        expected="beam search gives the same hypotheses in two runs",
        obtained=f"beam search differs between runs: {first.texts} vs {second.texts}",
    )
    check_that(
        card,
        first.distinct_hypotheses == beams,
        expected=f"num_beams={beams} returns {beams} distinct hypotheses",
        obtained=f"{first.distinct_hypotheses} distinct hypotheses: the beams were not used",
        note=f"hypotheses: {list(first.texts)}",
    )
    check_equal(card, "beam_search.at_least_greedy_logprob", beam_lp >= greedy_lp - 1e-4, note=note)
    if card.has_expectation("beam_search.min_gain_over_greedy"):
        check_at_least(card, "beam_search.min_gain_over_greedy", round(beam_lp - greedy_lp, 4), note=note)
