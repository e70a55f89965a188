"""The suite proves its power: each deliberately broken subject is caught by the probe
meant to catch it, and harmless changes raise nothing. (The README's list of what the
suite catches points here.) Breakages of samplers and snapshots are in test_sampling.py
and test_snapshots.py; a tokenizer that drops BOS, end to end, in test_plugin.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from probes import decoding as dc
from probes import embedding as em
from probes import snapshots
from probes import tokenizer as tp
from probes.cards import find_card
from probes.inputs import article_inputs
from probes.subjects import Subject

PROMPT = "The capital of Japan is"


def tiny(**config) -> Subject:
    card = find_card("tiny-mistral")
    if config:
        card = dataclasses.replace(card, model={**card.model, "config": {**card.model["config"], **config}})
    return Subject(card)


def test_dropout_left_on_makes_greedy_non_deterministic():
    subject = tiny(attention_dropout=0.5)
    subject.model.train()  # the breakage: a model left in training mode
    runs = dc.greedy_runs(subject.tokenizer, subject.model, PROMPT, runs=3, max_new_tokens=8)
    assert not runs.all_identical  # what test_greedy_is_identical_across_runs asserts


def test_eval_mode_with_the_same_dropout_setting_is_deterministic():
    subject = tiny(attention_dropout=0.5)  # Subject loads in eval(): dropout is off
    assert dc.greedy_runs(subject.tokenizer, subject.model, PROMPT, runs=3, max_new_tokens=8).all_identical


def test_a_generation_config_that_turns_sampling_on_is_caught():
    subject = tiny()
    assert dc.default_decoding(subject.tokenizer, subject.model, PROMPT).greedy
    subject.model.generation_config.do_sample = True
    subject.model.generation_config.temperature = 1.5
    result = dc.default_decoding(subject.tokenizer, subject.model, PROMPT)
    assert not result.greedy and result.do_sample and not result.repeatable


def test_the_suites_own_greedy_calls_are_immune_to_that_config():
    subject = tiny()
    before = dc.generate(subject.tokenizer, subject.model, PROMPT, max_new_tokens=8).new_ids
    subject.model.generation_config.do_sample = True
    subject.model.generation_config.temperature = 1.5
    torch.manual_seed(1)
    after = dc.generate(subject.tokenizer, subject.model, PROMPT, max_new_tokens=8).new_ids
    assert before == after


def test_shuffled_embedding_rows_are_caught_by_the_snapshot():
    recorded = snapshots.observe(tiny())
    subject = tiny()
    with torch.no_grad():
        weight = subject.model.get_input_embeddings().weight
        weight.copy_(weight[torch.randperm(weight.shape[0], generator=torch.Generator().manual_seed(0))])
    diffs = snapshots.compare(recorded, snapshots.observe(subject), {}, subject)
    where = {d.where for d in diffs if d.severity == "error"}
    assert "embedding.cosine" in where and any(w.startswith("embedding.row_norms") for w in where)


@pytest.fixture(scope="module")
def smollm2() -> Subject:
    return Subject(find_card("smollm2-135m-instruct"))


def test_shuffled_embedding_rows_break_group_coherence_on_a_real_model(smollm2):
    """SmolLM2's four semantic groups are coherent (card margin 0.01); with rows
    shuffled, groups lose it, which test_semantic_groups_are_closer_inside_than_outside
    reports."""
    subject = smollm2
    groups = article_inputs()["word_groups"]
    vectors = em.word_vectors(subject.tokenizer, subject.model, groups)
    before = em.group_coherence(em.cosine_matrix(vectors.vectors), vectors.groups)
    assert all(before[g].margin >= 0.01 for g in ("royalty", "sports", "people", "animals"))
    weight = subject.model.get_input_embeddings().weight
    original = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.copy_(weight[torch.randperm(weight.shape[0], generator=torch.Generator().manual_seed(0))])
        shuffled = em.word_vectors(subject.tokenizer, subject.model, groups)
    finally:
        with torch.no_grad():  # the module's other tests share this model
            weight.copy_(original)
    after = em.group_coherence(em.cosine_matrix(shuffled.vectors), shuffled.groups)
    # The card test fails if any listed group falls below the margin. Some groups keep a
    # margin by construction: baseball/basketball share the sub-word row 'ball', and
    # prince/princess share 'prince', wherever the shuffle puts those rows.
    assert not all(after[g].margin >= 0.01 for g in ("royalty", "sports", "people", "animals")), {
        g: round(c.margin, 4) for g, c in after.items()
    }


def test_a_tokenizer_that_drops_bos_is_caught():
    tokenizer = Subject(find_card("mistral-tokenizer").with_tokenizer_config(add_bos_token=False)).tokenizer
    assert tp.bos_behaviour(tokenizer, "Hello world").added_by_default is False  # card says True
    assert tp.duplicate_bos(tokenizer, "<s> What is the capital of United States? ").leading_bos == 1  # card says 2


def test_harmless_another_seed_changes_samples_not_verdicts(smollm2):
    """Another seed draws other samples; the near-greedy regime stays greedy."""
    subject = tiny()
    a = dc.generate(subject.tokenizer, subject.model, PROMPT, max_new_tokens=6, runs=3, do_sample=True, seed=0)
    b = dc.generate(subject.tokenizer, subject.model, PROMPT, max_new_tokens=6, runs=3, do_sample=True, seed=1)
    assert a.new_ids != b.new_ids
    smol = smollm2
    greedy = dc.generate(smol.tokenizer, smol.model, PROMPT, max_new_tokens=8).new_ids[0]
    for seed in (0, 1):
        cold = dc.generate(smol.tokenizer, smol.model, PROMPT, max_new_tokens=8, runs=3, do_sample=True,
                           top_p=0.2, temperature=0.2, seed=seed)
        assert set(cold.new_ids) == {greedy}
