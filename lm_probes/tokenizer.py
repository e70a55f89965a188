"""Tokenizer probes: what a tokenizer does to text, as small frozen results.

Each function takes a loaded tokenizer and plain inputs, and returns a dataclass a
test can assert on and a report can print. Nothing here knows about cards or pytest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Encoding:
    text: str
    add_special_tokens: bool | None  # None: the tokenizer's default
    ids: tuple[int, ...]
    tokens: tuple[str, ...]  # the vocabulary pieces, e.g. '▁The'
    decoded: str  # decode(ids), special tokens kept
    decoded_per_id: tuple[str, ...]  # decode([id]) for each id, as the article prints them

    def id_line(self) -> str:
        """'1:<s> 415:The 5565:capital' — the per-id view the article prints."""
        return " ".join(f"{i}:{t}" for i, t in zip(self.ids, self.decoded_per_id))


def encode(tokenizer: PreTrainedTokenizerBase, text: str, add_special_tokens: bool | None = None) -> Encoding:
    kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
    ids = tuple(int(i) for i in tokenizer.encode(text, **kwargs))
    return Encoding(
        text=text,
        add_special_tokens=add_special_tokens,
        ids=ids,
        tokens=tuple(tokenizer.convert_ids_to_tokens(list(ids))),
        decoded=tokenizer.decode(list(ids)),
        decoded_per_id=tuple(tokenizer.decode([i]) for i in ids),
    )


@dataclass(frozen=True)
class BosBehaviour:
    """Whether encode() prepends BOS by default, and drops it when told to."""

    bos_id: int | None
    bos_token: str | None
    default_ids: tuple[int, ...]  # encode(text)
    with_special_ids: tuple[int, ...]  # encode(text, add_special_tokens=True)
    without_special_ids: tuple[int, ...]  # encode(text, add_special_tokens=False)

    @property
    def added_by_default(self) -> bool:
        return self.bos_id is not None and self.default_ids[:1] == (self.bos_id,)

    @property
    def default_matches_special(self) -> bool:
        return self.default_ids == self.with_special_ids

    @property
    def absent_without_special(self) -> bool:
        return self.bos_id is None or self.bos_id not in self.without_special_ids[:1]


def bos_behaviour(tokenizer: PreTrainedTokenizerBase, text: str) -> BosBehaviour:
    return BosBehaviour(
        bos_id=tokenizer.bos_token_id,
        bos_token=tokenizer.bos_token,
        default_ids=tuple(tokenizer.encode(text)),
        with_special_ids=tuple(tokenizer.encode(text, add_special_tokens=True)),
        without_special_ids=tuple(tokenizer.encode(text, add_special_tokens=False)),
    )


@dataclass(frozen=True)
class FirstToken:
    """The first token of a text encoded without special tokens.

    Shows how a tokenizer marks the start of a word. SentencePiece (Mistral) fuses the
    boundary '▁' into Latin words ('▁The'), but a Japanese text has no '▁'-prefixed
    piece for its first character, so it gets the lone piece '▁' (Mistral id 28705,
    decoding to an empty string) followed by one id per character. Byte-level BPE
    (SmolLM2) marks a preceding space ('Ġ') instead, so a text's first word has none.
    """

    text: str
    first_id: int
    first_token: str
    first_decoded: str


def first_token(tokenizer: PreTrainedTokenizerBase, text: str) -> FirstToken:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise ValueError(f"{text!r} encodes to no tokens; give a non-empty text")
    first = int(ids[0])
    return FirstToken(
        text=text,
        first_id=first,
        first_token=tokenizer.convert_ids_to_tokens(first),
        first_decoded=tokenizer.decode([first]),
    )


@dataclass(frozen=True)
class VocabEntry:
    id: int
    token: str  # the stored piece
    decoded: str  # what decode([id]) gives

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def vocab_table(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> tuple[VocabEntry, ...]:
    size = len(tokenizer)
    bad = [i for i in ids if not 0 <= i < size]
    if bad:
        raise ValueError(f"ids {bad} are outside the vocabulary (0..{size - 1})")
    return tuple(VocabEntry(i, tokenizer.convert_ids_to_tokens(i), tokenizer.decode([i])) for i in ids)


def head_and_tail_ids(tokenizer: PreTrainedTokenizerBase, n: int = 5) -> list[int]:
    """The first and last n ids: control tokens at the head, rare pieces at the tail."""
    size = tokenizer.vocab_size
    return list(range(min(n, size))) + list(range(max(size - n, n), size))


@dataclass(frozen=True)
class DuplicateBos:
    """A prompt that already starts with the BOS text, encoded with special tokens on.

    The pitfall: writing ``"<s> " + question`` by hand *and* letting the tokenizer add
    BOS gives two BOS ids, a sequence the model never saw in training.
    """

    prompt: str
    ids: tuple[int, ...]
    leading_bos: int
    # The prompt's trailing space became a token of its own (Mistral '▁' 28705,
    # SmolLM2 'Ġ' 216): a second pitfall, since text rarely continues after one.
    trailing_space_token: bool

    @property
    def duplicated(self) -> bool:
        return self.leading_bos > 1

    def message(self) -> str:
        if not self.duplicated:
            return f"{self.prompt!r}: {self.leading_bos} leading BOS id(s), fine"
        return (
            f"{self.prompt!r} encodes to {self.leading_bos} leading BOS ids "
            f"{list(self.ids[: self.leading_bos + 2])}...: "
            "the prompt already holds the BOS text and the tokenizer adds another. "
            "Drop the BOS text from the prompt or encode with add_special_tokens=False."
        )


def leading(ids: tuple[int, ...] | list[int], token_id: int | None) -> int:
    """How many times ``token_id`` opens ``ids``."""
    leading = 0
    while token_id is not None and leading < len(ids) and ids[leading] == token_id:
        leading += 1
    return leading


def duplicate_bos(tokenizer: PreTrainedTokenizerBase, prompt: str) -> DuplicateBos:
    ids = tuple(int(i) for i in tokenizer.encode(prompt))
    bos = tokenizer.bos_token_id
    return DuplicateBos(
        prompt=prompt,
        ids=ids,
        leading_bos=leading(ids, bos),
        trailing_space_token=bool(ids) and ids[-1] != bos and tokenizer.decode([ids[-1]]).strip() == "",
    )


@dataclass(frozen=True)
class ChatRendering:
    """A fixed conversation through the tokenizer's chat template, both ways a user
    gets ids from it: ``apply_chat_template(messages, tokenize=True)``, and rendering the
    text first then ``encode(text, add_special_tokens=False)``. The two must agree; when
    they do not, the tokenize path added (or dropped) tokens the template did not write:
    the double BOS of transformers#37686 (gemma-3) and lm-evaluation-harness#3333."""

    has_template: bool
    text: str = ""  # apply_chat_template(tokenize=False)
    ids: tuple[int, ...] = ()  # apply_chat_template(tokenize=True)
    ids_from_text: tuple[int, ...] = ()  # encode(text, add_special_tokens=False)
    bos_id: int | None = None

    @property
    def leading_bos(self) -> int:
        """BOS ids opening the tokenized conversation: 1 for a tokenizer with BOS, 0 without."""
        return leading(self.ids, self.bos_id)

    @property
    def consistent(self) -> bool:
        return self.ids == self.ids_from_text

    def first_difference(self) -> str:
        """Where the two id sequences part, for a failure message."""
        at = next((i for i, (a, b) in enumerate(zip(self.ids, self.ids_from_text)) if a != b), None)
        if at is None:
            at = min(len(self.ids), len(self.ids_from_text))
        return (
            f"at position {at}: tokenize=True gives {list(self.ids[max(at - 2, 0) : at + 3])}, "
            f"encode(text, add_special_tokens=False) gives {list(self.ids_from_text[max(at - 2, 0) : at + 3])} "
            f"(lengths {len(self.ids)} and {len(self.ids_from_text)})"
        )


