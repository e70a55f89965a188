"""Snapshots against a real tiny model: each change made to the model or its files is caught,
a re-run in the same environment is not, and the U sections name what changed (split from
test_snapshots.py, issue 36)."""

from __future__ import annotations

import json

import numpy as np
import torch

from lm_probes.maths import softmax64
from lm_probes.snapshots.compare import compare
from lm_probes.snapshots.observe import observe_embedding
from lm_probes.snapshots.record import observe
from lm_probes.subjects import results
from tests.unit.conftest import tiny, tokenizer_subject
from tests.unit.snapshots.snapshot_helpers import compare_with, errors

# ------------------------------------------------------------------ caught changes


def test_legacy_flag_is_caught_on_the_text_it_changes():
    recorded = observe(tokenizer_subject())
    diffs = compare_with(tokenizer_subject(legacy=False), recorded)
    # the article's text, and two of U6's special texts (BOS and EOS glued to a word)
    assert [d.where for d in diffs] == [
        f"tokenizer.ids[{text!r}]" for text in ("Hello <s>world", "<s>Hello", "Hello</s>world") for _ in range(2)
    ]
    assert (
        "(special tokens on) [1, 22557, 28705, 1, 1526] -> [1, 22557, 28705, 1, 9471], first difference at position 4"
        in str(diffs[0])
    )


def test_add_bos_token_flag_is_caught():
    recorded = observe(tokenizer_subject())
    diffs = compare_with(tokenizer_subject(add_bos_token=False), recorded)
    assert diffs and all(d.severity == "error" for d in diffs)
    assert any(
        "(special tokens on) [1, 415, 5565, 302, 4720, 349] -> [415, 5565, 302, 4720, 349], "
        "first difference at position 0" in str(d)
        for d in diffs
    )


def _probed_id(recorded, word="king"):
    return recorded["embedding"]["sub_ids"][word][0]


def embedding_diffs(subject, recorded):
    """compare() of the recording against itself with only its embedding section observed
    anew from ``subject``: an embedding edit changes nothing else the snapshot holds, and
    the other sections' generate() calls (~1 s on tiny-mistral) would show nothing here."""
    current = dict(recorded, embedding=observe_embedding(subject))
    return errors(compare(recorded, current, subject=subject))


def test_a_permuted_embedding_row_is_caught_by_the_cosines(tiny_recorded):
    recorded, _ = tiny_recorded
    subject = tiny()
    row = _probed_id(recorded)
    with torch.no_grad():
        weight = subject.model.get_input_embeddings().weight
        weight[row] = weight[row][torch.randperm(weight.shape[1], generator=torch.Generator().manual_seed(0))]
    diffs = embedding_diffs(subject, recorded)
    cosine = [d for d in diffs if d.where == "embedding.cosine"]
    assert cosine and "cos(king," in cosine[0].message  # norms are unchanged by a permutation
    assert not [d for d in diffs if d.where.startswith("embedding.row_norms")]


def test_a_scaled_embedding_row_is_caught_by_the_norms(tiny_recorded):
    recorded, _ = tiny_recorded
    subject = tiny()
    row = _probed_id(recorded)
    with torch.no_grad():
        subject.model.get_input_embeddings().weight[row] *= 1.5
    diffs = embedding_diffs(subject, recorded)
    assert any(d.where == "embedding.row_norms[king]" for d in diffs), diffs


# A weight change that flips the first greedy token: the break table's row of that name
# (test_break_table.py) runs the snapshot test on it and checks the message.


def test_a_flip_within_the_logit_tie_tolerance_is_a_warning(tiny_recorded, tiny_unchanged):
    recorded, _ = tiny_recorded
    subject = tiny_unchanged
    doctored = json.loads(json.dumps(recorded))
    current = observe(subject)
    # Pretend the recording chose the runner-up at step 0 by a hair: this run's logit gap
    # between the two is then the step's margin, which a generous logit_tie calls a near-tie.
    step = results.greedy_first_run(subject, True).step_logits[0][0]
    runner_up = int(torch.topk(torch.as_tensor(step), 2).indices[1])
    doctored["greedy"]["bos"]["ids"][0] = runner_up
    doctored["greedy"]["bos"]["margins"][0] = 0.001
    diffs = compare(doctored, current, tolerances={"logit_tie": 1.0}, subject=subject)
    flips = [d for d in diffs if d.where == "greedy.bos"]
    assert [d.severity for d in flips] == ["warning"] and "near-tie" in flips[0].message


