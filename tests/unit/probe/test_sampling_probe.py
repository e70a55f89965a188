"""The own samplers on hand-checkable logits, against transformers' warpers, and the
checks that must catch deliberately broken samplers."""

from __future__ import annotations

import math

import pytest
import torch

from lm_probes import sampling as sp


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


# ------------------------------------ mutation testing survivors (docs/reliability.md, "Mutation score")


def test_transformers_nucleus_agrees_with_the_own_definition():
    ours, theirs = sp.nucleus(REAL_LIKE, 0.9, 1.4), sp.transformers_nucleus(REAL_LIKE, 0.9, 1.4)
    assert ours.ids == theirs.ids and len(ours.ids) > 10
    assert ours.probs == pytest.approx(theirs.probs, rel=1e-5)
    assert sum(theirs.probs) == pytest.approx(1.0, abs=1e-5)
    assert sp.transformers_nucleus(logits_from([0.1, 0.6, 0.3]), 0.8).as_dict() == {
        "ids": [1, 2],
        "probs": pytest.approx([2 / 3, 1 / 3], abs=1e-6),
    }


def test_nucleus_orders_equal_probabilities_by_id():
    z = torch.zeros(40)  # 40 equal tokens: the order among them is the id order (a stable sort)
    assert sp.nucleus(z, 1.0).ids == tuple(range(40))


