"""lm_probes/generate_calls.py, the generate() calls every probe makes, on the tiny random Mistral:
batched and repeated runs, padding, prompt checks, seeds, BOS, the shared prompt prefill
(moved from test_decoding_probe.py, issue 36: a test file per module)."""

from __future__ import annotations

import pytest

from lm_probes import decoding as dc
from lm_probes import generate_calls
from lm_probes.cards.card import find_card
from lm_probes.subjects.subject import Subject


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


def test_a_model_whose_generation_config_turns_the_cache_off_samples_as_the_plain_call(tiny_tokenizer_and_model):
    """Issue 45: a checkpoint saved from training says use_cache: false in generation_config.json.
    generate() then feeds each step the whole sequence; a shared prompt cache handed to it was read
    as well (the prompt twice) and the samples were not the model's. The break: the cache off,
    as that checkpoint has it. Shared and plain rows must be equal, with the cache on and off."""
    import copy

    tokenizer, model = tiny_tokenizer_and_model
    settings = dict(max_new_tokens=12, runs=8, seed=2, do_sample=True, top_p=0.9, temperature=1.4)
    original = copy.deepcopy(model.generation_config)
    try:
        for use_cache in (True, False):
            model.generation_config.use_cache = use_cache
            plain = generate_calls.generate(
                tokenizer, model, "The capital of Japan is", share_prompt_cache=False, **settings
            )
            shared = generate_calls.generate(tokenizer, model, "The capital of Japan is", **settings)
            assert shared.new_ids == plain.new_ids, f"use_cache={use_cache}"
            assert shared.settings.get("shared_prompt_cache", False) is use_cache
            assert len(set(plain.new_ids)) > 3
    finally:
        model.generation_config = original
