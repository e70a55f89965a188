"""SPEC D1-D9: next-token distribution, temperature, greedy, sampling regimes, top-k, beam."""

from __future__ import annotations

import html

import numpy as np
import pytest
import torch

from probes import decoding as dc
from probes import plots
from probes.expect import check_at_least, check_equal, mismatch_message
from probes.inputs import article_inputs
from probes.observations import greedy, greedy_reference, next_token, sampled, temperature_sweep
from probes.sampling import apply_temperature

INPUTS = article_inputs()


def _texts_html(generation: dc.Generation) -> str:
    rows = "".join(f"<li><code>{html.escape(repr(t))}</code></li>" for t in generation.texts)
    return f"<p>{html.escape(repr(generation.prompt))} with {html.escape(str(generation.settings))}</p><ol>{rows}</ol>"


# ------------------------------------------------------------------------- D1, D2


@pytest.mark.observation("D1")
def test_next_token_distribution(model_subject, attach):
    """softmax of the last position's logits: a distribution, and its top-10 in order."""
    result = next_token(model_subject)
    attach.png(plots.next_token_bars(result, model_subject.name), name="top-10 next tokens")
    attach.html(
        "<table border='1' cellpadding='3' style='border-collapse:collapse'><tr><th>id: token</th><th>p</th></tr>"
        + "".join(f"<tr><td>{html.escape(l)}</td><td>{p:.4f}</td></tr>" for l, p in zip(result.labels(), result.top_probs))
        + "</table>",
        summary="Next token after the prompt (D1)",
    )
    probs = torch.as_tensor(result.logits, dtype=torch.float64).softmax(-1)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-9)
    assert list(result.top_probs) == sorted(result.top_probs, reverse=True)
    assert result.top_probs[0] == pytest.approx(float(probs.max()), rel=1e-5)  # float32 vs float64 softmax
    assert result.top_ids[0] == int(probs.argmax())


@pytest.mark.observation("D1", expects="next_token")
def test_next_token_top1(model_subject):
    card = model_subject.card
    result = next_token(model_subject)
    check_equal(card, "next_token.top1", result.top1_token, note=f"top-10: {result.labels()}")
    if card.has_expectation("next_token.min_top1_prob"):
        check_at_least(card, "next_token.min_top1_prob", round(result.top1_prob, 4))


@pytest.mark.observation("D2")
def test_temperature_sharpens_and_flattens(model_subject, attach):
    """softmax(z/T): entropy strictly increases with T, the top-1 token never changes,
    and the largest probability falls as T rises (towards one-hot as T -> 0)."""
    result = next_token(model_subject)
    temperatures = INPUTS["temperatures"]
    sweep = temperature_sweep(model_subject)
    labels = [f"{i}: {model_subject.tokenizer.decode([i])}" for i in sweep.top_ids]
    attach.png(plots.temperature_panels(sweep, labels, f"{model_subject.name}: temperature"), name="temperature panels")
    entropies = sweep.entropies
    assert all(a < b for a, b in zip(entropies, entropies[1:])), f"entropy not increasing with T {temperatures}: {entropies}"
    assert len(set(sweep.top1_ids)) == 1, f"top-1 changed with temperature: {dict(zip(temperatures, sweep.top1_ids))}"
    assert all(a > b for a, b in zip(sweep.max_probs, sweep.max_probs[1:])), f"max prob not falling: {sweep.max_probs}"
    cold = dc.temperature_sweep(result.logits, [0.01], k=1)
    margin = np.sort(result.logits)[-1] - np.sort(result.logits)[-2]
    if margin > 0.1:  # with a clear winner, T = 0.01 is one-hot up to exp(-margin / 0.01) < 5e-5
        assert cold.max_probs[0] > 0.999, f"T=0.01 is not near one-hot: max p = {cold.max_probs[0]}"