def test_sample_draws_from_the_given_generator_only():
    z = torch.zeros(1000)
    a = sp.sample(z, 50, torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # the global generator must play no part
    b = sp.sample(z, 50, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and len(set(a.tolist())) > 1


def ignores_min_keep_top_k(logits, k, min_tokens_to_keep=1):
    return sp.top_k_filter(logits, k)


def ignores_min_keep_top_p(logits, p, min_tokens_to_keep=1):
    return sp.top_p_filter(logits, p)


def test_min_tokens_to_keep_reaches_both_sides_of_the_comparison():
    assert sp.top_k_mismatches(REAL_LIKE, [1], min_keep=3) == []
    assert sp.top_p_mismatches(REAL_LIKE, [1e-9], [1.0], min_keep=3) == []
    (k_case,) = sp.top_k_mismatches(REAL_LIKE, [1], min_keep=3, top_k=ignores_min_keep_top_k)
    (p_case,) = sp.top_p_mismatches(REAL_LIKE, [1e-9], [1.0], min_keep=3, top_p=ignores_min_keep_top_p)
    top3 = tuple(sorted(torch.topk(REAL_LIKE, 3).indices[1:].tolist()))
    assert (k_case.case, k_case.only_ours, k_case.only_theirs) == ("k=1, min_keep=3", (), top3)
    assert (p_case.case, p_case.only_ours, p_case.only_theirs) == ("p=1e-09, T=1.0, min_keep=3", (), top3)
    assert str(k_case) == f"k=1, min_keep=3: kept only by ours [], only by transformers {list(top3)}"
    # by default one token is kept at the least, on both sides
    assert sp.top_k_mismatches(REAL_LIKE, [1], top_k=ignores_min_keep_top_k) == []
    assert sp.top_p_mismatches(REAL_LIKE, [1e-9], [1.0], top_p=ignores_min_keep_top_p) == []


def test_rejects_only_below_alpha():
    assert not sp.GoodnessOfFit(1.0, 1e-3, 2, 10).rejects(1e-3)
    assert sp.GoodnessOfFit(1.0, 0.99e-3, 2, 10).rejects(1e-3)


def test_goodness_of_fit_on_hand_counts():
    """Bins, statistic and p-value against a hand computation: probs 0.5, 0.25, 0.125,
    0.125 and 80 draws expect 40, 20, 10, 10 (each exactly at the 10-per-bin minimum)."""
    from scipy.stats import chisquare

    nucleus = sp.Nucleus(ids=(0, 1, 2, 3), probs=(0.5, 0.25, 0.125, 0.125))
    drawn = [0] * 30 + [1] * 25 + [2] * 15 + [3] * 10
    fit = sp.goodness_of_fit(drawn, nucleus)
    expected = chisquare([30, 25, 15, 10], [40, 20, 10, 10])
    assert (fit.bins, fit.draws) == (4, 80)
    assert fit.statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert fit.p_value == pytest.approx(float(expected.pvalue), rel=1e-12)


def test_goodness_of_fit_merges_a_small_remainder_into_the_last_bin():
    """Probs 0.5, 0.3, 0.195, 0.005 and 100 draws: the last token (0.5 expected) joins the
    bin before it, with its draw; a token never drawn counts 0."""
    from scipy.stats import chisquare

    nucleus = sp.Nucleus(ids=(0, 1, 2, 3), probs=(0.5, 0.3, 0.195, 0.005))
    fit = sp.goodness_of_fit([0] * 60 + [1] * 20 + [3] * 20, nucleus)
    expected = chisquare([60, 20, 20], [50, 30, 20])
    assert fit.bins == 3
    assert fit.statistic == pytest.approx(float(expected.statistic), rel=1e-9)


def test_goodness_of_fit_bin_count_follows_max_bins_and_min_per_bin():
    uniform = sp.Nucleus(ids=tuple(range(1000)), probs=(1 / 1000,) * 1000)
    # 500 draws: 0.5 expected per token, 10 per bin (the minimum) -> 50 bins of 20 tokens
    assert sp.goodness_of_fit(list(range(500)), uniform).bins == 50
    # 1010 tokens, 1010 draws: 50 bins at most -> 20.2 expected per bin -> 21 tokens a bin, 48 bins
    wide = sp.Nucleus(ids=tuple(range(1010)), probs=(1 / 1010,) * 1010)
    assert sp.goodness_of_fit(list(range(1010)), wide).bins == 48
    assert sp.goodness_of_fit(list(range(1010)), wide, max_bins=101).bins == 101


def test_goodness_of_fit_with_two_bins_tests_and_with_one_bin_says_nothing():
    halves = sp.Nucleus(ids=(0, 1), probs=(0.5, 0.5))
    two = sp.goodness_of_fit([0] * 100, halves)
    assert two.bins == 2 and two.rejects(1e-3) and two.statistic == pytest.approx(100.0)
    assert sp.goodness_of_fit([0] * 5, halves) == sp.GoodnessOfFit(0.0, 1.0, 1, 5)  # 2.5 expected per token


def test_a_draw_outside_the_nucleus_is_a_certain_rejection_with_its_count():
    fit = sp.goodness_of_fit([0, 1, 2], sp.Nucleus(ids=(0, 1), probs=(0.6, 0.4)))
    assert fit == sp.GoodnessOfFit(float("inf"), 0.0, 0, 3)


@pytest.mark.parametrize("bad", [2.5, True], ids=["float", "bool"])
def test_min_tokens_to_keep_and_p_refuse_floats_and_bools(bad):
    with pytest.raises(ValueError, match="min_tokens_to_keep must be an integer >= 1"):
        sp.top_p_filter(torch.tensor([1.0, 2.0]), 0.5, min_tokens_to_keep=bad)
    with pytest.raises(ValueError, match="top-p needs 0 < p <= 1, got True"):
        sp.top_p_filter(torch.tensor([1.0, 2.0]), True)
    with pytest.raises(ValueError, match="temperature must be a number > 0, got True"):
        sp.apply_temperature(torch.tensor([1.0, 2.0]), True)


def test_top_p_among_many_equal_tokens_keeps_the_highest_ids():
    """The own filter sorts stably: among exact ties the higher id counts as more likely.
    transformers' TopPLogitsWarper sorts without stability: it keeps as many tokens, but
    which of 2000 equal ones is its sort's choice (here the lowest ids). Exact ties at the
    edge of a nucleus then make the keep-set comparison report a difference (docs/observations.md)."""
    from transformers import TopPLogitsWarper

    z = torch.zeros(2000)
    kept = sp.kept_ids(sp.top_p_filter(z, 0.5))
    assert kept == set(range(1000, 2000))
    assert len(sp.kept_ids(TopPLogitsWarper(0.5)(None, z[None, :].clone())[0])) == 1000


def test_a_keep_set_mismatch_shows_at_most_ten_ids_a_side():
    text = str(sp.KeepSetMismatch("k=1", tuple(range(12)), tuple(range(20, 32))))
    assert text == f"k=1: kept only by ours {list(range(10))}, only by transformers {list(range(20, 30))}"


def test_the_float32_sampler_checks_hold_at_a_262144_token_vocabulary():
    """Issue 15, friction 4: a check comparing float32 results with a fixed relative
    tolerance breaks as the vocabulary grows (the float32 sum over 262144 logits is off
    from float64 by ~2.6e-5 relative). The behavioural sampler checks compare keep sets
    and float32 with float32 by the same formula, so they hold at Gemma 3's vocabulary
    size: seeded logits with a peaked head and a long tail, as a real model gives."""
    from transformers import TemperatureLogitsWarper

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(262_144, generator=generator) * 2.0
    logits[:5] += torch.tensor([12.0, 11.0, 10.5, 9.0, 8.0])  # a few likely tokens
    assert not sp.top_k_mismatches(logits, [1, 2, 5, 10, 50, 1000, logits.shape[0]], min_keep=1)
    assert not sp.top_p_mismatches(logits, [0.05, 0.5, 0.9, 0.99, 1.0], [0.4, 1.6])
    for t in (0.4, 1.0, 1.6):  # test_own_temperature_matches_transformers's tolerance
        ours = sp.apply_temperature(logits[None, :], t).softmax(-1)
        theirs = TemperatureLogitsWarper(t)(None, logits[None, :].clone()).softmax(-1)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)
    # the fixed relative tolerance the issue met would not hold here: the evidence it was wrong
    p32 = logits.softmax(-1)
    p64 = logits.double().softmax(-1)
    assert ((p32.double() - p64).abs() / p64).max() > 1e-7
