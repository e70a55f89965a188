"""The card format, declared: what a card file may hold, with types, defaults and meanings.

A card file is validated against ``CardFile`` when it is read (``probes/cards.py``
turns pydantic's errors into one message naming the file and each field). Every model
forbids unknown fields and is strict (``vocab_size: true`` is not an int, ``"3"`` is not
a number). A field without a default is required whenever its section is present: the
tests read it unconditionally. The JSON Schema that editors validate card files with
(fixtures/card.schema.json) is generated from these classes.

Where the tokenizer and weights come from (``tokenizer:``/``model:``) is declared by the
source classes in ``probes/sources.py``, a union told apart by ``source:``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .sources import LoadSettings, ModelSource, TokenizerSource

Number = float  # strict mode still takes an int where a float is declared


class Section(BaseModel):
    """A part of the card: strict types, unknown fields refused, read-only once loaded."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


class ExpectSection(Section):
    """One probe's expected values (a key under ``expect:``)."""

    # Whether checking this section loads the model; a tokenizer-only card may hold only
    # sections that say False. MODEL_SECTIONS in cards.py is derived from it.
    needs_model: ClassVar[bool] = True


# ------------------------------------------------------------------------ tokenizer


class Bos(Section):
    id: int | None = Field(description="the BOS token id; null for a tokenizer without one")
    token: str | None = Field(description="the BOS token text, e.g. '<s>'; null for none")
    added_by_default: bool = Field(description="encode(text) (special tokens on) starts with BOS")
    probe_text: str = Field(description="the text the BOS checks encode")


class EncodeCase(Section):
    id: str = Field(description="names the case in test ids and messages")
    observation: str | None = Field(None, description="the SPEC observation id this case stands for (T1, ...)")
    text: str
    add_special_tokens: bool | None = Field(
        None, description="passed to encode(); null or absent = the tokenizer's default (the argument left out)"
    )
    ids: list[int]
    tokens: list[str] | None = Field(None, description="convert_ids_to_tokens of the ids (SentencePiece '▁' kept)")
    decoded: str | None = Field(None, description="decode(ids)")
    decoded_per_id: list[str] | None = Field(None, description="decode([id]) for each id")
    round_trips: bool = Field(
        True, description="decode(encode(text, add_special_tokens=False)) == text; false records that it alters it"
    )


class FirstToken(Section):
    id: str
    text: str
    first_id: int
    first_token: str
    first_decoded: str


class VocabEntry(Section):
    id: int
    token: str
    decoded: str


class DuplicateBos(Section):
    id: str
    prompt: str = Field(description="a prompt that may already start with the BOS text")
    leading_bos: int = Field(description="how many BOS ids encode(prompt) starts with")
    duplicated: bool = Field(description="encode(prompt) starts with two BOS ids")
    trailing_space_token: bool = Field(description="the ids end with a lone space token")


class ChatExpect(Section):
    """U1: the inputs' fixed conversation through the tokenizer's chat template."""

    has_template: bool = Field(description="the tokenizer has a chat template (false: the card says it has none)")
    leading_bos: int | None = Field(
        None, description="BOS ids opening apply_chat_template(tokenize=True): 1 with a BOS token, never 2"
    )
    generation_prompt: str | None = Field(
        None, description="how the rendered conversation ends (add_generation_prompt=True), e.g. '[/INST]'"
    )


class SpecialText(Section):
    """U6: one text of the inputs' special_texts ({bos}/{eos} are the tokenizer's own)."""

    id: str = Field(description="a key of fixtures/inputs/article.yaml's special_texts")
    ids: list[int] = Field(description="encode(text, add_special_tokens=False)")
    round_trips: bool = Field(True, description="decode(ids) gives the text back; false records that it does not")


class TokenizerExpect(ExpectSection):
    needs_model: ClassVar[bool] = False

    vocab_size: int | None = None
    bos: Bos | None = None
    encode: list[EncodeCase] | None = None
    first_token: list[FirstToken] | None = None
    vocab_table: list[VocabEntry] | None = None
    duplicate_bos: list[DuplicateBos] | None = None
    chat: ChatExpect | None = None
    special_text: list[SpecialText] | None = None