def chat_rendering(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], add_generation_prompt: bool = True
) -> ChatRendering:
    if not getattr(tokenizer, "chat_template", None):
        return ChatRendering(has_template=False, bos_id=tokenizer.bos_token_id)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    tokenized = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    # transformers 5 returns a BatchEncoding (return_dict=True), 4.x a list of ids
    ids = tokenized["input_ids"] if hasattr(tokenized, "keys") else tokenized
    return ChatRendering(
        has_template=True,
        text=text,
        ids=tuple(int(i) for i in ids),
        ids_from_text=tuple(int(i) for i in tokenizer.encode(text, add_special_tokens=False)),
        bos_id=tokenizer.bos_token_id,
    )


@dataclass(frozen=True)
class RoundTrip:
    """A text holding special tokens or telling whitespace, encoded without added special
    tokens and decoded back (U6). Where the text does not come back is a property of the
    tokenizer (Mistral's legacy SentencePiece puts a space after ``<s>`` and drops a
    leading one) that an upgrade must not change unnoticed (tokenizers#1448,
    transformers#25073 / PR #24565: ``legacy`` and ``add_prefix_space``)."""

    id: str
    text: str
    ids: tuple[int, ...]
    decoded: str

    @property
    def round_trips(self) -> bool:
        return self.decoded == self.text


def special_text(tokenizer: PreTrainedTokenizerBase, case_id: str, template: str) -> RoundTrip:
    """``template`` with {bos} and {eos} replaced by the tokenizer's own special tokens."""
    text = template.replace("{bos}", tokenizer.bos_token or "").replace("{eos}", tokenizer.eos_token or "")
    ids = tuple(int(i) for i in tokenizer.encode(text, add_special_tokens=False))
    return RoundTrip(id=case_id, text=text, ids=ids, decoded=tokenizer.decode(list(ids)))
