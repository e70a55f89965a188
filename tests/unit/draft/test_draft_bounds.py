"""The draft's sampling bounds whose derivation changed in issue 34, old and new side by side
on SmolLM2, and the break each was set for.

D6 (a share equal to greedy) and D7 (a share naming the answer) were the smallest share over
10 simulated draws of 5 samples, less one sample's worth: 45 extra rows of 20 tokens each. They
are now set from a measured probability (lm_probes/draft/sampling_bounds.py, ``near_greedy_share`` and
``warm_answer_share``): the chance that one sample is greedy's text or names the answer, read
from one forward pass under generate()'s own warpers, and a binomial tail with a stated false
alarm rate (``BinomialShare``). The counts of distinct samples keep their rule and read draws
that stop once every group's samples differ (``test_draws_that_stop_once_groups_differ_...``).
"""

from __future__ import annotations

import copy

import pytest

from lm_probes.draft import sampling_bounds
from lm_probes.inputs import article_inputs
from lm_probes.subjects import results
from tests.unit.break_patches import warpers_ignored
from tests.unit.break_running import Check, smollm2
from tests.unit.conftest import tiny

DRAWS = 10  # the draft's default --draws, which the old rule simulated


def simulated_share_bound(groups, share_of) -> float:
    """The rule before issue 34: the smallest share over the draws, less one sample's worth."""
    samples = len(groups[0].texts)
    return round(min(share_of(g) for g in groups) - 1 / samples, 4)


def top_p_ignored(monkeypatch):
    """generate() drops top-p: the warm regime samples at T = 1.4 from the whole vocabulary."""
    from transformers import TopPLogitsWarper

    monkeypatch.setattr(TopPLogitsWarper, "__call__", lambda self, input_ids, scores: scores)


@pytest.mark.long  # ~25 s: the simulated rule's 90 rows, the probabilities, two breaks
def test_share_bounds_from_probabilities_are_no_weaker_than_simulated_ones_and_catch_their_breaks(monkeypatch):
    """SmolLM2, measured (transformers 5.23.0, torch 2.13.0, 2 CPU threads): greedy's 20
    tokens and the answer's first token (" Tokyo") each have probability 1 under their
    regime's warpers (a nucleus of one token at every step), so both new bounds are 1.0 with
    no false alarm, where the simulated rule gave 0.8 (all 10 draws at 1.0, less 0.2). Each
    still fails the break it was set for: D6 generate() ignoring temperature and top-p
    (samples at T = 1 are not greedy's text), D7 generate() ignoring top-p (at T = 1.4 over
    the whole vocabulary not every sample names Tokyo)."""
    subject = smollm2()
    reference = results.greedy_reference(subject).texts[0]
    answer = article_inputs()["sampling"]["answer"]
    new = {
        "near-greedy": sampling_bounds.near_greedy_share(subject),
        "warm": sampling_bounds.warm_answer_share(subject),
    }
    old = {
        "near-greedy": simulated_share_bound(
            sampling_bounds.sample_groups(subject, "near-greedy", DRAWS),
            lambda g: sum(t == reference for t in g.texts) / len(g.texts),
        ),
        "warm": simulated_share_bound(
            sampling_bounds.sample_groups(subject, "warm", DRAWS), lambda g: g.share_containing(answer)
        ),
    }
    side_by_side = "\n".join(f"{r}: simulated {old[r]}, from probability {new[r][0]} ({new[r][1]})" for r in new)
    assert all(new[r][0] >= old[r] for r in new), f"a new bound is weaker than the old one:\n{side_by_side}"
    assert (old["near-greedy"], new["near-greedy"][0]) == (0.8, 1.0), side_by_side
    assert (old["warm"], new["warm"][0]) == (0.8, 1.0), side_by_side
    assert "never, at p = 1" in new["near-greedy"][1] and "greedy's 20 tokens" in new["near-greedy"][1]

    expect = copy.deepcopy(subject.card.written_expect)
    expect["sampling"]["near-greedy"]["min_greedy_agreement"] = new["near-greedy"][0]
    expect["sampling"]["warm"]["min_answer_share"] = new["warm"][0]
    breaks = {
        "near-greedy": (warpers_ignored, "test_decoding.py::test_low_top_p_low_temperature_behaves_like_greedy"),
        "warm": (top_p_ignored, "test_decoding.py::test_low_top_p_high_temperature_varies_but_keeps_the_answer"),
    }
    for regime, (patch, test) in breaks.items():
        with monkeypatch.context() as patched:
            patch(patched)
            broken = smollm2()
            broken.card = broken.card.replace(expect=expect)
            outcome, message = Check(test).run(broken)
        assert outcome == "failed", f"{regime}: {test} {outcome} under its break"
        field = {"near-greedy": "min_greedy_agreement", "warm": "min_answer_share"}[regime]
        assert f"sampling.{regime}.{field}" in message, message


def test_draws_that_stop_once_groups_differ_count_the_same_distinct_samples_as_full_draws():
    """The counts' draws (D7 warm, K2 openings) stop as soon as every group's samples differ:
    each group counts as many distinct samples as the full draws of the same seed, which
    each stopped row begins, at fewer decode steps (tiny-mistral's story openings)."""
    subject = tiny()
    runs = article_inputs()["creative"]["runs"]
    full = results.openings(subject, sampling=True, seed=1, runs=runs * 3)
    early = results.openings(subject, sampling=True, seed=1, runs=runs * 3, until_groups_differ=runs)
    for whole, cut in zip(full, early):
        assert [g.distinct for g in whole.groups(runs)] == [len(set(g.new_ids)) for g in cut.groups(runs)]
        # the same draws: each stopped row begins the full row
        assert all(w[: len(c)] == c for w, c in zip(whole.new_ids, cut.new_ids))
    assert max(len(r) for g in early for r in g.new_ids) < max(len(r) for g in full for r in g.new_ids)


def test_scaled_layer_writes_one_layer_times_the_factor_and_every_other_tensor_as_it_was(tmp_path):
    """scripts/scaled_layer.py, the break a drafted card must catch (docs/benchmarks.md): layer
    1 of a saved 2-layer model times 1.02, the rest bit for bit, and the folder loads."""
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from lm_probes.paths import REPO_ROOT

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "model")
    script = [sys.executable, str(REPO_ROOT / "scripts" / "scaled_layer.py"), str(tmp_path / "model")]
    result = subprocess.run([*script, str(tmp_path / "scaled"), "--layer", "1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    before = load_file(tmp_path / "model" / "model.safetensors")
    after = load_file(tmp_path / "scaled" / "model.safetensors")
    assert sorted(before) == sorted(after)
    for name, tensor in before.items():
        expected = (tensor.double() * 1.02).to(tensor.dtype) if name.startswith("model.layers.1.") else tensor
        assert torch.equal(after[name], expected), name
    assert sum(name.startswith("model.layers.1.") for name in before) == 9
    AutoModelForCausalLM.from_pretrained(tmp_path / "scaled")  # the linked config and the new weights load
    refused = subprocess.run([*script, str(tmp_path / "scaled"), "--layer", "1"], capture_output=True, text=True)
    assert refused.returncode == 2 and "exists; choose a new folder" in refused.stderr
