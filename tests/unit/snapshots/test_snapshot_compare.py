"""Snapshots compared without a model: one change at a time fails the comparison with a
precise message, harmless changes and changes exactly at a tolerance pass, and the near-tie
judgement at its boundaries (split from test_snapshots.py, issue 36)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lm_probes.maths import softmax64
from lm_probes.snapshots import token_rules
from lm_probes.snapshots.compare import compare, summary_line
from lm_probes.snapshots.differences import Difference, first_diff
from tests.unit.snapshots.snapshot_helpers import changed, diffs_of, observed

# --------------------------------------------- compare() on plain observations, no model


def test_identical_observations_have_no_difference():
    assert diffs_of(observed()) == []


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("tokenizer/vocab_size", 101, ["[error] tokenizer.vocab_size: 100 -> 101"]),
        ("tokenizer/bos_token_id", None, ["[error] tokenizer.bos_token_id: 1 -> None"]),
        (
            "tokenizer/ids/hi/special",
            [1, 5, 9],
            ["[error] tokenizer.ids['hi']: (special tokens on) [1, 5, 6] -> [1, 5, 9], first difference at position 2"],
        ),
        (
            "tokenizer/ids/hi/plain",
            [5],
            ["[error] tokenizer.ids['hi']: (special tokens off) [5, 6] -> [5], first difference at position 1"],
        ),
        ("tokenizer/ids", {}, []),  # a text this run does not probe
        (
            "next_token/prompt_ids",
            [1, 6],
            ["[error] next_token.prompt_ids: [1, 5] -> [1, 6]"],
        ),  # entropies not compared then
        ("next_token/top_probs", [0.5, 0.30005, 0.1], []),  # within prob_atol 1e-4
        (
            "next_token/top_probs",
            [0.5, 0.3002, 0.1],
            ["[error] next_token.probs: max |delta p| 2.00e-04 at id 8 exceeds prob_atol 1e-04"],
        ),
        (
            "temperature/entropy",
            {"0.4": 1.0, "1.0": 2.002},
            ["[error] temperature[1.0]: entropy 2.0 -> 2.002 (entropy_atol 0.001)"],
        ),
        ("temperature/entropy", {"0.4": 1.0}, ["[error] temperature[1.0]: entropy 2.0 -> None (entropy_atol 0.001)"]),
        ("greedy/bos/ids", [7, 3], ["[error] greedy.bos: length 3 -> 2 new tokens"]),
        ("greedy/bos/prompt_ids", [5], ["[error] greedy.bos: prompt ids [1, 5] -> [5]"]),
        # another prompt: its continuation is not compared with the old one's
        (
            "greedy/bos",
            {"prompt_ids": [5], "ids": [9], "text": "z", "margins": [1.0]},
            ["[error] greedy.bos: prompt ids [1, 5] -> [5]"],
        ),
        ("embedding/sub_ids/y", [11], ["[error] embedding.sub_ids[y]: [11, 12] -> [11]"]),
        (
            "embedding/row_norms/y",
            [2.0, 3.001],
            ["[error] embedding.row_norms[y]: [2.0, 3.0] -> [2.0, 3.001] (norm_rtol 1e-05)"],
        ),
        ("embedding/row_norms/y", [2.0], ["[error] embedding.row_norms[y]: [2.0, 3.0] -> [2.0] (norm_rtol 1e-05)"]),
        (
            "embedding/cosine",
            [[1.0, 0.5001], [0.5001, 1.0]],
            ["[error] embedding.cosine: cos(x, y) 0.5 -> 0.5001; max |delta| 1.00e-04 exceeds cosine_atol 1e-05"],
        ),
        ("embedding/cosine", [[1.0]], ["[error] embedding.cosine: shape (2, 2) -> (1, 1)"]),
        (
            "sampled/hot",
            {"ids": [[1, 2], [3, 5]], "texts": ["u", "w"]},
            ["[error] sampled.hot: 1 of 2 samples changed with the same seed and provenance"],
        ),
        (
            "sampled/hot",
            {"ids": [[9, 2], [3, 5]], "texts": ["t", "w"]},
            ["[error] sampled.hot: 2 of 2 samples changed with the same seed and provenance"],
        ),
        ("sampled/seed", 1, []),  # another --lm-probes-seed: other samples are expected
        (
            "embedding/row_norms",
            {"x": [1.0]},
            ["[error] embedding.row_norms[y]: [2.0, 3.0] -> [] (norm_rtol 1e-05)"],
        ),  # a word gone
    ],
)
def test_each_change_is_one_precise_difference(path, value, expected):
    assert diffs_of(changed(path, value)) == expected


def test_a_recorded_top_token_missing_now_counts_with_probability_zero():
    # the plain-file comparison knows only the current top ids; one that fell out of them
    # is compared as p = 0 (its whole recorded probability is the difference)
    current = changed("next_token/top_ids", [7, 8, 10])
    assert diffs_of(current) == ["[error] next_token.probs: max |delta p| 1.00e-01 at id 9 exceeds prob_atol 1e-04"]


def test_a_probability_change_exactly_at_the_tolerance_passes():
    tolerance = 2.0**-14  # exact in binary, so the difference equals it exactly
    current = changed("next_token/top_probs", [0.5 + tolerance, 0.3, 0.1])
    assert diffs_of(current, tolerances={"prob_atol": tolerance}) == []
    current = changed("next_token/top_probs", [0.5 + 2 * tolerance, 0.3, 0.1])
    assert diffs_of(current, tolerances={"prob_atol": tolerance}) != []


def test_two_observation_sets_without_any_section_have_no_difference():
    assert compare({}, {}) == []
    only_recorded = {"tokenizer": {"ids": {"hi": {"special": [1, 5], "plain": [5]}}}}
    assert compare(only_recorded, {"tokenizer": {}}) == []  # no text probed now


def test_a_text_this_run_does_not_probe_leaves_the_others_compared():
    recorded = observed()
    recorded["tokenizer"]["ids"] = {"gone": {"special": [1], "plain": []}, **recorded["tokenizer"]["ids"]}
    assert diffs_of(changed("tokenizer/ids/hi/plain", [5]), recorded=recorded) == [
        "[error] tokenizer.ids['hi']: (special tokens off) [5, 6] -> [5], first difference at position 1"
    ]


def test_row_norms_are_compared_relatively_however_small():
    # no absolute floor: a norm that doubles is a change even at 1e-9
    recorded = changed("embedding/row_norms/x", [1e-9])
    assert diffs_of(changed("embedding/row_norms/x", [2e-9]), recorded=recorded) == [
        "[error] embedding.row_norms[x]: [1e-09] -> [2e-09] (norm_rtol 1e-05)"
    ]


def test_a_cosine_change_exactly_at_the_tolerance_passes():
    tolerance = 2.0**-17  # exact in binary
    current = changed("embedding/cosine", [[1.0, 0.5 + tolerance], [0.5 + tolerance, 1.0]])
    assert diffs_of(current, tolerances={"cosine_atol": tolerance}) == []


def test_a_top1_change_is_a_warning_only_within_the_recorded_gap():
    swapped = changed("next_token/top_ids", [8, 7, 9])
    swapped["next_token"]["top_probs"] = [0.5, 0.3, 0.1]
    tied = observed()
    tied["next_token"]["top_probs"] = [0.40005, 0.4, 0.1]
    now_tied = changed("next_token/top_ids", [8, 7, 9])
    now_tied["next_token"]["top_probs"] = [0.40005, 0.4, 0.1]
    assert "[error] next_token.top1: 7 -> 8 (recorded top-2 gap 2.00e-01)" in diffs_of(swapped)
    assert diffs_of(now_tied, recorded=tied)[-1] == "[warning] next_token.top1: 7 -> 8 (recorded top-2 gap 5.00e-05)"


def test_every_greedy_run_is_compared_whatever_the_one_before_it_showed():
    def two_runs(bos: dict) -> dict:
        current = observed()
        current["greedy"] = {
            "bos": bos,
            "no-bos": {"prompt_ids": [5], "ids": [7, 3], "text": "a b", "margins": [1.0, 1.0]},
        }
        return current

    recorded = two_runs(observed()["greedy"]["bos"])
    second = "[error] greedy.no-bos: length 3 -> 2 new tokens"
    recorded["greedy"]["no-bos"]["ids"] = [7, 3, 4]
    for bos, first in (
        (
            {"prompt_ids": [1, 6], "ids": [7, 3, 4], "text": "a b c", "margins": [1.0] * 3},
            ["[error] greedy.bos: prompt ids [1, 5] -> [1, 6]"],
        ),
        (observed()["greedy"]["bos"], []),  # unchanged
        (
            {"prompt_ids": [1, 5], "ids": [7, 3], "text": "a b", "margins": [1.0] * 2},
            ["[error] greedy.bos: length 3 -> 2 new tokens"],
        ),
    ):
        assert diffs_of(two_runs(bos), recorded=recorded) == [*first, second]


def test_a_top1_swap_exactly_at_the_tolerance_is_a_warning():
    tolerance = 2.0**-14
    recorded = changed("next_token/top_probs", [0.5 + tolerance, 0.5, 0.0])
    current = changed("next_token/top_ids", [8, 7, 9])
    current["next_token"]["top_probs"] = [0.5 + tolerance, 0.5, 0.0]
    assert diffs_of(current, recorded=recorded, tolerances={"prob_atol": tolerance})[-1].startswith(
        "[warning] next_token.top1: 7 -> 8"
    )


def test_a_greedy_flip_without_the_model_is_an_error_with_both_texts():
    [message] = diffs_of(changed("greedy/bos/ids", [7, 2, 4]) | {})
    assert message.startswith("[error] greedy.bos: continuation changed at new token 1: recorded 3 -> now 2")
    assert "recorded: 'a b c'" in message


def test_tolerances_from_the_card_replace_the_defaults():
    loose = {"prob_atol": 1e-3, "entropy_atol": 0.01, "cosine_atol": 1e-3, "norm_rtol": 1e-3}
    current = changed("next_token/top_probs", [0.5, 0.3002, 0.1])
    current["temperature"]["entropy"]["1.0"] = 2.002
    current["embedding"]["cosine"] = [[1.0, 0.5001], [0.5001, 1.0]]
    current["embedding"]["row_norms"]["y"] = [2.0, 3.001]
    assert diffs_of(current, tolerances=loose) == []


def test_a_model_on_one_side_only_is_one_error():
    tokenizer_only = {"tokenizer": observed()["tokenizer"]}
    assert diffs_of(tokenizer_only) == ["[error] model: the snapshot and this run disagree on whether there is a model"]
    assert diffs_of(observed(), recorded=tokenizer_only) == [
        "[error] model: the snapshot and this run disagree on whether there is a model"
    ]
    assert diffs_of(tokenizer_only, recorded=tokenizer_only) == []


def test_sampled_texts_are_compared_only_under_the_same_provenance():
    prov = {"torch": "2.13.0", "transformers": "5.23.0", "device": "cpu", "dtype": "float32", "cpu threads": 2}
    current = changed("sampled/hot", {"ids": [[9, 9], [3, 4]], "texts": ["z", "v"]})
    assert diffs_of(current, rec_prov=prov, cur_prov=prov) == [
        "[error] sampled.hot: 1 of 2 samples changed with the same seed and provenance"
    ]
    for key in ("torch", "transformers", "device", "dtype", "cpu threads"):
        other = prov | {key: "other"}
        assert diffs_of(current, rec_prov=prov, cur_prov=other) == []
        assert token_rules.why_samples_not_comparable(prov, other) == [f"{key} {prov[key]} -> other"]
    current["sampled"].pop("hot")  # a regime this run does not have: nothing to compare
    assert diffs_of(current, rec_prov=prov, cur_prov=prov) == []


def test_softmax64_is_a_stable_distribution():
    p = softmax64(np.array([1000.0, 1000.0, 0.0]))
    assert (
        p.dtype == np.float64
        and p[0] == pytest.approx(0.5)
        and p[2] == pytest.approx(0.0)
        and p.sum() == pytest.approx(1.0)
    )


def test_first_diff_is_the_first_unequal_position_or_the_shorter_length():
    assert first_diff([1, 2, 3], [1, 9, 3]) == 1
    assert first_diff([1, 2], [1, 2, 3]) == 2
    assert first_diff([], [1]) == 0


# ------------------------------------- the near-tie judgement, with a stand-in tokenizer


class ShowId:
    """A stand-in tokenizer for the near-tie messages: decode([i]) is '<i>'."""

    def decode(self, ids):
        return f"<{ids[0]}>"


def test_a_token_that_is_not_this_runs_argmax_is_an_error_naming_the_cause():
    """Hole 1 of issue 10: the run did not pick its own argmax (a processor changed the
    choice); the gap is negative, which the old check took for a near-tie."""

    step = np.array([0.0, 3.0, 1.2, 1.0], dtype=np.float32)  # argmax 1; the run chose 2; recorded 1
    severity, message = token_rules.judge_greedy_flip(step, 3, 1, 2, [0.5, 0.5, 0.5, 2.0], 0.01, ShowId())
    assert severity == "error"
    assert "did not pick the highest-scoring token: 1 '<1>' scored 1.8000 more" in message
    assert "repetition_penalty" in message and "near-tie" not in message
    # a real near-tie: the run took its argmax, the recorded token is within logit_tie, and
    # the recording's own margin was within it too
    tie = np.array([0.0, 2.0, 2.005, 1.0], dtype=np.float32)
    assert token_rules.judge_greedy_flip(tie, 0, 1, 2, [0.004], 0.01, ShowId())[0] == "warning"
    # gap above logit_tie: the scores changed
    assert "the scores changed" in token_rules.judge_greedy_flip(tie, 0, 1, 2, [0.004], 0.001, ShowId())[1]


def test_near_tie_rules_at_their_boundaries():
    step = np.array([0.0, 2.0, 2.5], dtype=np.float32)  # the run took 2 (argmax); recorded 1; gap 0.5
    judge = token_rules.judge_greedy_flip
    assert judge(step, 0, 1, 2, [0.5], 0.5, ShowId())[0] == "warning"  # gap and margin exactly at logit_tie
    assert judge(step, 0, 1, 2, [], 0.5, ShowId())[0] == "warning"  # no recorded margin for that step
    assert judge(step, 1, 1, 2, [0.5], 0.5, ShowId())[0] == "warning"
    severity, message = judge(step, 0, 2, 1, [0.5], 0.5, ShowId())  # the run took 1, not its argmax 2
    assert severity == "error" and message.endswith(
        "so generate() did not decode greedily (a logits processor inherited from generation_config.json, "
        "e.g. repetition_penalty, or sampling changed the choice)"
    )


def test_an_entropy_change_exactly_at_the_tolerance_passes():
    assert diffs_of(changed("temperature/entropy", {"0.4": 1.0, "1.0": 2.5}), tolerances={"entropy_atol": 0.5}) == []


def test_softmax64_works_in_float64_whatever_the_input():
    z = np.array([0.0, 20.0], dtype=np.float32)
    p = softmax64(z)
    assert p.dtype == np.float64 and p[0] == np.exp(-20.0) / (1 + np.exp(-20.0))


def test_summary_line_lists_every_change_and_place():
    before = {"torch": "1", "transformers": "1"}
    after = {"torch": "2", "transformers": "2"}
    diffs = [
        Difference("error", "b", "x"),
        Difference("error", "a", "y"),
        Difference("warning", "d", "z"),
        Difference("warning", "c", "w"),
    ]
    assert summary_line(before, after, diffs) == (
        "torch 1 -> 2, transformers 1 -> 2: 2 error(s) in a, b; 2 warning(s) in c, d"
    )


def test_a_cuda_subject_is_classed_by_compute_capability():
    from lm_probes.numerics import Numerics, machine_class

    cuda = Numerics(device="cuda", device_name="NVIDIA H100", architecture="x86_64", cuda_capability="9.0")
    assert machine_class(cuda) == "cuda-sm90"
    assert machine_class(replace(cuda, model_dtype="float16", bnb_kernel="cuda", compute_dtype_ran="float16")) == (
        "cuda-sm90"  # the CUDA kernels are named by the capability alone
    )