# ------------------------------------------------------------------------ embedding


class Apart(Section):
    id: str
    pair: list[str]
    outsiders: list[str] = Field(description="words each farther from both of the pair than they are from each other")


class PcaNearer(Section):
    id: str
    group: str
    nearer: str
    than: str


class EmbeddingExpect(ExpectSection):
    coherent_groups: list[str] | None = Field(
        None, description="groups whose intra-group cosine exceeds the inter-group cosine by at least min_margin"
    )
    incoherent_groups: list[str] | None = Field(None, description="groups that fall short of min_margin")
    min_margin: Number | None = None
    apart: list[Apart] | None = None
    pca_explained_at_most: Number | None = Field(
        None, description="the two principal components explain at most this share of the variance"
    )
    pca_nearer: list[PcaNearer] | None = Field(None, description="centroid distances in the 2-D projection")


# ------------------------------------------------------------------------- decoding


class NextTokenExpect(ExpectSection):
    top1: str = Field(description="the most likely next token's text")
    min_top1_prob: Number | None = None


class GreedyExpect(ExpectSection):
    with_bos_contains: list[str] | None = None
    without_bos_contains: list[str] | None = None
    bos_changes_continuation: bool | None = None
    batch_invariant: bool | None = None
    batch_difference: Literal["none", "rounding", "real"] | None = Field(
        None,
        description="U5: what a batch difference is: none, rounding (gone one precision step up) or real",
    )
    default_generate_is_greedy: bool | None = Field(None, description="generate() without decoding arguments")


class NearGreedy(Section):
    min_greedy_agreement: Number


class Warm(Section):
    answer: str
    min_answer_share: Number
    min_distinct: int


class Hot(Section):
    min_distinct: int
    min_distinct_2: Number | None = None


class SamplingExpect(ExpectSection):
    near_greedy: NearGreedy | None = Field(None, alias="near-greedy")
    warm: Warm | None = None
    hot: Hot | None = None


class BeamSearchExpect(ExpectSection):
    at_least_greedy_logprob: bool = Field(
        description="beam's sequence log p >= greedy's (equal for a model whose greedy path is already best)"
    )
    min_gain_over_greedy: Number | None = Field(
        None, description="nats by which beam's log p exceeds greedy's (a search that silently ran greedy gains 0)"
    )


# ---------------------------------------------------------------------------- tasks


class Decoding(Section):
    do_sample: bool = False
    top_p: Number | None = None
    temperature: Number | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class KnowledgeCase(Section):
    id: str
    question: str | None = Field(
        None, description="an id of fixtures/inputs/article.yaml's knowledge list (default: the case id)"
    )
    prompt: str | None = Field(None, description="the whole prompt instead of a formatted question")
    prompt_format: str | None = Field(None, description="overrides the card's")
    decoding: Decoding | None = Field(None, description="overrides the card's")
    answer: str


class Creative(Section):
    greedy_repeats: bool | None = None
    min_distinct_samples: int | None = None


class TasksExpect(ExpectSection):
    prompt_format: str = Field(
        "{question}", description='"{question}" is replaced; "chat" applies the tokenizer\'s chat template'
    )
    decoding: Decoding = Decoding()
    max_new_tokens: int = 40
    knowledge: list[KnowledgeCase] | None = None
    creative: Creative | None = None


# ---------------------------------------------------- U2-U4: inside generate() and the model


class GenerateCall(Section):
    id: str = Field(description="a call of the inputs' generate_calls: no-arguments, greedy, hot")
    settings: dict[str, Any] = Field(
        {}, description="settings the call must run with after the merge (probes/generation_settings.py SETTINGS)"
    )
    processors: list[str] = Field(description="the logits processors generate() builds for the call, in order")


class GenerationExpect(ExpectSection):
    """U2: what generate() inherits from the model's generation_config."""

    calls: list[GenerateCall]


class HiddenStatesExpect(ExpectSection):
    """U3: the hidden-state fingerprint (its changes are judged by the snapshot)."""

    layers: int = Field(description="hidden states per prompt: the embedding output plus one per decoder layer")


