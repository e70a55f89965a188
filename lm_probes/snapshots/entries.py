"""What an entry of a section holds where the in-process side (snapshots/observe.py) and a
server (served/observe.py) record it alike: how many ids are kept, and one answer's entry.
Light on purpose: the served side reads it without the probes' results."""

from __future__ import annotations

from typing import Any

TOP_N = 20  # next-token ids kept in a snapshot
GREEDY_TOP_K = 5  # per greedy step, the ids kept for the cross-class rule (vLLM's tests use 5)


def answer_end_entry(end: Any) -> dict[str, Any]:
    """One answer's entry (a stopping.AnswerEnd): the served side records its own the same way."""
    return {
        "prompt_ids": list(end.prompt_ids),
        "ids": list(end.ids),
        "text": end.text,
        "end": end.end,  # stop | budget | ran past a stop id | other
        "stop_id": end.stop_id,
        "new_tokens": len(end.ids),
        "budget": end.budget,
        "stop_ids": list(end.stop_ids),
        "top_ids": [list(ids) for ids in end.top_ids],  # the cross-class rule's top-k per step
    }
