"""The expect sections of a card, declared: what a card may expect of each probe, with types,
defaults and meanings (the card file's other fields are in cards/schema.py).

Every model forbids unknown fields and is strict (``vocab_size: true`` is not an int,
``"3"`` is not a number). A field without a default is required whenever its section is
present: the tests read it unconditionally."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from lm_probes.inputs import article_inputs


@dataclass(frozen=True)
class Bound:
    """What a bounded number of the card is, in the card's words: the message that refuses a
    value out of range says it (cards/validation.py), and the card reference shows ``allowed``."""

    what: str  # "a probability"
    allowed: str  # "a value in [0, 1]"


def bounded(kind: type, what: str, allowed: str, **limits: float) -> Any:
    """``kind`` (float or int) within ``limits`` (pydantic's ge, gt, le, lt); a float is finite."""
    finite = {"allow_inf_nan": False} if kind is float else {}
    return Annotated[kind, Field(**limits, **finite), Bound(what, allowed)]


# Every number of a card is finite (strict mode still takes an int where a float is declared),
# and a bound that cannot fail is refused with the value: min_top1_prob -0.2 passes for every
# model, 1.5 for none.
Number = bounded(float, "a finite number", "a number (not .nan or .inf)")
Probability = bounded(float, "a probability", "a value in [0, 1]", ge=0, le=1)
Share = bounded(float, "a share", "a value in [0, 1]", ge=0, le=1)
Tolerance = bounded(float, "a tolerance", "a finite number above 0", gt=0)
ProbabilityTolerance = bounded(float, "a probability tolerance", "a value in (0, 1]", gt=0, le=1)
NonNegative = bounded(float, "a bound of 0 or more", "a finite number, 0 or more", ge=0)
Positive = bounded(float, "a positive bound", "a finite number above 0", gt=0)
TokenId = bounded(int, "a token id", "an integer, 0 or more", ge=0)
Count = bounded(int, "a count", "an integer, 0 or more", ge=0)
PositiveCount = bounded(int, "a positive count", "an integer, 1 or more", ge=1)
# intra-group minus inter-group cosine: each in [-1, 1]
CosineMargin = bounded(float, "a cosine margin", "a value in [-2, 2]", ge=-2, le=2)


def distinct_of(draws: int) -> Any:
    """A number of distinct items among the ``draws`` a probe makes: 1 to ``draws`` (0 is
    always reached, more than ``draws`` never)."""
    return bounded(
        int, f"a number of distinct samples out of the {draws} drawn", f"an integer from 1 to {draws}", ge=1, le=draws
    )


# what the probes draw (fixtures/inputs/article.yaml): D7/D8 draw `samples` per regime, K2
# `runs` per opening
SAMPLES = article_inputs()["sampling"]["samples"]
CREATIVE_RUNS = article_inputs()["creative"]["runs"]
# U8 answers run to `max_new_tokens` at most: a bound at or past it cannot fail
ANSWER_BUDGET = article_inputs()["answer_ends"]["max_new_tokens"] - 1
AnswerLength = bounded(int, "a number of new tokens", f"an integer from 1 to {ANSWER_BUDGET}", ge=1, le=ANSWER_BUDGET)


class CardModel(BaseModel):
    """A part of the card: strict types, unknown fields refused, read-only once loaded."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


class ExpectSection(CardModel):
    """One probe's expected values (a key under ``expect:``)."""

    # Whether checking this section loads the model; a tokenizer-only card may hold only
    # sections that say False. MODEL_SECTIONS in cards/validation.py is derived from it.
    needs_model: ClassVar[bool] = True


class Bos(CardModel):
    id: TokenId | None = Field(description="the BOS token id; null for a tokenizer without one")
    token: str | None = Field(description="the BOS token text, e.g. '<s>'; null for none")
    added_by_default: bool = Field(description="encode(text) (special tokens on) starts with BOS")
    probe_text: str = Field(description="the text the BOS checks encode")


class EncodeCase(CardModel):
    id: str = Field(description="names the case in test ids and messages")
    observation: str | None = Field(
        None, description="the observation id this case stands for (T1, ...; docs/observations.md)"
    )
    text: str = Field(description="the text encoded")
    add_special_tokens: bool | None = Field(
        None, description="passed to encode(); null or absent = the tokenizer's default (the argument left out)"
    )
    ids: list[TokenId] = Field(description="encode(text, add_special_tokens=...) ids")
    tokens: list[str] | None = Field(None, description="convert_ids_to_tokens of the ids (SentencePiece '▁' kept)")
    decoded: str | None = Field(None, description="decode(ids)")
    decoded_skipping_special: str | None = Field(
        None,
        description="decode(ids, skip_special_tokens=True), the text users read; with decoded, a change in how "
        "decode joins pieces (clean_up_tokenization_spaces, transformers #42898) fails showing both strings",
    )
    decoded_per_id: list[str] | None = Field(None, description="decode([id]) for each id")
    round_trips: bool = Field(
        True, description="decode(encode(text, add_special_tokens=False)) == text; false records that it alters it"
    )


class FirstToken(CardModel):
    id: str = Field(description="names the case")
    text: str = Field(description="a text encoded without special tokens")
    first_id: TokenId = Field(description="its first id")
    first_token: str = Field(description="that id's vocabulary piece, e.g. '▁The'")
    first_decoded: str = Field(description="decode([first_id])")


class VocabEntry(CardModel):
    id: TokenId = Field(description="a token id")
    token: str = Field(description="its vocabulary piece")
    decoded: str = Field(description="decode([id])")


class DuplicateBos(CardModel):
    id: str = Field(description="names the case")
    prompt: str = Field(description="a prompt that may already start with the BOS text")
    leading_bos: Count = Field(description="how many BOS ids encode(prompt) starts with")
    duplicated: bool = Field(description="encode(prompt) starts with two BOS ids")
    trailing_space_token: bool = Field(description="the ids end with a lone space token")


class ChatExpect(CardModel):
    """U1: the inputs' fixed conversation through the tokenizer's chat template."""

    has_template: bool = Field(description="the tokenizer has a chat template (false: the card says it has none)")
    leading_bos: Count | None = Field(
        None, description="BOS ids opening apply_chat_template(tokenize=True): 1 with a BOS token, never 2"
    )
    generation_prompt: str | None = Field(
        None, description="how the rendered conversation ends (add_generation_prompt=True), e.g. '[/INST]'"
    )
    turn_end: str | None = Field(
        None,
        description="U7: the token the template ends an assistant turn with, e.g. '<|im_end|>' (it must be one of "
        "the ids generate() stops at, on every card with a template)",
    )


class SpecialText(CardModel):
    """U6: one text of the inputs' special_texts ({bos}/{eos} are the tokenizer's own)."""

    id: str = Field(description="a key of fixtures/inputs/article.yaml's special_texts")
    ids: list[TokenId] = Field(description="encode(text, add_special_tokens=False)")
    round_trips: bool = Field(True, description="decode(ids) gives the text back; false records that it does not")


class TokenizerExpect(ExpectSection):
    needs_model: ClassVar[bool] = False

    vocab_size: PositiveCount | None = Field(None, description="tokenizer.vocab_size (T4)")
    bos: Bos | None = Field(None, description="the BOS token and whether encode() adds it (T3)")
    encode: list[EncodeCase] | None = Field(
        None, description="texts with their expected ids, pieces and decodings (T1-T3)"
    )
    first_token: list[FirstToken] | None = Field(None, description="how the first word of a text is marked (T2)")
    vocab_table: list[VocabEntry] | None = Field(None, description="id -> piece -> decode rows (T5)")
    duplicate_bos: list[DuplicateBos] | None = Field(None, description="prompts that already hold the BOS text (T6)")
    chat: ChatExpect | None = Field(None, description="the chat template (U1)")
    special_text: list[SpecialText] | None = Field(
        None, description="special tokens and whitespace through encode/decode (U6)"
    )


class Apart(CardModel):
    id: str = Field(description="names the case")
    pair: list[str] = Field(description="two words expected close (e.g. [dog, cat])")
    outsiders: list[str] = Field(description="words each farther from both of the pair than they are from each other")


class PcaNearer(CardModel):
    id: str = Field(description="names the case")
    group: str = Field(description="a word group of the inputs")
    nearer: str = Field(description="the group its 2-D centroid is nearer to")
    than: str = Field(description="... than to this group")


class EmbeddingExpect(ExpectSection):
    coherent_groups: list[str] | None = Field(
        None, description="groups whose intra-group cosine exceeds the inter-group cosine by at least min_margin"
    )
    incoherent_groups: list[str] | None = Field(None, description="groups that fall short of min_margin")
    min_margin: CosineMargin | None = Field(
        None, description="the margin coherent_groups reach and incoherent_groups do not (E4)"
    )
    apart: list[Apart] | None = Field(None, description="pairs closer to each other than to outsiders (E4)")
    pca_explained_at_most: Share | None = Field(
        None, description="the two principal components explain at most this share of the variance"
    )
    pca_nearer: list[PcaNearer] | None = Field(None, description="centroid distances in the 2-D projection")


class NextTokenExpect(ExpectSection):
    top1: str = Field(description="the most likely next token's text")
    min_top1_prob: Probability | None = Field(None, description="the top-1 token's probability is at least this (D1)")


class GreedyExpect(ExpectSection):
    with_bos_contains: list[str] | None = Field(None, description="substrings of the greedy continuation with BOS (D3)")
    without_bos_contains: list[str] | None = Field(
        None, description="substrings of the greedy continuation without BOS (D4)"
    )
    bos_changes_continuation: bool | None = Field(None, description="BOS on and off give different greedy texts (D4)")
    batch_invariant: bool | None = Field(
        None, description="the prompt's greedy ids are the same alone and in a left-padded batch (D3)"
    )
    batch_difference: Literal["none", "rounding", "real"] | None = Field(
        None,
        description="U5: what a batch difference is: none, rounding (gone one precision step up) or real",
    )
    default_generate_is_greedy: bool | None = Field(None, description="generate() without decoding arguments")


class NearGreedy(CardModel):
    min_greedy_agreement: Share = Field(description="share of the 5 samples equal to greedy (D6)")


class Warm(CardModel):
    answer: str = Field(description="the answer the samples should name (D7)")
    min_answer_share: Share = Field(description="share of samples naming it")
    min_distinct: distinct_of(SAMPLES) = Field(description="distinct samples, at least")


class Hot(CardModel):
    min_distinct: distinct_of(SAMPLES) = Field(description="distinct samples, at least (D8)")
    min_distinct_2: Share | None = Field(None, description="share of distinct token bigrams, at least")


class SamplingExpect(ExpectSection):
    near_greedy: NearGreedy | None = Field(
        None, alias="near-greedy", description="(top_p 0.2, T 0.2): sampling that behaves like greedy (D6)"
    )
    warm: Warm | None = Field(None, description="(top_p 0.2, T 1.4): varied but on the answer (D7)")
    hot: Hot | None = Field(None, description="(top_p 0.9, T 1.4): diverse (D8)")


class BeamSearchExpect(ExpectSection):
    at_least_greedy_logprob: bool = Field(
        description="beam's sequence log p >= greedy's (equal for a model whose greedy path is already best)"
    )
    min_gain_over_greedy: NonNegative | None = Field(
        None, description="nats by which beam's log p exceeds greedy's (a search that silently ran greedy gains 0)"
    )


class Decoding(CardModel):
    do_sample: bool = Field(False, description="sample (true) or greedy (false)")
    top_p: bounded(float, "a nucleus size", "a value in (0, 1]", gt=0, le=1) | None = Field(
        None, description="nucleus size when sampling"
    )
    temperature: bounded(float, "a temperature", "a finite number above 0", gt=0) | None = Field(
        None, description="temperature when sampling"
    )

    def as_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class KnowledgeCase(CardModel):
    id: str = Field(description="names the case (and the question, unless `question` is given)")
    question: str | None = Field(
        None, description="an id of fixtures/inputs/article.yaml's knowledge list (default: the case id)"
    )
    prompt: str | None = Field(None, description="the whole prompt instead of a formatted question")
    prompt_format: str | None = Field(None, description="overrides the card's")
    decoding: Decoding | None = Field(None, description="overrides the card's")
    answer: str = Field(description="a substring the answer must contain (K1)")


class Creative(CardModel):
    greedy_repeats: bool | None = Field(None, description="separate greedy calls give the same openings (K2)")
    min_distinct_samples: distinct_of(CREATIVE_RUNS) | None = Field(
        None, description="distinct sampled continuations per opening, at least (K2)"
    )


class TasksExpect(ExpectSection):
    prompt_format: str = Field(
        "{question}", description='"{question}" is replaced; "chat" applies the tokenizer\'s chat template'
    )
    decoding: Decoding = Field(Decoding(), description="the knowledge questions' decoding (default: greedy)")
    max_new_tokens: PositiveCount = Field(40, description="tokens generated per answer")
    knowledge: list[KnowledgeCase] | None = Field(None, description="knowledge questions and expected answers (K1)")
    creative: Creative | None = Field(None, description="story openings (K2)")


class GenerateCall(CardModel):
    id: str = Field(description="a call of the inputs' generate_calls: no-arguments, greedy, hot")
    settings: dict[str, Any] = Field(
        {}, description="settings the call must run with after the merge (lm_probes/generation_settings.py SETTINGS)"
    )
    processors: list[str] = Field(description="the logits processors generate() builds for the call, in order")


class GenerationExpect(ExpectSection):
    """U2: what generate() inherits from the model's generation_config."""

    calls: list[GenerateCall] = Field(description="one entry per call of the inputs' generate_calls")


class EndsWithin(CardModel):
    id: str = Field(description="a request of fixtures/inputs/article.yaml's answer_ends")
    ends_within: AnswerLength = Field(
        description="the greedy answer ends at a stop id within this many new tokens, on every machine class "
        "(an answer that does not stop runs to the budget)"
    )


class AnswerEndsExpect(ExpectSection):
    """U8: where greedy answers end (the model's own stop ids)."""

    prompts: list[EndsWithin] = Field(description="requests whose answer must end within a bound")


class HiddenStatesExpect(ExpectSection):
    """U3: the hidden-state fingerprint (its changes are judged by the snapshot)."""

    layers: PositiveCount = Field(
        description="hidden states per prompt: the embedding output plus one per decoder layer"
    )


class AttentionExpect(ExpectSection):
    """U4: the model under two attention back-ends."""

    backends: list[str] = Field(description="the two implementations compared, e.g. [eager, sdpa]")
    max_prob_diff: Probability = Field(description="largest |p_a - p_b| over every next token, single and batched")
    greedy_agrees: bool = Field(description="greedy tokens are the same, alone and in a left-padded batch")


class ModelExpect(ExpectSection):
    embedding_shape: list[PositiveCount] | None = Field(None, description="the input embedding's (vocab, hidden) (E1)")
    embedding_dtype: str | None = Field(None, description="its dtype, e.g. float32 (E1)")
    architecture: str | None = Field(None, description="the loaded model's class, e.g. MistralForCausalLM (E1)")


class QuantizationExpect(ExpectSection):
    """What the loaded model's layers are (lm_probes/quantization.py inspect_quantization)."""

    method: str | None = Field(None, description="nf4, fp4, int8 or none")
    linear_4bit: Count | None = Field(None, description="bitsandbytes Linear4bit layers (Q1)")
    linear_8bit: Count | None = Field(None, description="bitsandbytes Linear8bitLt layers (Q1)")
    full_precision_linear: list[str] | None = Field(
        None, description="Linear layers left in full precision, e.g. [lm_head] (Q1)"
    )
    compute_dtype: str | None = Field(None, description="the 4-bit layers' compute dtype, as asked (Q1)")
    computed_dtype: dict[str, str] | None = Field(
        None,
        description="the dtype the 4-bit kernels computed in, per machine class (lm_probes/numerics.py), "
        "with `default` for any other class: e.g. {default: float16, cpu-bnb-packed-bfloat16: bfloat16} (Q1)",
    )
    embedding_class: str | None = Field(None, description="the input embedding's class (Q1)")
    embedding_dtype: str | None = Field(None, description="the input embedding's dtype (Q1)")


class DriftExpect(ExpectSection):
    """Against the card's full-precision ``reference`` card, on the article's prompts."""

    max_kl: NonNegative | None = Field(
        None, description="nats, KL(reference || this) of the next-token distributions, worst prompt"
    )
    min_top1_agreement: Share | None = Field(
        None, description="share of prompts whose most likely next token is the reference's"
    )
    min_top10_overlap: Share | None = Field(
        None, description="mean share of the reference's top 10 in this model's top 10"
    )
    min_greedy_agreeing_tokens: Count | None = Field(
        None, description="greedy tokens equal to the reference's before the first difference"
    )
    max_footprint_ratio: Positive | None = Field(None, description="memory footprint over the reference's")


class Expect(CardModel):
    """Expected values, keyed by probe: an absent section is not checked for this model."""

    tokenizer: TokenizerExpect | None = Field(None, description="tokenizer checks (T1-T6, U1, U6); need no model")
    embedding: EmbeddingExpect | None = Field(None, description="word vectors, cosines, PCA (E2-E5)")
    next_token: NextTokenExpect | None = Field(None, description="the next token after the article's prompt (D1)")
    greedy: GreedyExpect | None = Field(None, description="greedy decoding (D3, D4, U5)")
    sampling: SamplingExpect | None = Field(None, description="the article's three sampling regimes (D6-D8)")
    beam_search: BeamSearchExpect | None = Field(None, description="beam search against greedy (D9)")
    tasks: TasksExpect | None = Field(None, description="knowledge questions and story openings (K1, K2)")
    model: ModelExpect | None = Field(None, description="the loaded model and its embedding matrix (E1)")
    generation: GenerationExpect | None = Field(None, description="what generate() inherits (U2)")
    answer_ends: AnswerEndsExpect | None = Field(None, description="where greedy answers end (U8)")
    hidden_states: HiddenStatesExpect | None = Field(None, description="hidden-state fingerprint (U3)")
    attention: AttentionExpect | None = Field(None, description="attention back-ends (U4)")
    quantization: QuantizationExpect | None = Field(None, description="the loaded layers' quantization (Q1)")
    drift: DriftExpect | None = Field(None, description="drift from the full-precision reference card (Q2-Q5)")