@pytest.mark.observation("D2")
def test_own_temperature_matches_transformers(model_subject):
    from transformers import TemperatureLogitsWarper

    logits = torch.as_tensor(next_token(model_subject).logits)[None, :]  # (1, vocab)
    for t in INPUTS["temperatures"]:
        ours = apply_temperature(logits, t).softmax(-1)
        theirs = TemperatureLogitsWarper(t)(None, logits.clone()).softmax(-1)
        # same formula in float32: only rounding may differ
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


# ------------------------------------------------------------------------- D3, D4


@pytest.mark.observation("D3", expects="greedy")
@pytest.mark.parametrize("bos", [True, False], ids=["bos", "no-bos"])
def test_greedy_is_identical_across_runs(model_subject, bos, attach):
    result = greedy(model_subject, bos)
    attach.html(_texts_html(result), summary=f"Greedy continuations ({'BOS on' if bos else 'BOS off'})")
    if not result.all_identical:
        first = result.new_ids[0]
        odd = next(i for i, ids in enumerate(result.new_ids) if ids != first)
        pytest.fail(
            f"greedy run {odd + 1} of {len(result.texts)} differs from run 1:\n"
            f"  run 1: {result.texts[0]!r}\n  run {odd + 1}: {result.texts[odd]!r}",
            pytrace=False,
        )


@pytest.mark.observation("D3", "D4", expects="greedy.with_bos_contains")
def test_greedy_continuation_contains(model_subject):
    card = model_subject.card
    for bos, field in ((True, "greedy.with_bos_contains"), (False, "greedy.without_bos_contains")):
        if not card.has_expectation(field):
            continue
        text = greedy(model_subject, bos).texts[0]
        missing = [s for s in card.expected(field) if s not in text]
        assert not missing, mismatch_message(card, field, card.expected(field), text, note=f"missing: {missing}")


@pytest.mark.observation("D4", expects="greedy.bos_changes_continuation")
def test_bos_changes_the_continuation(model_subject):
    with_bos, without = greedy(model_subject, True), greedy(model_subject, False)
    check_equal(
        model_subject.card, "greedy.bos_changes_continuation", with_bos.texts[0] != without.texts[0],
        note=f"BOS on: {with_bos.texts[0]!r}; BOS off: {without.texts[0]!r}",
    )


@pytest.mark.observation("D3", expects="greedy.default_generate_is_greedy")
def test_default_generate_is_greedy(model_subject):
    """The model's generation_config decides what an argument-less generate() does."""
    result = dc.default_decoding(model_subject.tokenizer, model_subject.model, INPUTS["greedy"]["prompt"])
    check_equal(model_subject.card, "greedy.default_generate_is_greedy", result.greedy, note=str(result.as_dict()))


@pytest.mark.observation("D3", expects="greedy.batch_invariant")
def test_greedy_is_batch_invariant(model_subject, attach):
    spec = INPUTS["batch_invariance"]
    result = dc.batch_invariance(
        model_subject.tokenizer, model_subject.model, spec["prompt"], spec["others"], spec["max_new_tokens"]
    )
    if result.detail:
        attach.text(result.detail, name="batch difference")
    check_equal(model_subject.card, "greedy.batch_invariant", result.identical, note=result.detail)


# ------------------------------------------------------------------------- D6-D8


@pytest.mark.observation("D6", expects="sampling.near-greedy")
def test_low_top_p_low_temperature_behaves_like_greedy(model_subject, attach):
    """(top_p 0.2, T 0.2): whenever the top token holds more than 20% of the mass after
    T = 0.2 (nearly always), the nucleus is that one token: sampling *is* greedy.
    Deterministic for a seed; the bound holds for seeds 0-19 (see README)."""
    samples = sampled(model_subject, "near-greedy")
    attach.html(_texts_html(samples), summary="Sampling: top_p 0.2, T 0.2 (D6)")
    reference = greedy_reference(model_subject).texts[0]
    agreement = sum(t == reference for t in samples.texts) / len(samples.texts)
    check_at_least(
        model_subject.card, "sampling.near-greedy.min_greedy_agreement", agreement,
        note=f"greedy: {reference!r}; samples: {list(samples.texts)}",
    )


