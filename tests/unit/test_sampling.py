"""The own samplers on hand-checkable logits, against transformers' warpers, and the
checks that must catch deliberately broken samplers."""

from __future__ import annotations

import math

import pytest
import torch

from probes import sampling as sp


def logits_from(probs: list[float]) -> torch.Tensor:
    return torch.log(torch.tensor(probs, dtype=torch.float32))


# ----------------------------------------------------------------------- top-k


@pytest.mark.parametrize(
    "logits, k, min_keep, kept",
    [
        ([1.0, 3.0, 2.0, 4.0], 2, 1, {3, 1}),  # the two largest
        ([1.0, 2.0, 2.0, 0.0], 2, 1, {1, 2}),
        ([2.0, 2.0, 2.0, 1.0], 1, 1, {0, 1, 2}),  # ties with the k-th largest all stay
        ([1.0, 3.0, 2.0], 10, 1, {0, 1, 2}),  # k above the vocabulary keeps everything
        ([1.0, 3.0, 2.0, 0.0], 1, 3, {0, 1, 2}),  # min_tokens_to_keep raises k
    ],
    ids=["two-largest", "tie-inside", "tie-at-k", "k-above-vocab", "min-keep"],
)
def test_top_k_hand_cases_and_transformers_agree(logits, k, min_keep, kept):
    from transformers import TopKLogitsWarper

    z = torch.tensor(logits)
    assert sp.kept_ids(sp.top_k_filter(z, k, min_keep)) == kept
    theirs = TopKLogitsWarper(k, min_tokens_to_keep=min_keep)(None, z[None, :].clone())[0]
    assert sp.kept_ids(theirs) == kept


# ----------------------------------------------------------------------- top-p


@pytest.mark.parametrize(
    "probs, p, min_keep, kept",
    [
        # 0.5 alone reaches p = 0.5: the nucleus is one token
        ([0.5, 0.3, 0.2], 0.5, 1, {0}),
        ([0.5, 0.3, 0.2], 0.79, 1, {0, 1}),
        ([0.5, 0.3, 0.2], 0.81, 1, {0, 1, 2}),
        ([0.2, 0.5, 0.3], 1.0, 1, {0, 1, 2}),  # p = 1 keeps every token
        ([0.2, 0.5, 0.3], 1e-9, 1, {1}),  # a tiny p still keeps the most likely
        ([0.2, 0.5, 0.3], 1e-9, 2, {1, 2}),  # ... or min_tokens_to_keep of them
        # four equal tokens, p = 0.5: two stay, the higher ids (the ascending sort's order)
        ([0.25, 0.25, 0.25, 0.25], 0.5, 1, {2, 3}),
        ([0.4, 0.2, 0.2, 0.2], 0.7, 1, {0, 2, 3}),  # a tie at the edge of the nucleus
    ],
    ids=["one-token", "two-tokens", "all-three", "p-one", "tiny-p", "tiny-p-min-keep", "uniform-ties", "edge-tie"],
)
def test_top_p_hand_cases_and_transformers_agree(probs, p, min_keep, kept):
    from transformers import TopPLogitsWarper

    z = logits_from(probs)
    assert sp.kept_ids(sp.top_p_filter(z, p, min_keep)) == kept
    theirs = TopPLogitsWarper(p, min_tokens_to_keep=min_keep)(None, z[None, :].clone())[0]
    assert sp.kept_ids(theirs) == kept


def test_filters_leave_their_input_untouched_and_work_on_batches():
    z = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))  # (batch, vocab)
    before = z.clone()
    for out in (sp.top_p_filter(z, 0.5), sp.top_k_filter(z, 5), sp.apply_temperature(z, 0.7)):
        assert out.shape == z.shape and out is not z
    assert torch.equal(z, before)
    kept_per_row = torch.isfinite(sp.top_k_filter(z, 5)).sum(dim=-1)
    assert kept_per_row.tolist() == [5, 5, 5]