def test_a_flip_the_recording_made_by_a_wide_margin_is_no_tie(tiny_recorded, tiny_unchanged):
    """The same flip, but the recording chose its token by a margin far above logit_tie:
    the scores moved, whatever this run's gap."""
    recorded, _ = tiny_recorded
    subject = tiny_unchanged
    doctored = json.loads(json.dumps(recorded))
    step = results.greedy_first_run(subject, True).step_logits[0][0]
    doctored["greedy"]["bos"]["ids"][0] = int(torch.topk(torch.as_tensor(step), 2).indices[1])
    doctored["greedy"]["bos"]["margins"][0] = 5.0
    flips = [
        d
        for d in compare(doctored, observe(subject), tolerances={"logit_tie": 1.0}, subject=subject)
        if d.where == "greedy.bos"
    ]
    assert [d.severity for d in flips] == ["error"] and "which is no tie" in flips[0].message


def test_a_recording_without_margins_is_judged_on_this_runs_gap_alone(tiny_recorded, tiny_unchanged):
    """A snapshot written before margins were recorded: a flip within logit_tie of this
    run's choice is a near-tie, as nothing recorded says otherwise."""
    recorded, _ = tiny_recorded
    subject = tiny_unchanged
    doctored = json.loads(json.dumps(recorded))
    step = results.greedy_first_run(subject, True).step_logits[0][0]
    doctored["greedy"]["bos"]["ids"][0] = int(torch.topk(torch.as_tensor(step), 2).indices[1])
    del doctored["greedy"]["bos"]["margins"]
    flips = [
        d
        for d in compare(doctored, observe(subject), tolerances={"logit_tie": 1e3}, subject=subject)
        if d.where == "greedy.bos"
    ]
    assert [d.severity for d in flips] == ["warning"] and "a near-tie" in flips[0].message


def test_a_recorded_top_token_outside_this_runs_top_20_is_read_from_the_full_distribution(
    tiny_recorded, tiny_unchanged
):
    """With the model at hand the recorded top ids are looked up in this run's whole
    distribution, not in the top 20 it keeps: a token that left the top 20 with an
    unchanged probability is no difference."""
    recorded, _ = tiny_recorded
    subject = tiny_unchanged
    probs = softmax64(results.next_token(subject).logits)
    outside = int(np.argsort(-probs, kind="stable")[25])  # not among the top 20 this run keeps
    doctored = json.loads(json.dumps(recorded))
    doctored["next_token"]["top_ids"][-1] = outside
    doctored["next_token"]["top_probs"][-1] = float(probs[outside])  # ~3e-5 on this flat distribution
    diffs = compare(doctored, observe(subject), tolerances={"prob_atol": 1e-6}, subject=subject)
    assert not [d for d in diffs if d.where == "next_token.probs"], diffs


# ---------------------------------------------------------------- harmless changes


def test_a_rerun_in_the_same_environment_matches(tiny_recorded):
    recorded, prov = tiny_recorded
    assert compare_with(tiny(), recorded, prov) == []


# Another thread count: test_break_table.test_another_thread_count_passes_the_greedy_and_snapshot_tests
# runs the snapshot test (and the greedy ones) under it, once for the suite.


# Logit noise of 1e-6: a harmless change of the break table (test_break_table.py), which runs
# the snapshot test under it.


# --------------------------------------------------------- U1-U4 sections (issue 13)


def _changed(recorded: dict, path: list, value) -> dict:
    changed = json.loads(json.dumps(recorded))
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def test_u_sections_compare_clean_and_name_what_changed(tiny_recorded):
    recorded, _ = tiny_recorded
    assert compare(recorded, recorded) == []
    chat_ids = recorded["tokenizer"]["chat"]["ids"]
    cases = {
        "tokenizer.chat.ids": _changed(recorded, ["tokenizer", "chat", "ids"], [1, *chat_ids]),
        "tokenizer.chat": _changed(recorded, ["tokenizer", "chat"], {"has_template": False}),
        "generation.no-arguments.processors": _changed(
            recorded, ["generation", "no-arguments", "processors"], ["RepetitionPenaltyLogitsProcessor"]
        ),
        "generation.hot.settings": _changed(recorded, ["generation", "hot", "effective", "top_k"], 20),
        "attention.greedy": _changed(recorded, ["attention", "greedy_agrees"], False),
        "attention.max_prob_diff": _changed(recorded, ["attention", "max_prob_diff"], 1e-3),
    }
    for where, current in cases.items():
        differences = compare(recorded, current)
        assert [d.where for d in differences] == [where], (where, differences)
    top_k = compare(recorded, cases["generation.hot.settings"])[0]
    assert top_k.message == "top_k: 50 -> 20"
    # the gap between back-ends may double from rounding without an error
    doubled = recorded["attention"]["max_prob_diff"] * 2
    assert compare(recorded, _changed(recorded, ["attention", "max_prob_diff"], doubled)) == []
