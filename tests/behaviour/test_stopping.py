"""Where generation stops (U7, probes/stopping.py): the chat template's end of an assistant
turn is among the ids generate() stops at. Checked without generating and without a
baseline, on every card that has a chat template: a model whose stop ids miss it answers and
then writes the next turn itself, and a snapshot recorded on it would keep that as normal."""

from __future__ import annotations

import pytest

from probes.expect import check_equal, check_that
from probes.report.html import Cell
from probes.subjects.results import turn_end


@pytest.mark.observation("U7", expects="tokenizer.chat")
def test_generation_stops_where_the_chat_template_ends_a_turn(subject, attach):
    end = turn_end(subject)
    if not end.has_template:
        pytest.skip(f"{subject.name}: the tokenizer has no chat template, so no turn ends (tokenizer.chat says so)")
    attach.table(
        ["turn ends with", "id", "generate() stops at", "read from"],
        [[Cell(repr(end.token), code=True), end.token_id, ", ".join(map(str, end.stop_ids)), end.stop_source]],
        summary="Where generation stops: the chat template's end of turn (U7)",
    )
    if subject.card.has_expectation("tokenizer.chat.turn_end"):
        check_equal(
            subject.card, "tokenizer.chat.turn_end", end.token, note=f"rendered after the answer: {end.after!r}"
        )
    # a property of every model with a template, not a value of the card: no baseline can make it pass
    check_that(
        subject.card,
        end.stops,
        expected="the token the chat template ends an assistant turn with is one of the ids generate() stops at",
        obtained=end.problem(),
    )
