"""Where generation stops (U7): the token a chat template ends an assistant turn with must be
one of the ids ``generate()`` stops at.

When it is not, every tool generates past the end of the answer: the model closes its turn,
writes the next turn's headers and invents the user's next message, until the token budget
runs out (Llama-3-Instruct's first release: its template ends a turn with ``<|eot_id|>``, its
generation_config.json named only ``<|end_of_text|>``). A snapshot recorded on such a model
freezes the defect as its baseline, so this is checked without generating and without a
baseline: the template and the stop ids must agree on every model that has a template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TurnEnd:
    """What a tokenizer's chat template writes after an assistant's words, and what stops."""

    has_template: bool
    token: str | None = None  # the vocabulary piece ending the assistant's turn, e.g. '<|im_end|>'
    token_id: int | None = None
    after: str = ""  # the text the template writes after the assistant's words
    stop_ids: tuple[int, ...] = ()  # the ids generate() stops at
    stop_source: str = ""  # where they were read: generation_config.eos_token_id or the tokenizer's eos

    @property
    def stops(self) -> bool:
        return self.token_id is not None and self.token_id in self.stop_ids

    def describe(self) -> str:
        if not self.has_template:
            return "the tokenizer has no chat template"
        if self.token_id is None:
            return f"the template writes nothing recognisable after the assistant's words ({self.after!r})"
        stops = ", ".join(map(str, self.stop_ids)) or "none"
        ends = f"the template ends an assistant turn with {self.token!r} (id {self.token_id})"
        return f"{ends}; {self.stop_source} = [{stops}]"

    def problem(self) -> str | None:
        """Why generation would run past the end of a turn, with the file to fix; None if it stops."""
        if not self.has_template or self.stops:
            return None
        if self.token_id is None:
            return (
                f"{self.describe()}: no turn-end token to stop at. Check the chat template "
                "(tokenizer_config.json's chat_template or chat_template.jinja)"
            )
        where = (
            "generation_config.json's eos_token_id"
            if self.stop_source.startswith("generation_config")
            else "tokenizer_config.json's eos_token (the model has no generation_config.json eos_token_id)"
        )
        return (
            f"{self.describe()}: {self.token!r} is not among them, so generate() runs past the end of every "
            f"answer into the next turn. Add {self.token_id} to {where}"
        )


def stop_ids(tokenizer: Any, generation_config: Any | None) -> tuple[tuple[int, ...], str]:
    """The ids generate() stops at, and where they come from: the model's
    generation_config.eos_token_id (an int or a list), else the tokenizer's eos_token_id."""
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if eos is not None:
        ids = (eos,) if isinstance(eos, int) else tuple(eos)
        return tuple(int(i) for i in ids), "generation_config.eos_token_id"
    if tokenizer.eos_token_id is not None:
        return (int(tokenizer.eos_token_id),), "tokenizer.eos_token_id"
    return (), "tokenizer.eos_token_id"


def turn_end(tokenizer: Any, generation_config: Any | None, conversation: list[dict[str, str]]) -> TurnEnd:
    """Render ``conversation`` (a user turn, then an assistant turn) and read the first token
    the template writes after the assistant's words: the token that ends its turn.

    Special tokens are matched as text first (the template writes them as text, and a
    separate encode of that text could split them differently); otherwise the first
    non-blank id of the text that follows."""
    if not getattr(tokenizer, "chat_template", None):
        return TurnEnd(has_template=False)
    ids, source = stop_ids(tokenizer, generation_config)
    words = conversation[-1]["content"]
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    at = text.rfind(words)
    after = text[at + len(words) :] if at >= 0 else ""
    vocabulary = tokenizer.get_vocab()
    specials = sorted(
        (t for t in (*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()) if t and t in vocabulary),
        key=len,
        reverse=True,
    )
    token = next((t for t in specials if after.startswith(t)), None)
    if token is None:
        stripped = after.lstrip()
        first = tokenizer.encode(stripped, add_special_tokens=False)[:1] if stripped else []
        token = tokenizer.convert_ids_to_tokens(first[0]) if first else None
    token_id = vocabulary.get(token) if token is not None else None
    return TurnEnd(True, token, token_id, after, ids, source)


# ------------------------------------------------------------- where answers end (U8)

# per new token, the highest-scoring ids kept: across machine classes a divergence is allowed
# where each side's token is in the other's (vLLM's rule, k 5, as the greedy snapshot keeps)
TOP_K = 5


@dataclass(frozen=True)
class AnswerEnd:
    """Where one greedy answer ended: generate() stopped at a stop id, ran to the token
    budget, or went on past a stop id it emitted (a generate() or engine that ignores them)."""

    id: str  # the request of fixtures/inputs/article.yaml's answer_ends
    prompt: str
    prompt_ids: tuple[int, ...]
    ids: tuple[int, ...]  # the answer's new tokens: up to and with the stop id where it stopped there
    text: str  # the answer decoded with its special tokens, so the end token shows
    budget: int  # max_new_tokens
    stop_ids: tuple[int, ...]  # the ids it was asked to stop at
    ran_past: int | None = None  # the new token index of a stop id generation went on past
    top_ids: tuple[tuple[int, ...], ...] = ()  # per new token, its step's highest-scoring ids

    @property
    def stop_id(self) -> int | None:
        """The stop id the answer ended with; None where it did not end at one."""
        if self.ran_past is None and self.ids and self.ids[-1] in self.stop_ids:
            return self.ids[-1]
        return None

    @property
    def end(self) -> str:
        """'stop' | 'budget' | 'ran past a stop id' | 'other' (ended short of the budget without a stop id)."""
        if self.stop_id is not None:
            return "stop"
        if self.ran_past is not None:
            return "ran past a stop id"
        return "budget" if len(self.ids) >= self.budget else "other"

    def describe(self, decode: Any = None) -> str:
        name = (lambda i: f"{i} {decode([i])!r}") if decode is not None else str
        if self.end == "stop":
            return f"stopped at {name(self.stop_id)} after {len(self.ids)} new tokens"
        if self.end == "ran past a stop id":
            stop = self.ids[self.ran_past]
            return (
                f"went on past stop id {name(stop)} at new token {self.ran_past} and ran {len(self.ids)} tokens "
                "(nothing stopped it there)"
            )
        if self.end == "budget":
            return f"ran to the budget of {self.budget} new tokens without a stop id"
        return f"ended after {len(self.ids)} new tokens without a stop id, short of the budget {self.budget}"


def read_answer_end(
    request: str,
    prompt: str,
    prompt_ids: tuple[int, ...],
    row: tuple[int, ...],
    *,
    budget: int,
    stop_ids: tuple[int, ...],
    pad_id: int | None,
    decode: Any,
    top_ids: tuple[tuple[int, ...], ...] = (),
) -> AnswerEnd:
    """Where a row of a batched greedy call ended, read from the row as generate() returned it.

    generate() fills a row that has finished with the pad id until every row has. So a row
    stopped at its first stop id exactly when everything after that id is padding; where
    anything else follows, generation went on past it (the shape of a generate() or a server
    that ignores stop ids), and the whole row is the answer."""
    first = next((i for i, token in enumerate(row) if token in stop_ids), None)
    if first is not None and all(token == pad_id for token in row[first + 1 :]):
        ids, ran_past = row[: first + 1], None
    else:
        ids, ran_past = row, first
    return AnswerEnd(
        request,
        prompt,
        tuple(prompt_ids),
        tuple(ids),
        decode(list(ids)),
        budget,
        stop_ids,
        ran_past,
        top_ids[: len(ids)],
    )
