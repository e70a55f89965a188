"""Where generation stops (U7, lm_probes/stopping.py): the chat template's end of an assistant
turn is among the ids generate() stops at. Checked without generating and without a
baseline, on every card that has a chat template: a model whose stop ids miss it answers and
then writes the next turn itself, and a snapshot recorded on it would keep that as normal."""

from __future__ import annotations

import pytest

from lm_probes.expect import check_equal, check_that
from lm_probes.report.html import Cell
from lm_probes.subjects.results import answer_ends, turn_end


@pytest.mark.observation("U7", expects="tokenizer.chat")
def test_generation_stops_where_the_chat_template_ends_a_turn(lm_probes_subject, lm_probes_attach):
    end = turn_end(lm_probes_subject)
    if not end.has_template:
        pytest.skip(
            f"{lm_probes_subject.name}: the tokenizer has no chat template, so no turn ends (tokenizer.chat says so)"
        )
    lm_probes_attach.table(
        ["turn ends with", "id", "generate() stops at", "read from"],
        [[Cell(repr(end.token), code=True), end.token_id, ", ".join(map(str, end.stop_ids)), end.stop_source]],
        summary="Where generation stops: the chat template's end of turn (U7)",
    )
    if lm_probes_subject.card.has_expectation("tokenizer.chat.turn_end"):
        check_equal(
            lm_probes_subject.card,
            "tokenizer.chat.turn_end",
            end.token,
            note=f"rendered after the answer: {end.after!r}",
        )
    # a property of every model with a template, not a value of the card: no baseline can make it pass
    check_that(
        lm_probes_subject.card,
        end.stops,
        expected="the token the chat template ends an assistant turn with is one of the ids generate() stops at",
        obtained=end.problem(),
    )


def _attach_answer_ends(lm_probes_attach, lm_probes_subject, ends) -> None:
    decode = lm_probes_subject.tokenizer.decode
    rows = []
    for end in ends.values():
        stopped = end.end == "stop"
        shown = end.ids[:-1] if stopped else end.ids
        rows.append(
            [
                end.id,
                Cell(repr(end.prompt[-60:]), code=True),
                Cell(repr(decode(list(shown), skip_special_tokens=False)), code=True),
                Cell(end.describe(decode), strong=True, highlight=not stopped),
            ]
        )
    first = next(iter(ends.values()))
    lm_probes_attach.table(
        ["request", "prompt (its end)", "greedy answer", "where it ended"],
        rows,
        caption=f"stop ids {list(first.stop_ids)}; budget {first.budget} new tokens",
        summary="Where greedy answers end (U8)",
    )


@pytest.mark.observation("U8")
def test_generate_stops_at_the_first_stop_id_it_emits(lm_probes_model_subject, lm_probes_attach):
    """A property of generate(), with no baseline: an answer that emits one of the model's stop
    ids ends there. (A generate() that goes on past it answers, then writes on to the budget.)"""
    ends = answer_ends(lm_probes_model_subject)
    _attach_answer_ends(lm_probes_attach, lm_probes_model_subject, ends)
    reached = [end for end in ends.values() if end.end in ("stop", "ran past a stop id")]
    if not reached:
        pytest.skip(
            f"{lm_probes_model_subject.name}: no answer emitted a stop id within "
            f"{next(iter(ends.values())).budget} new tokens "
            "(each ran to the budget), so where generate() stops cannot be seen on this model"
        )
    decode = lm_probes_model_subject.tokenizer.decode
    past = [end for end in reached if end.end != "stop"]
    check_that(
        lm_probes_model_subject.card,
        not past,
        expected="generate() stops an answer at the first stop id it emits",
        obtained="; ".join(f"{end.id}: {end.describe(decode)}" for end in past),
        note="a generate() (or a stopping criterion) that no longer stops at eos_token_id",
    )


@pytest.mark.observation("U8", expects="answer_ends.prompts")
def test_greedy_answer_ends_within(lm_probes_model_subject, case, lm_probes_attach):
    end = answer_ends(lm_probes_model_subject)[case["id"]]
    decode = lm_probes_model_subject.tokenizer.decode
    lm_probes_attach.table(
        ["request", "answer", "where it ended", "bound"],
        [
            [
                case["id"],
                Cell(repr(end.text), code=True),
                end.describe(decode),
                f"a stop id within {case['ends_within']}",
            ]
        ],
        summary="Where greedy answers end (U8)",
    )
    check_that(
        lm_probes_model_subject.card,
        end.end == "stop" and len(end.ids) <= case["ends_within"],
        field=f"answer_ends.prompts[{case['id']}].ends_within",
        expected=f"the answer ends at a stop id {list(end.stop_ids)} within {case['ends_within']} new tokens",
        obtained=end.describe(decode),
        note=f"answer: {end.text!r}",
    )