def test_temperature_divides_the_logits():
    z = torch.tensor([1.0, 2.0, 4.0])
    assert torch.equal(sp.apply_temperature(z, 2.0), torch.tensor([0.5, 1.0, 2.0]))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda z: sp.apply_temperature(z, 0), "temperature must be a number > 0, got 0"),
        (lambda z: sp.apply_temperature(z, -1.0), "temperature must be a number > 0, got -1.0"),
        (lambda z: sp.top_p_filter(z, 0.0), r"top-p needs 0 < p <= 1, got 0.0"),
        (lambda z: sp.top_p_filter(z, 1.5), r"top-p needs 0 < p <= 1, got 1.5"),
        (lambda z: sp.top_k_filter(z, 0), "top-k needs an integer k >= 1, got 0"),
        (lambda z: sp.top_k_filter(z, 2.5), "top-k needs an integer k >= 1, got 2.5"),
        (lambda z: sp.top_p_filter(z, 0.5, min_tokens_to_keep=0), "min_tokens_to_keep must be an integer >= 1, got 0"),
    ],
    ids=["T-zero", "T-negative", "p-zero", "p-above-one", "k-zero", "k-float", "min-keep-zero"],
)
def test_invalid_parameters_say_the_allowed_range(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(torch.tensor([1.0, 2.0]))


# ------------------------------------------------------ broken samplers are caught

REAL_LIKE = torch.randn(2000, generator=torch.Generator().manual_seed(1)) * 3  # a peaked, wide row


def top_p_one_too_many(logits, p, min_tokens_to_keep=1):
    """Broken: the nucleus shifted by one (keeps the next token past the nucleus)."""
    kept = sp.top_p_filter(logits, p, min_tokens_to_keep)
    extra = torch.where(torch.isfinite(kept), torch.full_like(logits, -math.inf), logits).argmax()
    return kept.index_put((extra,), logits[extra])


def top_p_one_too_few(logits, p, min_tokens_to_keep=1):
    """Broken: drops the least likely token of the nucleus."""
    kept = sp.top_p_filter(logits, p, min_tokens_to_keep)
    finite = torch.isfinite(kept)
    if finite.sum() <= 1:
        return kept
    weakest = torch.where(finite, kept, torch.full_like(kept, math.inf)).argmin()
    return kept.index_put((weakest,), torch.tensor(-math.inf))


def temperature_ignored(logits, temperature):
    """Broken: forgets to divide by T."""
    return logits.clone()


def top_k_off_by_one(logits, k, min_tokens_to_keep=1):
    return sp.top_k_filter(logits, k + 1, min_tokens_to_keep)


def test_the_real_samplers_pass_the_checks():
    assert sp.top_p_mismatches(REAL_LIKE, [0.1, 0.5, 0.9], [0.5, 1.0, 1.4]) == []
    assert sp.top_k_mismatches(REAL_LIKE, [1, 5, 50]) == []


@pytest.mark.parametrize("broken", [top_p_one_too_many, top_p_one_too_few], ids=lambda f: f.__name__)
def test_a_shifted_nucleus_is_caught(broken):
    # p 0.5 and 0.9 give nuclei of several tokens, so one more or one fewer shows in each
    mismatches = sp.top_p_mismatches(REAL_LIKE, [0.5, 0.9], [1.0], top_p=broken)
    assert len(mismatches) == 2, mismatches


def test_an_ignored_temperature_is_caught_by_the_keep_sets():
    mismatches = sp.top_p_mismatches(REAL_LIKE, [0.5, 0.9], [0.5, 1.4], temperature=temperature_ignored)
    assert mismatches, "an ignored temperature went unnoticed"


def test_an_off_by_one_top_k_is_caught():
    assert sp.top_k_mismatches(REAL_LIKE, [1, 5], top_k=top_k_off_by_one)


# ------------------------------------------------------------- goodness of fit


def draws(logits, n, seed, temperature=1.4, p=0.9, apply_t=sp.apply_temperature):
    filtered = sp.top_p_filter(apply_t(logits, temperature), p)
    return sp.sample(filtered, n, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", range(20))
def test_goodness_of_fit_accepts_a_correct_sampler(seed):
    """alpha = 1e-3 per seed: the chance that any of these 20 seeded cases fails for a
    correct sampler is below 2%; the seeds are fixed, so the outcome is too."""
    fit = sp.goodness_of_fit(draws(REAL_LIKE, 5000, seed), sp.nucleus(REAL_LIKE, 0.9, 1.4))
    assert fit.bins >= 10 and not fit.rejects(1e-3), fit


def test_goodness_of_fit_catches_an_ignored_temperature():
    """Same token set is possible only by chance; the frequencies certainly differ."""
    wrong = draws(REAL_LIKE, 5000, 0, temperature=1.4, p=1.0, apply_t=temperature_ignored)
    fit = sp.goodness_of_fit(wrong, sp.nucleus(REAL_LIKE, 1.0, 1.4))
    assert fit.rejects(1e-3), fit


def test_goodness_of_fit_rejects_a_draw_outside_the_nucleus():
    nucleus = sp.Nucleus(ids=(0, 1), probs=(0.6, 0.4))
    assert sp.goodness_of_fit([0, 1, 2], nucleus).p_value == 0.0


def test_nucleus_is_renormalised_and_sorted():
    nucleus = sp.nucleus(logits_from([0.1, 0.6, 0.3]), 0.8)
    assert nucleus.ids == (1, 2)
    assert nucleus.probs == pytest.approx((2 / 3, 1 / 3), abs=1e-6)
