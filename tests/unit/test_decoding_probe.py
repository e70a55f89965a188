"""Decoding helpers on the tiny random Mistral and on hand-made generations."""

from __future__ import annotations

import pytest

from probes import decoding as dc
from probes.cards import find_card
from probes.subjects import Subject


@pytest.fixture(scope="module")
def tiny():
    subject = Subject(find_card("tiny-mistral"))
    return subject.tokenizer, subject.model


def make(new_ids, texts=None):
    return dc.Generation("p", {}, (1,), tuple(tuple(r) for r in new_ids), tuple(texts or [str(r) for r in new_ids]))


def test_distinct_counts_and_distinct_n():
    g = make([[1, 2, 3], [1, 2, 3], [4, 5, 6]])
    assert g.distinct == 2 and not g.all_identical
    # bigrams: (1,2) (2,3) twice, (4,5) (5,6): 4 distinct of 6
    assert g.distinct_n(2) == pytest.approx(4 / 6)


def test_strip_padding_keeps_the_first_eos_only():
    assert dc._strip_padding([5, 6, 2, 2, 2], eos_id=2) == (5, 6, 2)
    assert dc._strip_padding([5, 6], eos_id=2) == (5, 6)


def test_greedy_runs_many_rows_without_num_return_sequences(tiny):
    tokenizer, model = tiny
    g = dc.generate(tokenizer, model, "Hello", max_new_tokens=4, runs=3)
    assert len(g.new_ids) == 3 and g.all_identical and g.settings["do_sample"] is False


def test_generate_many_matches_single_prompts(tiny):
    tokenizer, model = tiny
    prompts = ["The capital of Japan is", "Hi"]
    many = dc.generate_many(tokenizer, model, prompts, max_new_tokens=5)
    alone = [dc.generate(tokenizer, model, p, max_new_tokens=5) for p in prompts]
    assert [g.prompt_ids for g in many] == [g.prompt_ids for g in alone]
    assert [g.new_ids for g in many] == [g.new_ids for g in alone]


@pytest.mark.parametrize("sampling", [False, True], ids=["greedy", "sampled"])
def test_generate_many_with_runs_keeps_each_prompt_with_its_own_rows(tiny, sampling):
    """Greedy runs repeat the input rows, sampled runs use num_return_sequences: either
    way each Generation holds its own prompt's ids and rows."""
    tokenizer, model = tiny
    prompts = ["The capital of Japan is", "Hi"]
    settings = {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.0} if sampling else {}
    many = dc.generate_many(tokenizer, model, prompts, max_new_tokens=3, runs=3, seed=0, **settings)
    assert [g.prompt_ids for g in many] == [tuple(tokenizer.encode(p)) for p in prompts]
    assert [len(g.new_ids) for g in many] == [3, 3]
    if not sampling:
        alone = [dc.generate(tokenizer, model, p, max_new_tokens=3).new_ids[0] for p in prompts]
        assert [g.new_ids for g in many] == [(a, a, a) for a in alone]


def test_batching_leaves_the_tokenizer_as_it_was(tiny):
    tokenizer, model = tiny
    side, pad = tokenizer.padding_side, tokenizer.pad_token_id
    assert pad is None  # Mistral defines no pad token: the probe pads with eos itself
    dc.generate_many(tokenizer, model, ["a", "longer prompt"], max_new_tokens=2)
    assert (tokenizer.padding_side, tokenizer.pad_token_id) == (side, pad)


def test_empty_prompt_is_refused(tiny):
    tokenizer, model = tiny
    with pytest.raises(ValueError, match="the prompt is empty"):
        dc.next_token(tokenizer, model, "  ")


def test_prompt_longer_than_the_context_is_refused(tiny):
    tokenizer, model = tiny
    with pytest.raises(ValueError, match=r"the prompt is \d+ tokens, but the model's context is 1024"):
        dc.next_token(tokenizer, model, "word " * 1100)


def test_sampling_is_reproducible_for_a_seed(tiny):
    tokenizer, model = tiny
    a = dc.generate(tokenizer, model, "Hello", max_new_tokens=5, runs=4, do_sample=True, seed=3)
    b = dc.generate(tokenizer, model, "Hello", max_new_tokens=5, runs=4, do_sample=True, seed=3)
    assert a.new_ids == b.new_ids and a.distinct > 1
