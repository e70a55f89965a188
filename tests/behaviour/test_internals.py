"""U2-U4 (issue 13): what generate() inherits, where inside the model a change is, and
whether attention back-ends agree: the regressions users hit after upgrades that the
article's probes see only at the end, if at all."""

from __future__ import annotations

import pytest

from lm_probes.expect import check_at_most, check_equal, check_that
from lm_probes.inputs import article_inputs
from lm_probes.report.html import Cell
from lm_probes.subjects.results import attention_backends, fingerprints, generation_settings

INPUTS = article_inputs()


@pytest.mark.observation("U2", expects="generation.calls")
def test_generate_runs_with_the_settings_the_card_expects(lm_probes_model_subject, case, lm_probes_attach):
    """The settings generate() resolves for the call (its arguments, then the model's
    generation_config, then the library's defaults) and the logits processors it builds
    from them. A generation_config that switches sampling on or adds a penalty shows up
    as an unexpected processor, named (huggingface/trl#5783)."""
    found = generation_settings(lm_probes_model_subject, case["id"])
    lm_probes_attach.table(
        ["call", "arguments", "processors", "from the model's generation_config"],
        [[case["id"], Cell(found.call, code=True), ", ".join(found.processors) or "none", found.from_model]],
        summary="What generate() inherits (U2)",
    )
    field = f"generation.calls[{case['id']}]"
    expected = case["processors"]
    unexpected = [p for p in found.processors if p not in expected]
    check_equal(
        lm_probes_model_subject.card,
        f"{field}.processors",
        list(found.processors),
        note=(f"unexpected: {unexpected}; " if unexpected else "") + found.describe(),
    )
    for name in case.get("settings", {}):
        check_equal(
            lm_probes_model_subject.card, f"{field}.settings.{name}", found.effective[name], note=found.describe()
        )


@pytest.mark.observation("U3", expects="hidden_states")
def test_hidden_states_are_one_per_layer_finite_and_decoded_from_the_last(lm_probes_model_subject, lm_probes_attach):
    """The fingerprint's premises: one hidden state per layer output, all finite, and the
    last the one the output head decodes (so a change at layer i is a change of the model,
    not of what output_hidden_states returns). Its changes are judged by the snapshot,
    which names the first layer that moved."""
    found = fingerprints(lm_probes_model_subject)
    lm_probes_attach.table(
        ["prompt", *[f"h{i}" for i in range(found[0].layers)]],
        [[f.prompt, *[f"{n:.3g}" for n in f.norms]] for f in found],
        summary="Hidden-state norms per layer, last token (U3)",
    )
    for f in found:
        check_equal(lm_probes_model_subject.card, "hidden_states.layers", f.layers, note=f"prompt {f.prompt!r}")
        check_that(
            lm_probes_model_subject.card,
            f.finite,
            expected="every hidden state finite",
            obtained=f"a NaN or inf in the hidden states of {f.prompt!r}",
        )
        check_that(
            lm_probes_model_subject.card,
            f.final_matches_logits,
            expected="the output head applied to the last hidden state gives the model's logits",
            obtained=f"it does not, for {f.prompt!r}: the last hidden state is not what the model decodes",
        )


@pytest.mark.observation("U4", expects="attention")
def test_attention_backends_agree(lm_probes_model_subject, lm_probes_attach):
    """The same inputs under two attention implementations: next-token distributions
    within the card's bound, and the same greedy tokens, alone and in a left-padded batch."""
    card = lm_probes_model_subject.card
    backends = tuple(card.expected("attention.backends"))
    found = attention_backends(lm_probes_model_subject, backends)
    note = found.describe(lm_probes_model_subject.tokenizer)
    lm_probes_attach.table(
        ["back-ends", "max |dp|", "top-1 agrees", "greedy agrees"],
        [[" vs ".join(backends), f"{found.max_prob_diff:.3g}", found.top1_agrees, found.greedy_agrees]],
        summary="Attention back-ends (U4)",
    )
    check_at_most(card, "attention.max_prob_diff", float(f"{found.max_prob_diff:.3g}"), note=note)
    check_equal(card, "attention.greedy_agrees", found.greedy_agrees, note=note)
