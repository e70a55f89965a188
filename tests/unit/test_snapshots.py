"""Snapshots: one change at a time must fail the comparison with a precise message, and
harmless changes (a re-run, another thread count, noise below tolerance) must not."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from probes.maths import softmax64
from probes.paths import SNAPSHOT_DIR
from probes.snapshots import compare as comparing
from probes.snapshots import observe as observing
from probes.snapshots import record as recording
from probes.snapshots import sections, token_rules
from probes.snapshots.check import SnapshotCheck, SnapshotOutcome
from probes.snapshots.differences import Difference, first_diff
from probes.subjects import results
from probes.subjects.subject import Subject
from tests.unit.conftest import tiny, tokenizer_subject


@pytest.fixture(scope="module")
def tiny_unchanged() -> Subject:
    """One tiny-mistral subject for the tests that doctor only the recording (its probe
    results are computed once and shared); tests that change the model build their own."""
    return tiny()


@pytest.fixture(scope="module")
def tiny_recorded(tiny_unchanged):
    return recording.observe(tiny_unchanged), recording.provenance(tiny_unchanged)


def errors(diffs):
    return [d for d in diffs if d.severity == "error"]


def compare_with(subject, recorded, recorded_prov=None):
    return comparing.compare(
        recorded,
        recording.observe(subject),
        subject=subject,
        recorded_provenance=recorded_prov or {},
        current_provenance=recording.provenance(subject),
    )


# --------------------------------------------- compare() on plain observations, no model


def observed() -> dict:
    """A small recorded observation set, as ``observe`` lays it out."""
    return {
        "tokenizer": {"vocab_size": 100, "bos_token_id": 1, "ids": {"hi": {"special": [1, 5, 6], "plain": [5, 6]}}},
        "next_token": {"prompt": "p", "prompt_ids": [1, 5], "top_ids": [7, 8, 9], "top_probs": [0.5, 0.3, 0.1]},
        "temperature": {"entropy": {"0.4": 1.0, "1.0": 2.0}},
        "greedy": {"bos": {"prompt_ids": [1, 5], "ids": [7, 3, 4], "text": "a b c", "margins": [1.0, 1.0, 1.0]}},
        "embedding": {
            "words": ["x", "y"],
            "sub_ids": {"x": [10], "y": [11, 12]},
            "row_norms": {"x": [1.0], "y": [2.0, 3.0]},
            "cosine": [[1.0, 0.5], [0.5, 1.0]],
        },
        "sampled": {"seed": 0, "hot": {"ids": [[1, 2], [3, 4]], "texts": ["u", "v"]}},
    }


def changed(path: str, value) -> dict:
    current = observed()
    *parents, last = path.split("/")
    node = current
    for key in parents:
        node = node[key]
    node[last] = value
    return current


def diffs_of(current, recorded=None, tolerances=None, rec_prov=None, cur_prov=None) -> list[str]:
    return [
        str(d)
        for d in comparing.compare(
            recorded or observed(),
            current,
            tolerances=tolerances or {},
            recorded_provenance=rec_prov,
            current_provenance=cur_prov,
        )
    ]


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
        ("sampled/seed", 1, []),  # another --seed: other samples are expected
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
    assert comparing.compare({}, {}) == []
    only_recorded = {"tokenizer": {"ids": {"hi": {"special": [1, 5], "plain": [5]}}}}
    assert comparing.compare(only_recorded, {"tokenizer": {}}) == []  # no text probed now


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
    assert comparing.summary_line(before, after, diffs) == (
        "torch 1 -> 2, transformers 1 -> 2: 2 error(s) in a, b; 2 warning(s) in c, d"
    )


def test_a_cuda_subject_is_classed_by_compute_capability():
    from probes.numerics import Numerics, machine_class

    cuda = Numerics(device="cuda", device_name="NVIDIA H100", architecture="x86_64", cuda_capability="9.0")
    assert machine_class(cuda) == "cuda-sm90"
    assert machine_class(replace(cuda, model_dtype="float16", bnb_kernel="cuda", compute_dtype_ran="float16")) == (
        "cuda-sm90"  # the CUDA kernels are named by the capability alone
    )


# ------------------------------------------------------------------- snapshot files


def test_record_writes_stable_readable_json(tmp_path):
    subject = tokenizer_subject()
    path = recording.record(subject, tmp_path)
    assert path == tmp_path / "mistral-tokenizer" / "cpu.json"
    first = path.read_text(encoding="utf-8")
    recording.record(subject, tmp_path)
    second = path.read_text(encoding="utf-8")
    strip = lambda text: [line for line in text.splitlines() if '"recorded"' not in line]  # noqa: E731
    assert strip(first) == strip(second)  # same content, same order: a clean diff
    assert '"日本の首都は"' in first  # readable, not \\u-escaped
    assert "[1, 415, 5565, 302, 4720, 349]" in first  # short number lists on one line


def test_missing_corrupt_and_foreign_snapshots_say_how_to_fix(tmp_path):
    hint = "pytest tests/behaviour/test_snapshot.py --card x --snapshot-update"
    with pytest.raises(recording.SnapshotError, match="no snapshot at .*Record one with: pytest"):
        recording.load(tmp_path / "none.json", hint)
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"format": 1, "observed": {"tok', encoding="utf-8")
    with pytest.raises(recording.SnapshotError, match="corrupt or truncated .*Re-record it with"):
        recording.load(truncated, hint)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(recording.SnapshotError, match="not a format-1 lm-probes snapshot"):
        recording.load(foreign, hint)


def test_summary_line_names_what_changed():
    diffs = [Difference("warning", "greedy.bos", "x"), Difference("error", "next_token.probs", "y")]
    line = comparing.summary_line(
        {"transformers": "4.57.6", "torch": "2.13.0"}, {"transformers": "5.23.0", "torch": "2.13.0"}, diffs
    )
    assert line == "transformers 4.57.6 -> 5.23.0: 1 error(s) in next_token.probs; 1 warning(s) in greedy.bos"


# ------------------------------------ mutation testing survivors (docs/reliability.md, "Mutation score")


def test_dumps_is_sorted_indented_unicode_with_number_lists_inline():
    text = recording.dumps({"b": [1e-05, -2.5, 3], "a": {"テキスト": [[1, 2], ["x"]]}})
    assert text == (
        '{\n "a": {\n  "テキスト": [\n   [1, 2],\n   [\n    "x"\n   ]\n  ]\n },\n "b": [1e-05, -2.5, 3]\n}\n'
    )


def test_dumps_never_rewrites_a_string_that_holds_a_number_list():
    """A generated text holding code or JSON ("ids [1,2,3]") is written as the model said it;
    the regular expression over the JSON text that dumps used to be wrote "ids [1, 2, 3]"."""
    observed = {"texts": ["ids [1,2,3]", "[ 4 ,5 ]"], "ids": [1, 2, 3]}
    text = recording.dumps(observed)
    assert json.loads(text) == observed
    assert '"ids [1,2,3]"' in text and '"[ 4 ,5 ]"' in text and '"ids": [1, 2, 3]' in text


@pytest.mark.parametrize("path", sorted(p.relative_to(SNAPSHOT_DIR).as_posix() for p in SNAPSHOT_DIR.glob("*/*.json")))
def test_dumps_writes_every_committed_snapshot_back_byte_for_byte(path):
    text = (SNAPSHOT_DIR / path).read_text(encoding="utf-8")
    assert recording.dumps(json.loads(text)) == text


def test_record_creates_missing_folders_and_writes_a_loadable_snapshot(tmp_path):
    root = tmp_path / "new" / "snapshots"  # neither folder exists yet
    path = recording.record(tokenizer_subject(), root)
    snapshot = recording.load(path, "hint")
    assert sorted(snapshot) == ["card", "format", "observed", "provenance"]
    assert snapshot["card"] == "mistral-tokenizer" and snapshot["format"] == recording.FORMAT
    assert snapshot["provenance"]["device"] == "cpu" and "vocab_size" in snapshot["observed"]["tokenizer"]
    assert [p.name for p in path.parent.iterdir()] == ["cpu.json"]  # no temporary file left


@pytest.mark.parametrize(
    "content",
    ["[1, 2]", '{"format": 1}', '{"format": 2, "observed": {}}', '{"observed": {}}'],
    ids=["a-list", "no-observed", "other-format", "no-format"],
)
def test_a_snapshot_of_another_shape_is_refused(tmp_path, content):
    path = tmp_path / "s.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(recording.SnapshotError, match="not a format-1 lm-probes snapshot"):
        recording.load(path, "hint")
    path.write_text('{"format": 1, "observed": {}}', encoding="utf-8")
    assert recording.load(path, "hint") == {"format": 1, "observed": {}}


@pytest.mark.parametrize("key", ["torch", "transformers", "tokenizers", "device", "dtype", "cpu threads"])
def test_summary_line_names_each_provenance_change(key):
    before = {k: "1" for k in ("torch", "transformers", "tokenizers", "device", "dtype", "cpu threads")}
    after = before | {key: "2"}
    assert comparing.summary_line(before, after, []) == f"{key} 1 -> 2: no change beyond tolerance"
    assert comparing.summary_line(before, before, []) == "same versions and machine class: no change beyond tolerance"
    two = after | {"torch": "3"} if key != "torch" else after | {"dtype": "3"}
    assert ", " in comparing.summary_line(before, two, [])


# ====================================================================== model-backed
# The tests below build tiny-mistral subjects and observe them (about 1.5 s each); the
# ones above take milliseconds. Mutation testing runs every test that reaches a mutated
# function in file order and stops at the first failure, so the quick ones come first.

# ------------------------------------------------------------------ caught changes


def test_legacy_flag_is_caught_on_the_text_it_changes():
    recorded = recording.observe(tokenizer_subject())
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
    recorded = recording.observe(tokenizer_subject())
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
    current = dict(recorded, embedding=observing.observe_embedding(subject))
    return errors(comparing.compare(recorded, current, subject=subject))


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
    current = recording.observe(subject)
    # Pretend the recording chose the runner-up at step 0 by a hair: this run's logit gap
    # between the two is then the step's margin, which a generous logit_tie calls a near-tie.
    step = results.greedy_first_run(subject, True).step_logits[0][0]
    runner_up = int(torch.topk(torch.as_tensor(step), 2).indices[1])
    doctored["greedy"]["bos"]["ids"][0] = runner_up
    doctored["greedy"]["bos"]["margins"][0] = 0.001
    diffs = comparing.compare(doctored, current, tolerances={"logit_tie": 1.0}, subject=subject)
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
        for d in comparing.compare(doctored, recording.observe(subject), tolerances={"logit_tie": 1.0}, subject=subject)
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
        for d in comparing.compare(doctored, recording.observe(subject), tolerances={"logit_tie": 1e3}, subject=subject)
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
    diffs = comparing.compare(doctored, recording.observe(subject), tolerances={"prob_atol": 1e-6}, subject=subject)
    assert not [d for d in diffs if d.where == "next_token.probs"], diffs


# ---------------------------------------------------------------- harmless changes


def test_a_rerun_in_the_same_environment_matches(tiny_recorded):
    recorded, prov = tiny_recorded
    assert compare_with(tiny(), recorded, prov) == []


# Another thread count: test_break_table.test_another_thread_count_passes_the_greedy_and_snapshot_tests
# runs the snapshot test (and the greedy ones) under it, once for the suite.


# Logit noise of 1e-6: a harmless change of the break table (test_break_table.py), which runs
# the snapshot test under it.


# ------------------------------------------------------- what observe() and provenance() hold


def test_provenance_reads_versions_device_and_files_from_the_run():
    import re

    from probes.environment import environment_info

    env = environment_info()
    prov = recording.provenance(tokenizer_subject())
    assert sorted(prov) == sorted(
        [
            "python",
            "torch",
            "transformers",
            "tokenizers",
            "device",
            "class",
            "numerics",
            "gpu",
            "cpu threads",
            "dtype",
            "quantization",
            "model source",
            "files",
            "revision",
            "recorded",
            "sections",
        ]
    )
    assert prov["sections"] == [section.name for section in sections.SECTIONS]
    for key in ("python", "torch", "transformers", "tokenizers", "gpu", "cpu threads"):
        assert prov[key] == env[key], key
    assert (prov["device"], prov["dtype"], prov["quantization"], prov["revision"]) == ("cpu", "-", "none", None)
    assert prov["class"] == "cpu" and prov["numerics"]["model_dtype"] == "-"  # no kernels: one class
    assert prov["model source"] == "mistral_common/data/tokenizer.model.v1"
    assert list(prov["files"]) == ["tokenizer.model.v1"] and len(prov["files"]["tokenizer.model.v1"]) == 16
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", prov["recorded"])
    model_prov = recording.provenance(tiny())
    assert (model_prov["device"], model_prov["dtype"], model_prov["class"]) == ("cpu", "float32", "cpu")
    assert model_prov["numerics"]["model_dtype"] == "float32" and model_prov["numerics"]["bnb_kernel"] is None
    assert model_prov["model source"] == "random MistralForCausalLM (seed 0)"


def test_observe_holds_every_probe_of_a_model_subject(tiny_recorded):
    recorded, _ = tiny_recorded
    assert sorted(recorded) == [
        "answer_ends",
        "attention",
        "embedding",
        "generation",
        "greedy",
        "hidden_states",
        "next_token",
        "sampled",
        "temperature",
        "tokenizer",
    ]
    # U1-U4 (issue 13)
    assert recorded["tokenizer"]["chat"]["has_template"] and recorded["tokenizer"]["chat"]["ids"][:2] == [1, 733]
    assert sorted(recorded["generation"]) == ["greedy", "hot", "no-arguments"]
    assert recorded["generation"]["hot"]["processors"] == [
        "TemperatureLogitsWarper",
        "TopKLogitsWarper",
        "TopPLogitsWarper",
    ]
    assert [len(h["norms"]) for h in recorded["hidden_states"]] == [3, 3]
    assert all(len(row) == 16 for h in recorded["hidden_states"] for row in h["projections"])
    assert recorded["attention"]["backends"] == ["eager", "sdpa"] and recorded["attention"]["greedy_agrees"]
    tok = recorded["tokenizer"]
    assert (tok["vocab_size"], tok["bos_token_id"]) == (32000, 1)
    assert tok["ids"]["The capital of Japan is"] == {
        "special": [1, 415, 5565, 302, 4720, 349],
        "plain": [415, 5565, 302, 4720, 349],
    }
    nt = recorded["next_token"]
    assert nt["prompt"] == "The capital of Japan is" and nt["prompt_ids"] == [1, 415, 5565, 302, 4720, 349]
    assert len(nt["top_ids"]) == len(set(nt["top_ids"])) == len(nt["top_probs"]) == observing.TOP_N
    assert nt["top_probs"] == sorted(nt["top_probs"], reverse=True) and 0 < nt["top_probs"][0] < 1
    assert all(p == round(p, 7) for p in nt["top_probs"])
    assert sorted(recorded["temperature"]["entropy"]) == ["0.4", "1.0", "1.6"]
    entropies = [recorded["temperature"]["entropy"][t] for t in ("0.4", "1.0", "1.6")]
    assert entropies == sorted(entropies) and all(e == round(e, 6) for e in entropies)
    for label, first in (("bos", [1]), ("no-bos", [])):
        g = recorded["greedy"][label]
        assert g["prompt_ids"] == first + [415, 5565, 302, 4720, 349]
        assert len(g["ids"]) == len(g["margins"]) == 20 and all(m >= 0 for m in g["margins"])
        assert isinstance(g["text"], str) and g["text"]
    emb = recorded["embedding"]
    assert len(emb["words"]) == 20 and emb["words"][:2] == ["king", "queen"]
    assert [len(emb["row_norms"][w]) for w in emb["words"]] == [len(emb["sub_ids"][w]) for w in emb["words"]]
    assert len(emb["cosine"]) == 20 and all(
        len(row) == 20 and row[i] == pytest.approx(1.0) for i, row in enumerate(emb["cosine"])
    )
    assert recorded["sampled"]["seed"] == 0
    assert sorted(k for k in recorded["sampled"] if k != "seed") == ["hot", "near-greedy", "warm"]
    assert all(
        len(recorded["sampled"][r]["ids"]) == len(recorded["sampled"][r]["texts"]) == 5
        for r in ("hot", "near-greedy", "warm")
    )


def test_a_tokenizer_only_subject_has_the_cpu_class_and_only_tokenizer_observations(tmp_path):
    subject = tokenizer_subject()
    assert subject.machine_class == "cpu"
    assert recording.snapshot_path(subject, tmp_path) == tmp_path / "mistral-tokenizer" / "cpu.json"
    assert list(recording.observe(subject)) == ["tokenizer"]


def test_sections_a_card_leaves_out_are_not_compared_but_a_changed_leave_out_is_an_error():
    lean = {k: v for k, v in observed().items() if k not in ("greedy", "sampled")}
    assert diffs_of(lean, recorded=lean) == []  # both leave greedy and sampled out
    changed_embedding = {**lean, "embedding": {**lean["embedding"], "cosine": [[1.0, 0.6], [0.6, 1.0]]}}
    assert diffs_of(changed_embedding, recorded=lean) != []  # what is kept is still compared
    assert diffs_of(lean) == [
        "[error] greedy: the snapshot has it, this run leaves it out (the card's snapshot.leave_out changed?)",
        "[error] sampled: the snapshot has it, this run leaves it out (the card's snapshot.leave_out changed?)",
    ]
    assert diffs_of(observed(), recorded=lean)[0] == (
        "[error] greedy: the snapshot leaves it out, this run has it (the card's snapshot.leave_out changed?)"
    )


def test_a_bitsandbytes_upgrade_is_named_in_the_summary_and_stops_sampled_comparison():
    rec = {"torch": "2.13.0", "transformers": "5.23.0", "bitsandbytes": "0.49.2", "quantization": "nf4"}
    cur = {**rec, "bitsandbytes": "0.50.2"}
    assert comparing.summary_line(rec, cur, []) == "bitsandbytes 0.49.2 -> 0.50.2: no change beyond tolerance"
    assert token_rules.why_samples_not_comparable(rec, cur) == ["bitsandbytes 0.49.2 -> 0.50.2"]


def test_a_first_gpu_run_skips_only_where_no_class_is_recorded_and_a_missing_cpu_snapshot_is_not_excused(tmp_path):
    card_dir = tmp_path / "mistral-7b-v0.1"
    card_dir.mkdir()
    assert recording.unrecorded_device_class(card_dir / "cuda-sm90.json") == (
        "no snapshot for machine class cuda-sm90 yet (recorded: none)"
    )
    (card_dir / "cpu-bnb-float16.json").write_text("{}", encoding="utf-8")
    # another class recorded: compared with it under the cross-class rules, not skipped
    assert recording.unrecorded_device_class(card_dir / "cuda-sm90.json") is None
    assert recording.recorded_classes(card_dir) == ["cpu-bnb-float16"]
    assert recording.unrecorded_device_class(tmp_path / "other" / "cpu.json") is None  # load() fails it
    assert recording.unrecorded_device_class(tmp_path / "other" / "cpu-bnb-float16.json") is None


def test_snapshot_warning_is_importable_from_the_package_and_compare_takes_keywords():
    """Issue 12: `probes.SnapshotWarning` (to filter it, or `-W error::probes.SnapshotWarning`
    to fail on near-ties), and compare()'s options by name only, so a call cannot mix up
    the two provenances."""
    import probes

    assert probes.SnapshotWarning.__module__ == "probes"  # defined there: naming it imports nothing else
    assert issubclass(probes.SnapshotWarning, UserWarning)
    with pytest.raises(TypeError):
        comparing.compare({}, {}, {})  # tolerances positionally


def test_the_snapshot_fixture_records_then_compares_and_keeps_typed_outcomes(tmp_path):
    """SnapshotCheck (the `snapshot` fixture) on the tokenizer card in an empty folder:
    missing -> failed with the record command; --snapshot-update -> recorded; then a
    compare -> passed. Each outcome survives the JSON trip from an xdist worker."""
    subject = tokenizer_subject()
    check = SnapshotCheck(tmp_path, dir_option=f" --snapshot-dir {tmp_path}")
    missing = check.check(subject)
    assert missing.verdict == "failed" and "--snapshot-update --snapshot-dir" in missing.message
    assert SnapshotCheck(tmp_path, update=True).check(subject).verdict == "recorded"
    compared = check.check(subject)
    assert (compared.verdict, compared.status, compared.errors) == ("passed", "compared with cpu.json", ())
    assert check.outcomes == {"mistral-tokenizer": compared}
    for outcome in (missing, compared):
        assert SnapshotOutcome.from_json(json.loads(json.dumps(outcome.as_json()))) == outcome


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
    assert comparing.compare(recorded, recorded) == []
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
        differences = comparing.compare(recorded, current)
        assert [d.where for d in differences] == [where], (where, differences)
    top_k = comparing.compare(recorded, cases["generation.hot.settings"])[0]
    assert top_k.message == "top_k: 50 -> 20"
    # the gap between back-ends may double from rounding without an error
    doubled = recorded["attention"]["max_prob_diff"] * 2
    assert comparing.compare(recorded, _changed(recorded, ["attention", "max_prob_diff"], doubled)) == []