@pytest.mark.observation("D7", expects="sampling.warm")
def test_low_top_p_high_temperature_varies_but_keeps_the_answer(model_subject, attach):
    card = model_subject.card
    samples = sampled(model_subject, "warm")
    attach.html(_texts_html(samples), summary="Sampling: top_p 0.2, T 1.4 (D7)")
    answer = card.expected("sampling.warm.answer")
    note = f"samples: {list(samples.texts)}"
    check_at_least(card, "sampling.warm.min_answer_share", samples.share_containing(answer), note=f"share containing {answer!r}; {note}")
    check_at_least(card, "sampling.warm.min_distinct", samples.distinct, note=note)


@pytest.mark.observation("D8", expects="sampling.hot")
def test_high_top_p_high_temperature_is_diverse(model_subject, attach):
    card = model_subject.card
    samples = sampled(model_subject, "hot")
    attach.html(_texts_html(samples), summary="Sampling: top_p 0.9, T 1.4 (D8)")
    check_at_least(card, "sampling.hot.min_distinct", samples.distinct, note=f"samples: {list(samples.texts)}")
    if card.has_expectation("sampling.hot.min_distinct_2"):
        check_at_least(card, "sampling.hot.min_distinct_2", round(samples.distinct_n(2), 4))


# ---------------------------------------------------------------------------- D9


@pytest.mark.observation("D9")
def test_top_k_sampling_draws_only_from_the_k_most_likely(model_subject):
    """Every first sampled token is among the k most likely next tokens: exact, no statistics."""
    spec = INPUTS["top_k_sampling"]
    samples = dc.generate(
        model_subject.tokenizer, model_subject.model, spec["prompt"], max_new_tokens=1,
        runs=spec["samples"], do_sample=True, top_k=spec["k"], top_p=1.0, temperature=1.0, seed=model_subject.seed,
    )
    logits = torch.as_tensor(next_token(model_subject).logits)
    kth = torch.topk(logits, spec["k"]).values[-1]
    allowed = set(torch.nonzero(logits >= kth).flatten().tolist())
    drawn = {ids[0] for ids in samples.new_ids}
    assert drawn <= allowed, f"top-{spec['k']} sampling drew {drawn - allowed}, outside the top {spec['k']} {allowed}"


@pytest.mark.observation("D9", expects="beam_search")
def test_beam_search_is_deterministic_and_scores_at_least_greedy(model_subject, attach):
    spec = INPUTS["beam_search"]
    tokenizer, model = model_subject.tokenizer, model_subject.model
    n = spec["max_new_tokens"]
    # Same length for both (min_new_tokens) and no length normalisation, so the
    # sequence log-probabilities compare like for like.
    beam_kwargs = dict(max_new_tokens=n, min_new_tokens=n, num_beams=spec["num_beams"], length_penalty=0.0)
    first = dc.generate(tokenizer, model, spec["prompt"], **beam_kwargs)
    second = dc.generate(tokenizer, model, spec["prompt"], **beam_kwargs)
    greedy_run = dc.generate(tokenizer, model, spec["prompt"], max_new_tokens=n, min_new_tokens=n)
    beam_lp = dc.continuation_logprob(model, first.prompt_ids, first.new_ids[0])
    greedy_lp = dc.continuation_logprob(model, greedy_run.prompt_ids, greedy_run.new_ids[0])
    attach.text(
        f"beam ({spec['num_beams']}): {first.texts[0]!r}  log p = {beam_lp:.4f}\n"
        f"greedy: {greedy_run.texts[0]!r}  log p = {greedy_lp:.4f}",
        name="beam vs greedy",
    )
    assert first.new_ids == second.new_ids, f"beam search differs between runs: {first.texts} vs {second.texts}"
    check_equal(
        model_subject.card, "beam_search.at_least_greedy_logprob", beam_lp >= greedy_lp - 1e-4,
        note=f"beam log p {beam_lp:.4f} ({first.texts[0]!r}), greedy log p {greedy_lp:.4f} ({greedy_run.texts[0]!r})",
    )
