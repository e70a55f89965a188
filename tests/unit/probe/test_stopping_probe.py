"""Where generation stops (lm_probes/stopping.py, U8) on hand-made rows: where a row of a batched
greedy call ended, read from the row as generate() returned it, and the answer_ends section's
rule (snapshots/token_rules.py) on hand-made recordings."""

from __future__ import annotations

import copy

import pytest

from lm_probes import stopping
from lm_probes.snapshots.compare import _recorded_before
from lm_probes.snapshots.differences import Context
from lm_probes.snapshots.token_rules import compare_answer_ends

STOP, PAD = 2, 0


def read(row, budget=6, stop_ids=(STOP,), pad_id=PAD):
    return stopping.read_answer_end(
        "q", "prompt", (5, 6), tuple(row), budget=budget, stop_ids=stop_ids, pad_id=pad_id, decode=str
    )


def test_a_row_padded_after_its_stop_id_stopped_there():
    end = read([7, 8, STOP, PAD, PAD, PAD])
    assert (end.end, end.stop_id, end.ids) == ("stop", STOP, (7, 8, STOP))
    assert end.describe() == "stopped at 2 after 3 new tokens"


def test_a_row_that_goes_on_after_a_stop_id_ran_past_it():
    """A generate() that ignores stop ids writes the model's next tokens, not padding."""
    end = read([7, STOP, 9, 4, 9, 4])
    assert (end.end, end.stop_id, end.ran_past, end.ids) == ("ran past a stop id", None, 1, (7, STOP, 9, 4, 9, 4))
    assert "went on past stop id 2 at new token 1" in end.describe()


def test_a_row_without_a_stop_id_ran_to_the_budget():
    end = read([7, 8, 9, 7, 8, 9])
    assert (end.end, end.stop_id, end.ran_past) == ("budget", None, None)


def test_where_the_pad_id_is_a_stop_id_the_padding_still_reads_as_a_stop():
    end = read([7, STOP, STOP, STOP], budget=4, pad_id=STOP)
    assert (end.end, end.ids) == ("stop", (7, STOP))


def test_any_of_several_stop_ids_ends_an_answer():
    end = read([7, 3, PAD, PAD], budget=4, stop_ids=(STOP, 3))
    assert (end.end, end.stop_id) == ("stop", 3)


def test_a_served_answer_without_padding_reads_the_same():
    """A server returns a finished answer without padding (pad_id None)."""
    assert read([7, 8, STOP], pad_id=None).end == "stop"
    assert read([7, STOP, 9], budget=3, pad_id=None).end == "ran past a stop id"


# ------------------------------------------------------------------ the section's rule


def entry(ids, end="stop", budget=6, top_ids=None):
    return {
        "prompt_ids": [5, 6],
        "ids": list(ids),
        "text": " ".join(map(str, ids)),
        "end": end,
        "stop_id": ids[-1] if end == "stop" else None,
        "new_tokens": len(ids),
        "budget": budget,
        "stop_ids": [STOP],
        "top_ids": top_ids or [[i, 40, 41] for i in ids],
    }


RECORDED = {"q": entry([7, 8, STOP])}
WITHIN, ACROSS = Context({}), Context({}, across=True)


def test_the_same_answer_and_end_is_no_difference():
    assert compare_answer_ends(RECORDED, copy.deepcopy(RECORDED), WITHIN) == []


def test_an_answer_that_no_longer_stops_is_an_error_on_any_class():
    now = {"q": entry([7, 8, STOP, 9, 4, 9], end="ran past a stop id")}
    for context in (WITHIN, ACROSS):
        (found,) = compare_answer_ends(RECORDED, now, context)
        assert found.severity == "error" and found.where == "answer_ends.q"
        assert "recorded stopped at 2 after 3 new tokens -> now went on past a stop id" in found.message
        assert "nothing stopped it at the model's stop ids" in found.message


def test_within_a_class_any_other_token_is_an_error():
    (found,) = compare_answer_ends(RECORDED, {"q": entry([7, 40, 8, STOP])}, WITHIN)
    assert found.severity == "error" and "changed at new token 1" in found.message


def test_across_classes_a_divergence_inside_both_top_k_is_a_warning_and_the_end_is_not_compared():
    now = {"q": entry([7, 40, 8, 9, STOP], top_ids=[[7], [40, 8], [8], [9], [STOP]])}
    (found,) = compare_answer_ends(RECORDED, now, ACROSS)
    assert found.severity == "warning" and "not compared past the divergence" in found.message


def test_across_classes_a_divergence_outside_the_top_k_is_an_error():
    (found,) = compare_answer_ends(RECORDED, {"q": entry([7, 99, STOP])}, ACROSS)
    assert found.severity == "error" and "which rounding does not explain" in found.message


def test_other_stop_ids_are_reported_even_where_the_answer_is_the_same():
    now = copy.deepcopy(RECORDED)
    now["q"]["stop_ids"] = [0]
    (found,) = compare_answer_ends(RECORDED, now, WITHIN)
    assert found.severity == "error" and "stop ids [2] -> [0]" in found.message


@pytest.mark.parametrize(("end", "reason", "fine"), [("stop", "stop", True), ("stop", "length", False)])
def test_a_served_finish_reason_must_match_where_its_tokens_end(end, reason, fine):
    now = copy.deepcopy(RECORDED)
    now["q"]["finish_reason"] = reason
    found = compare_answer_ends(RECORDED, now, ACROSS)
    assert (found == []) is fine
    if not fine:
        assert "finish_reason 'length', but its tokens show it stopped at 2" in found[0].message


def test_a_served_answer_past_a_stop_id_with_finish_reason_length_is_caught_by_its_end():
    now = {"q": entry([7, 8, STOP, 9, 4, 9], end="ran past a stop id") | {"finish_reason": "length"}}
    (found,) = compare_answer_ends(RECORDED, now, ACROSS)
    assert "went on past stop id 2 at new token 2" in found.message


# --------------------------------------------------- a snapshot from before the section


def test_a_snapshot_recorded_before_the_section_existed_is_a_warning_not_an_error():
    """An older file has no provenance "sections" list: the section is not compared and the
    warning says to re-record. A file that lists the section but lacks it left it out: error."""
    current = {"next_token": {}, "answer_ends": RECORDED}
    recorded = {"next_token": {}}
    found = _recorded_before("answer_ends", recorded, current, {}, {})
    assert found == "the snapshot"
    assert _recorded_before("answer_ends", recorded, current, {"sections": ["answer_ends"]}, {}) is None
    assert _recorded_before("answer_ends", current, recorded, {}, {}) == "this run"


def test_parity_compares_answer_ends_alone_without_a_tokenizer_section():
    """S7 compares the answer_ends section by itself: the parity view needs no tokenizer."""
    from lm_probes.served.parity import parity_differences

    served = {"answer_ends": {"q": entry([7, 8, STOP]) | {"finish_reason": "stop"}}}
    assert parity_differences({"answer_ends": RECORDED}, served, {"prob_atol": 1e-4, "kl_max": 1e-6}, {}) == []
    served["answer_ends"]["q"]["finish_reason"] = "length"
    (found,) = parity_differences({"answer_ends": RECORDED}, served, {"prob_atol": 1e-4, "kl_max": 1e-6}, {})
    assert found.where == "answer_ends.q" and "finish_reason 'length'" in found.message
