"""U7 in a drafted card: the token the chat template ends an assistant turn with, and whether
generate() stops at it (lm_probes/stopping.py).

A model whose stop ids miss its own turn end answers, then writes the next turn's headers and
the user's next message until the budget runs out. A card drafted from it would record that
as the baseline (every greedy text, every snapshot), so the draft refuses it unless the user
names the defect (``--accept-turn-end-not-a-stop-id``): the card then carries the check as a
strict xfail whose reason is the problem, reported on every run, failing once it is fixed.

The check needs only the tokenizer and the stop ids, so ``lm-probes draft-card`` makes it
before anything is measured (minutes on a real model): a local folder's
generation_config.json is read without its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lm_probes import stopping
from lm_probes.draft.settings import Draft
from lm_probes.draft.writer import Commented
from lm_probes.subjects import results

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject

TURN_END_TEST = "test_generation_stops_where_the_chat_template_ends_a_turn"
ACCEPT_FLAG = "--accept-turn-end-not-a-stop-id"


class TurnEndNotAStop(Exception):
    """The model's stop ids miss its chat template's turn end, and the user did not accept it."""


def refusal(problem: str) -> str:
    """What draft-card says when it stops: the problem, and the two ways on."""
    return (
        f"{problem}. Not drafted: a card measured now would record the answers that run into the next turn "
        f"as its baseline; fix the file and draft again, or pass {ACCEPT_FLAG} to draft it with this as a "
        f"known failure (a strict xfail of {TURN_END_TEST})"
    )


def _generation_config_without_weights(subject: Subject) -> Any | None:
    """The model's generation config read from its local folder's generation_config.json, as
    from_pretrained reads it; None where that file is not there to read (a hub id, a GGUF in
    a folder, a random-init model): the model is then loaded for it."""
    from lm_probes.cards.files import SubjectLoadError

    if getattr(subject.card.model, "gguf_file", None) or getattr(subject.card.model, "revision", None):
        return None
    try:
        folder = Path(subject.model_folder()).expanduser()
    except SubjectLoadError:  # random-init: no folder, and nothing to read but the model itself
        return None
    if not (folder / "generation_config.json").is_file():
        return None
    from transformers import GenerationConfig

    return GenerationConfig.from_pretrained(str(folder))


def turn_end_before_measuring(subject: Subject) -> stopping.TurnEnd:
    """U7 as the suite computes it (results.turn_end: the inputs' first user and assistant
    turns), without loading the weights where the stop ids can be read from a file."""
    # a tokenizer-only card stops at the tokenizer's eos: no model, nothing to read; where no
    # file holds the stop ids, results.turn_end loads the model for them
    config = _generation_config_without_weights(subject) if subject.card.has_model else None
    return results.turn_end(subject, config)


def draft_turn_end(subject: Subject, draft: Draft, accept: bool) -> None:
    """Write ``tokenizer.chat.turn_end`` as measured (results.turn_end, what the suite checks),
    with what was measured in its comment; a turn end generate() does not stop at raises
    TurnEndNotAStop, or with ``accept`` becomes a strict xfail whose reason is the problem."""
    end = results.turn_end(subject)
    if not end.has_template:
        return
    chat = draft.expect["tokenizer"]["chat"]
    chat = chat.value if isinstance(chat, Commented) else chat
    if end.token is not None:
        stops = ", ".join(map(str, end.stop_ids)) or "none"
        chat["turn_end"] = Commented(end.token, f"U7, measured: id {end.token_id}, {end.stop_source} [{stops}]")
    problem = end.problem()
    if problem is None:
        return
    if not accept:
        raise TurnEndNotAStop(refusal(problem))
    draft.fails(TURN_END_TEST, f"{problem} (measured by lm-probes draft-card, accepted with {ACCEPT_FLAG})")
