"""D5, D9: the own top-k / top-p / temperature on each model's real next-token logits,
against transformers' warpers, and sampling against the nucleus distribution."""

from __future__ import annotations

import pytest
import torch

from lm_probes import sampling as sp
from lm_probes.expect import check_that
from lm_probes.inputs import article_inputs
from lm_probes.subjects.results import first_token_samples, next_token

INPUTS = article_inputs()
# Each goodness-of-fit test rejects a correct sampler with probability ALPHA (its
# false-positive rate). The draws are seeded (--lm-probes-seed), so a given seed always gives the
# same verdict; seeds 0-19 all pass (docs/observations.md, "Statistical tests").
ALPHA = 1e-3


def logits_of(lm_probes_subject) -> torch.Tensor:
    return torch.as_tensor(next_token(lm_probes_subject).logits)  # (vocab,) float32


@pytest.mark.observation("D9")
@pytest.mark.parametrize("min_keep", [1, 3])
def test_own_top_k_keeps_what_transformers_keeps(lm_probes_model_subject, min_keep):
    logits = logits_of(lm_probes_model_subject)
    mismatches = sp.top_k_mismatches(logits, [1, 2, 5, 10, 50, 1000, logits.shape[0]], min_keep=min_keep)
    check_that(
        lm_probes_model_subject.card,
        not mismatches,
        expected="the own top-k keeps the tokens transformers' TopKLogitsWarper keeps, at every k",
        obtained="\n".join(map(str, mismatches)),
    )


@pytest.mark.observation("D5")
@pytest.mark.parametrize("min_keep", [1, 3])
def test_own_top_p_keeps_what_transformers_keeps(lm_probes_model_subject, min_keep):
    logits = logits_of(lm_probes_model_subject)
    mismatches = sp.top_p_mismatches(
        logits, [1e-9, 0.05, 0.2, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0], [0.2, 0.4, 1.0, 1.4, 1.6], min_keep=min_keep
    )
    check_that(
        lm_probes_model_subject.card,
        not mismatches,
        expected="the own top-p keeps the tokens transformers' TopPLogitsWarper keeps, at every p and T",
        obtained="\n".join(map(str, mismatches)),
    )


@pytest.mark.observation("D5")
def test_own_sampler_draws_from_the_nucleus(lm_probes_model_subject):
    """20000 draws with the own temperature + top-p + multinomial, chi-square against the
    nucleus at (top_p 0.9, T 1.4) as transformers' warpers define it: a reference the own
    sampler did not compute. False-positive rate: ALPHA."""
    logits = logits_of(lm_probes_model_subject)
    nucleus = sp.transformers_nucleus(logits, 0.9, 1.4)
    generator = torch.Generator().manual_seed(lm_probes_model_subject.seed)
    filtered = sp.top_p_filter(sp.apply_temperature(logits, 1.4), 0.9)
    drawn = sp.sample(filtered, 20_000, generator)
    _check_fit(lm_probes_model_subject.card, "the own sampler's draws", sp.goodness_of_fit(drawn, nucleus), nucleus)


@pytest.mark.observation("D5", "D7")
def test_generate_samples_first_tokens_from_the_nucleus(lm_probes_model_subject):
    """transformers' own sampling (generate, top_p 0.9, T 1.4): 400 first tokens in one
    batched call (sharing the prompt's cache), chi-square against the nucleus of the own
    definition (code generate() does not share). False-positive rate: ALPHA."""
    logits = logits_of(lm_probes_model_subject)
    nucleus = sp.nucleus(logits, 0.9, 1.4)
    samples = first_token_samples(lm_probes_model_subject)  # the snapshot records the same draws
    fit = sp.goodness_of_fit([ids[0] for ids in samples.new_ids], nucleus)
    _check_fit(lm_probes_model_subject.card, "generate's first tokens", fit, nucleus)


def _check_fit(card, what: str, fit: sp.GoodnessOfFit, nucleus: sp.Nucleus) -> None:
    __tracebackhide__ = True
    check_that(card, fit.bins >= 2, expected="at least 2 bins to test", obtained=f"too few bins: {fit}")
    check_that(
        card,
        not fit.rejects(ALPHA),
        expected=f"{what} fit the nucleus ({len(nucleus.ids)} tokens) at alpha {ALPHA}",
        obtained=f"{what} do not fit the nucleus: {fit}",
    )
