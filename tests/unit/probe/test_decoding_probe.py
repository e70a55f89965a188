"""Decoding helpers on the tiny random Mistral and on hand-made generations."""

from __future__ import annotations

import pytest

from lm_probes import decoding as dc
from lm_probes import generate_calls, generation
from lm_probes.cards.card import find_card
from lm_probes.subjects.subject import Subject


def make(new_ids, texts=None):
    return generation.Generation(
        "p", {}, (1,), tuple(tuple(r) for r in new_ids), tuple(texts or [str(r) for r in new_ids])
    )


def test_distinct_counts_and_distinct_n():
    g = make([[1, 2, 3], [1, 2, 3], [4, 5, 6]])
    assert g.distinct == 2 and not g.all_identical
    # bigrams: (1,2) (2,3) twice, (4,5) (5,6): 4 distinct of 6
    assert g.distinct_n(2) == pytest.approx(4 / 6)


# ------------------------------- what moved here from the behavioural suite (issue 10)
# Properties of the maths that hold for any logits: unit tests of the probes, not
# behaviour of a model.


def test_next_token_probe_returns_a_sorted_distribution_of_the_last_position(tiny_tokenizer_and_model):
    import torch

    tokenizer, model = tiny_tokenizer_and_model
    result = dc.next_token(tokenizer, model, "The capital of Japan is")
    probs = torch.as_tensor(result.logits, dtype=torch.float64).softmax(-1)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-9)
    assert list(result.top_probs) == sorted(result.top_probs, reverse=True)
    assert result.top_ids[0] == int(probs.argmax())
    # float32 softmax against float64: relative error of a float32 sum over 32000 terms
    assert result.top_probs[0] == pytest.approx(float(probs.max()), rel=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_temperature_sweep_sharpens_and_flattens_any_logits(seed):
    import numpy as np

    logits = np.random.default_rng(seed).standard_normal(1000).astype(np.float32) * 3
    sweep = dc.temperature_sweep(logits, [0.4, 1.0, 1.6], k=10)
    assert all(a < b for a, b in zip(sweep.entropies, sweep.entropies[1:])), sweep.entropies
    assert len(set(sweep.top1_ids)) == 1
    assert all(a > b for a, b in zip(sweep.max_probs, sweep.max_probs[1:])), sweep.max_probs
    cold = dc.temperature_sweep(logits, [0.01], k=1)
    margin = np.sort(logits)[-1] - np.sort(logits)[-2]
    if margin > 0.1:  # a clear winner: T = 0.01 is one-hot up to 1000 * exp(-margin / 0.01)
        assert cold.max_probs[0] > 0.999


# ------------------------------------------------------------- greedy is the argmax


def with_logits(new_ids, logits):
    import numpy as np

    return generation.Generation(
        "p", {}, (1,), tuple(tuple(r) for r in new_ids), ("",) * len(new_ids), np.asarray(logits, dtype=np.float32)
    )


def test_not_argmax_names_the_step_and_the_better_token():
    g = with_logits([[0, 2]], [[[3.0, 1.0, 0.0], [0.0, 2.5, 1.0]]])  # step 1 chose 2, token 1 is higher
    (wrong,) = g.not_argmax()
    assert (wrong.run, wrong.step, wrong.chosen, wrong.best) == (0, 1, 2, 1)
    assert wrong.gap == pytest.approx(1.5)
    assert "run 1, new token 1: chose 2, but 1 scored 1.5000 higher" in wrong.describe()


def test_a_tied_top_logit_is_a_greedy_choice_and_is_stated():
    g = with_logits([[1]], [[[2.0, 2.0, 0.0]]])
    assert g.not_argmax() == () and g.ties() == ((0, 0, (0, 1)),)


def test_every_greedy_run_keeps_its_logits_and_is_the_argmax(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    g = generate_calls.greedy_runs(tokenizer, model, "Hello", runs=2, max_new_tokens=4)
    assert g.step_logits.shape == (2, 4, 32000)
    assert g.not_argmax() == ()


def test_a_sampled_generation_is_not_the_argmax(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    g = generate_calls.generate(
        tokenizer, model, "Hello", max_new_tokens=8, runs=3, do_sample=True, top_k=0, seed=0, keep_logits=True
    )
    assert g.not_argmax(), "sampling from a flat random model picked the argmax 24 times in a row"


def test_beam_search_returns_every_beam_best_first(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    result = dc.beam_search(tokenizer, model, "Hello", num_beams=4, max_new_tokens=5)
    assert len(result.hypotheses) == 4 and result.distinct_hypotheses == 4
    assert list(result.scores) == sorted(result.scores, reverse=True)
    assert all(len(h) == 5 for h in result.hypotheses)


def test_top_k_check_takes_the_allowed_set_from_the_prompt_it_sampled(monkeypatch):
    """Issue 12, bug 5: the D9 top-k test draws for `top_k_sampling.prompt`; its allowed
    set must be that prompt's top k, not the D1 prompt's (the two strings are equal in
    article.yaml today). With another top-k prompt the test passes, and its draws fall
    outside the D1 prompt's top k, so the old comparison would have failed it."""
    import torch

    from lm_probes import sampling as sp
    from lm_probes.subjects import results
    from tests.behaviour import test_decoding as behaviour

    subject = Subject(find_card("tiny-mistral"))
    spec = behaviour.INPUTS["top_k_sampling"]
    monkeypatch.setitem(spec, "prompt", "Once upon a time,")
    behaviour.test_top_k_sampling_draws_only_from_the_k_most_likely(subject)
    drawn = {ids[0] for ids in results.top_k_samples(subject).new_ids}  # the draws the test just judged
    d1_top_k = sp.kept_ids(sp.top_k_filter(torch.as_tensor(results.next_token(subject).logits), spec["k"]))
    assert not drawn <= d1_top_k, (drawn, d1_top_k)
