"""Decoding helpers on the tiny random Mistral and on hand-made generations."""

from __future__ import annotations

import pytest

from probes import decoding as dc
from probes import generate_calls, generation
from probes.cards.card import find_card
from probes.subjects.subject import Subject


@pytest.fixture(scope="module")
def tiny_tokenizer_and_model():
    subject = Subject(find_card("tiny-mistral"))
    return subject.tokenizer, subject.model


def make(new_ids, texts=None):
    return generation.Generation(
        "p", {}, (1,), tuple(tuple(r) for r in new_ids), tuple(texts or [str(r) for r in new_ids])
    )


def test_distinct_counts_and_distinct_n():
    g = make([[1, 2, 3], [1, 2, 3], [4, 5, 6]])
    assert g.distinct == 2 and not g.all_identical
    # bigrams: (1,2) (2,3) twice, (4,5) (5,6): 4 distinct of 6
    assert g.distinct_n(2) == pytest.approx(4 / 6)


def test_strip_padding_keeps_the_first_eos_only():
    assert generate_calls.strip_padding([5, 6, 2, 2, 2], eos_id=2) == (5, 6, 2)
    assert generate_calls.strip_padding([5, 6], eos_id=2) == (5, 6)


def test_greedy_runs_many_rows_without_num_return_sequences(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    g = generate_calls.generate(tokenizer, model, "Hello", max_new_tokens=4, runs=3)
    assert len(g.new_ids) == 3 and g.all_identical and g.settings["do_sample"] is False


def test_generate_many_matches_single_prompts(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    prompts = ["The capital of Japan is", "Hi"]
    many = generate_calls.generate_many(tokenizer, model, prompts, max_new_tokens=5)
    alone = [generate_calls.generate(tokenizer, model, p, max_new_tokens=5) for p in prompts]
    assert [g.prompt_ids for g in many] == [g.prompt_ids for g in alone]
    assert [g.new_ids for g in many] == [g.new_ids for g in alone]


@pytest.mark.parametrize("sampling", [False, True], ids=["greedy", "sampled"])
def test_generate_many_with_runs_keeps_each_prompt_with_its_own_rows(tiny_tokenizer_and_model, sampling):
    """Greedy runs repeat the input rows, sampled runs use num_return_sequences: either
    way each Generation holds its own prompt's ids and rows."""
    tokenizer, model = tiny_tokenizer_and_model
    prompts = ["The capital of Japan is", "Hi"]
    settings = {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.0} if sampling else {}
    many = generate_calls.generate_many(tokenizer, model, prompts, max_new_tokens=3, runs=3, seed=0, **settings)
    assert [g.prompt_ids for g in many] == [tuple(tokenizer.encode(p)) for p in prompts]
    assert [len(g.new_ids) for g in many] == [3, 3]
    if not sampling:
        alone = [generate_calls.generate(tokenizer, model, p, max_new_tokens=3).new_ids[0] for p in prompts]
        assert [g.new_ids for g in many] == [(a, a, a) for a in alone]


def test_batching_leaves_the_tokenizer_as_it_was(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    side, pad = tokenizer.padding_side, tokenizer.pad_token_id
    assert pad is None  # Mistral defines no pad token: the probe pads with eos itself
    generate_calls.generate_many(tokenizer, model, ["a", "longer prompt"], max_new_tokens=2)
    assert (tokenizer.padding_side, tokenizer.pad_token_id) == (side, pad)


def test_empty_prompt_is_refused(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    with pytest.raises(ValueError, match="the prompt is empty"):
        dc.next_token(tokenizer, model, "  ")


def test_prompt_longer_than_the_context_is_refused(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    with pytest.raises(ValueError, match=r"the prompt is \d+ tokens, but the model's context is 1024"):
        dc.next_token(tokenizer, model, "word " * 1100)


def test_sampling_is_reproducible_for_a_seed(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    a = generate_calls.generate(tokenizer, model, "Hello", max_new_tokens=5, runs=4, do_sample=True, seed=3)
    b = generate_calls.generate(tokenizer, model, "Hello", max_new_tokens=5, runs=4, do_sample=True, seed=3)
    assert a.new_ids == b.new_ids and a.distinct > 1


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


def test_force_bos_puts_bos_in_front_only_where_missing(tiny_tokenizer_and_model):
    tokenizer, _ = tiny_tokenizer_and_model
    plain = generate_calls.prompt_ids(tokenizer, "Hello", add_special_tokens=False)
    assert generate_calls.prompt_ids(tokenizer, "Hello", add_special_tokens=False, force_bos=True) == [1, *plain]
    assert generate_calls.prompt_ids(tokenizer, "Hello", add_special_tokens=True, force_bos=True) == [
        1,
        *plain,
    ]  # not twice


def test_greedy_runs_many_are_separate_calls(tiny_tokenizer_and_model, monkeypatch):
    tokenizer, model = tiny_tokenizer_and_model
    calls = []
    real = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw["input_ids"].shape[0]) or real(**kw))
    runs = generate_calls.greedy_runs_many(tokenizer, model, ["Hello", "Once upon a time,"], runs=3, max_new_tokens=3)
    assert calls == [2, 2, 2]  # three calls, each one batch over the two prompts
    assert [len(g.new_ids) for g in runs] == [3, 3] and all(g.all_identical for g in runs)


def test_beam_search_returns_every_beam_best_first(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    result = dc.beam_search(tokenizer, model, "Hello", num_beams=4, max_new_tokens=5)
    assert len(result.hypotheses) == 4 and result.distinct_hypotheses == 4
    assert list(result.scores) == sorted(result.scores, reverse=True)
    assert all(len(h) == 5 for h in result.hypotheses)


def test_the_suites_own_greedy_calls_are_immune_to_a_sampling_generation_config():
    """A generation_config with do_sample on changes what an argument-less generate() does
    (test_default_generate_is_greedy reports it), not the suite's explicit greedy calls."""
    import torch

    subject = Subject(find_card("tiny-mistral"))
    before = generate_calls.generate(
        subject.tokenizer, subject.model, "The capital of Japan is", max_new_tokens=8
    ).new_ids
    subject.model.generation_config.do_sample = True
    subject.model.generation_config.temperature = 1.5
    torch.manual_seed(1)
    after = generate_calls.generate(
        subject.tokenizer, subject.model, "The capital of Japan is", max_new_tokens=8
    ).new_ids
    assert before == after


def test_sharing_the_prompt_cache_draws_the_same_first_tokens(tiny_tokenizer_and_model):
    """The shared prompt cache changes the cost, not the draws: under one seed it gives
    the same 100 first tokens as generate() running the whole prompt in every row."""
    tokenizer, model = tiny_tokenizer_and_model
    settings = dict(top_p=0.9, temperature=1.4, top_k=0)
    plain = generate_calls.generate(
        tokenizer, model, "The capital of Japan is", max_new_tokens=1, runs=100, do_sample=True, seed=3, **settings
    )
    shared = generate_calls.sample_first_tokens(
        tokenizer, model, "The capital of Japan is", runs=100, seed=3, **settings
    )
    assert shared.prompt_ids == plain.prompt_ids
    assert len(set(shared.new_ids)) > 20  # really sampled, not one token 100 times
    assert shared.new_ids == plain.new_ids


def test_samples_sharing_their_prompts_prefill_are_the_plain_calls_samples(tiny_tokenizer_and_model):
    """Issue 34: every sampled call with several runs (the suite's samples, the openings, the
    draft's extra draws) computes each prompt once and repeats its cache, left padding and
    all; under one seed the 20-token samples are generate()'s own, row for row."""
    tokenizer, model = tiny_tokenizer_and_model
    settings = dict(max_new_tokens=20, runs=12, seed=1, do_sample=True, top_p=0.9, temperature=1.4)
    plain = generate_calls.generate(tokenizer, model, "The capital of Japan is", share_prompt_cache=False, **settings)
    shared = generate_calls.generate(tokenizer, model, "The capital of Japan is", **settings)
    assert shared.settings["shared_prompt_cache"] and "shared_prompt_cache" not in plain.settings
    assert len(set(plain.new_ids)) > 6 and shared.new_ids == plain.new_ids
    openings = ["Once upon a time,", "Long, long ago,", "In the beginning,"]  # three lengths: left padding
    plain_many = generate_calls.generate_many(tokenizer, model, openings, share_prompt_cache=False, **settings)
    shared_many = generate_calls.generate_many(tokenizer, model, openings, **settings)
    assert [g.new_ids for g in shared_many] == [g.new_ids for g in plain_many]


def test_top_k_check_takes_the_allowed_set_from_the_prompt_it_sampled(monkeypatch):
    """Issue 12, bug 5: the D9 top-k test draws for `top_k_sampling.prompt`; its allowed
    set must be that prompt's top k, not the D1 prompt's (the two strings are equal in
    article.yaml today). With another top-k prompt the test passes, and its draws fall
    outside the D1 prompt's top k, so the old comparison would have failed it."""
    import torch

    from probes import sampling as sp
    from probes.subjects import results
    from tests.behaviour import test_decoding as behaviour

    subject = Subject(find_card("tiny-mistral"))
    spec = behaviour.INPUTS["top_k_sampling"]
    monkeypatch.setitem(spec, "prompt", "Once upon a time,")
    behaviour.test_top_k_sampling_draws_only_from_the_k_most_likely(subject)
    drawn = {ids[0] for ids in results.top_k_samples(subject).new_ids}  # the draws the test just judged
    d1_top_k = sp.kept_ids(sp.top_k_filter(torch.as_tensor(results.next_token(subject).logits), spec["k"]))
    assert not drawn <= d1_top_k, (drawn, d1_top_k)