class AttentionExpect(ExpectSection):
    """U4: the model under two attention back-ends."""

    backends: list[str] = Field(description="the two implementations compared, e.g. [eager, sdpa]")
    max_prob_diff: Number = Field(description="largest |p_a - p_b| over every next token, single and batched")
    greedy_agrees: bool = Field(description="greedy tokens are the same, alone and in a left-padded batch")


# ------------------------------------------------------------- model, quantization


class ModelExpect(ExpectSection):
    embedding_shape: list[int] | None = None
    embedding_dtype: str | None = None
    architecture: str | None = None


class QuantizationExpect(ExpectSection):
    """What the loaded model's layers are (probes/quantization.py inspect_quantization)."""

    method: str | None = Field(None, description="nf4, fp4, int8 or none")
    linear_4bit: int | None = None
    linear_8bit: int | None = None
    full_precision_linear: list[str] | None = None
    compute_dtype: str | None = None
    embedding_class: str | None = None
    embedding_dtype: str | None = None


class DriftExpect(ExpectSection):
    """Against the card's full-precision ``reference`` card, on the article's prompts."""

    max_kl: Number | None = Field(
        None, description="nats, KL(reference || this) of the next-token distributions, worst prompt"
    )
    min_top1_agreement: Number | None = Field(
        None, description="share of prompts whose most likely next token is the reference's"
    )
    min_top10_overlap: Number | None = Field(
        None, description="mean share of the reference's top 10 in this model's top 10"
    )
    min_greedy_agreeing_tokens: int | None = Field(
        None, description="greedy tokens equal to the reference's before the first difference"
    )
    max_footprint_ratio: Number | None = Field(None, description="memory footprint over the reference's")


class Expect(Section):
    """Expected values, keyed by probe: an absent section is not checked for this model."""

    tokenizer: TokenizerExpect | None = None
    embedding: EmbeddingExpect | None = None
    next_token: NextTokenExpect | None = None
    greedy: GreedyExpect | None = None
    sampling: SamplingExpect | None = None
    beam_search: BeamSearchExpect | None = None
    tasks: TasksExpect | None = None
    model: ModelExpect | None = None
    generation: GenerationExpect | None = None
    hidden_states: HiddenStatesExpect | None = None
    attention: AttentionExpect | None = None
    quantization: QuantizationExpect | None = None
    drift: DriftExpect | None = None


# ----------------------------------------------------------------------- the card


class KnownFailure(Section):
    test: str = Field(description="the test function's name")
    case: str | None = Field(None, description="one case (parameter id) of the test; absent = every case")
    reason: str


class SnapshotSettings(Section):
    leave_out: list[Literal["greedy", "embedding", "sampled"]] = Field(
        [], description="sections left out of this card's snapshot: for a model too slow to decode them all"
    )


class Tolerances(Section):
    """Snapshot comparison tolerances (probes/snapshots.py DEFAULT_TOLERANCES)."""

    prob_atol: Number | None = None
    entropy_atol: Number | None = None
    logit_tie: Number | None = None
    cosine_atol: Number | None = None
    norm_rtol: Number | None = None
    hidden_norm_rtol: Number | None = None
    hidden_cosine_atol: Number | None = None


class CardFile(Section):
    """One model card: what to load, how, and what to expect (fixtures/cards/<name>.yaml)."""

    name: str = Field(description="must match the file name")
    description: str
    marks: list[Literal["gpu"]] = Field([], description="pytest marks every test of this card carries")
    tokenizer: TokenizerSource
    model: ModelSource | None = Field(None, description="where the weights come from; absent = tokenizer only")
    load: LoadSettings = LoadSettings()
    expect: Expect = Expect()
    reference: str | None = Field(None, description="a full-precision card of the same weights, for expect.drift")
    snapshot: SnapshotSettings = SnapshotSettings()
    tolerances: Tolerances = Tolerances()
    xfail: list[KnownFailure] = Field(
        [],
        description="known failures, applied as strict xfails: a fix shows up as XPASS and fails the run",
    )
    leave_out: list[KnownFailure] = Field(
        [], description="tests this card does not run, with why (shown as skips in the report)"
    )
