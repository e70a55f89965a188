"""The break table itself (tests/unit/test_break_table.py): each row, one break and the
behavioural tests it must fail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lm_probes.cards.card import find_card
from lm_probes.subjects.subject import Subject
from tests.unit.break_patches import (
    beam_search_that_runs_greedy,
    bos_run_without_bos,
    chat_template_tokenized_with_special_tokens,
    collapse_embedding,
    eval_that_keeps_dropout,
    flip_first_greedy_token,
    generate_that_drifts_between_calls,
    generate_that_ignores_stop_ids,
    generate_that_never_samples,
    generate_that_samples,
    joining_as_cleanup,
    noise_embedding,
    own_temperature_ignored,
    padding_mask_ignored,
    recorded_first_greedy_token,
    sdpa_that_scales_scores,
    shuffle_embedding_rows,
    warper_temperature_ignored,
    warper_top_k_one_more,
    warper_top_p_one_more,
    warpers_ignored,
)
from tests.unit.break_running import (
    Check,
    add_prefix_space,
    bos,
    case,
    from_folder,
    saved_model_folder,
    smollm2,
    smollm2_folder,
)
from tests.unit.conftest import tiny, tiny_card

# ------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Break:
    name: str  # as in docs/reliability.md's table
    kind: str  # library | model folder | tokenizer config | weights | own probe
    make: Callable  # (monkeypatch, tmp_path) -> the broken Subject
    caught_by: tuple[Check, ...]


GREEDY_ARGMAX = Check("test_decoding.py::test_greedy_picks_the_most_likely_token", bos(True))
GREEDY_REPEATS = Check("test_decoding.py::test_greedy_is_identical_across_runs", bos(True))
DEFAULT_GREEDY = Check("test_decoding.py::test_default_generate_is_greedy")
SPECIAL_TEXT = "test_tokenizer.py::test_special_tokens_and_whitespace_encode_and_round_trip"
CHAT_IDS = "test_tokenizer.py::test_chat_template_ids_are_the_rendered_text_with_one_bos"
GENERATE_SETTINGS = "test_internals.py::test_generate_runs_with_the_settings_the_card_expects"
ATTENTION = Check("test_internals.py::test_attention_backends_agree")
TURN_END = "test_stopping.py::test_generation_stops_where_the_chat_template_ends_a_turn"
ANSWERS_STOP = "test_stopping.py::test_generate_stops_at_the_first_stop_id_it_emits"
ANSWER_ENDS_WITHIN = "test_stopping.py::test_greedy_answer_ends_within"
SNAPSHOT = Check("test_snapshot.py::test_matches_snapshot")


def patched(patch: Callable, subject: Callable[[], Subject]) -> Callable:
    def make(monkeypatch, tmp_path):
        patch(monkeypatch)
        return subject()

    return make


BREAKS = [
    Break(
        "generation_config.json gains repetition_penalty: 1.3 (SmolLM2)",
        "model folder",
        lambda mp, tmp: from_folder("smollm2-135m-instruct", smollm2_folder(tmp / "m", {"repetition_penalty": 1.3})),
        (
            DEFAULT_GREEDY,
            Check(
                GENERATE_SETTINGS,
                case("smollm2-135m-instruct", "generation.calls", "no-arguments"),
                says=("unexpected: ['RepetitionPenaltyLogitsProcessor']", "'repetition_penalty': 1.3"),
            ),
        ),
    ),
    Break(
        "generation_config.json suppresses the first greedy token",
        "model folder",
        lambda mp, tmp: from_folder(
            "tiny-mistral", saved_model_folder(tiny(), tmp / "m", {"suppress_tokens": [recorded_first_greedy_token()]})
        ),
        # Hole 1: the suppressed token was not this run's own argmax, so the snapshot calls
        # the flip an error naming the cause, not a near-tie.
        (
            GREEDY_ARGMAX,
            DEFAULT_GREEDY,
            Check(
                "test_snapshot.py::test_matches_snapshot",
                says=(
                    "[error] greedy.bos: continuation changed at new token 0",
                    "did not pick the highest-scoring token",
                ),
                not_says=("near-tie",),
            ),
        ),
    ),
    Break(
        "generation_config.json turns sampling on (do_sample, temperature 1.5)",
        "model folder",
        lambda mp, tmp: from_folder(
            "tiny-mistral", saved_model_folder(tiny(), tmp / "m", {"do_sample": True, "temperature": 1.5})
        ),
        (
            DEFAULT_GREEDY,
            Check(
                GENERATE_SETTINGS,
                case("tiny-mistral", "generation.calls", "no-arguments"),
                says=("unexpected: ['TemperatureLogitsWarper'",),
            ),
        ),
    ),
    Break(
        # the Llama-3-Instruct shape: the template ends a turn with one token, the stop ids name another
        "generation_config.json's eos_token_id loses the end-of-turn token: 0 (endoftext), not 2 (im_end) (SmolLM2)",
        "model folder",
        lambda mp, tmp: from_folder("smollm2-135m-instruct", smollm2_folder(tmp / "m", {"eos_token_id": 0})),
        (
            # with no baseline at all: the template and the stop ids disagree
            Check(
                TURN_END,
                says=("'<|im_end|>' is not among them", "Add 2 to generation_config.json's eos_token_id"),
            ),
            # against the card's recorded settings: the stop id changed
            Check(
                GENERATE_SETTINGS,
                case("smollm2-135m-instruct", "generation.calls", "no-arguments"),
                says=("settings.eos_token_id", "expected: 2", "obtained: 0"),
            ),
            # what users see: the answer ends its turn and writes on (the next turn's headers)
            Check(
                ANSWER_ENDS_WITHIN,
                case("smollm2-135m-instruct", "answer_ends.prompts", "japan"),
                says=("field expect.answer_ends.prompts[japan].ends_within", "<|im_end|>\\n<|im_start|>"),
            ),
        ),
    ),
    Break(
        # a library-level change: the stop ids are right, but nothing stops at them
        "generate() no longer stops at a stop id: its end-of-sequence criterion never fires (SmolLM2)",
        "library",
        patched(generate_that_ignores_stop_ids, smollm2),
        (
            # with no baseline: an answer emitted <|im_end|> and generation went on
            Check(ANSWERS_STOP, says=("went on past stop id 2 '<|im_end|>'",)),
            # against the card's bound: the answer ran to the budget
            Check(
                ANSWER_ENDS_WITHIN,
                case("smollm2-135m-instruct", "answer_ends.prompts", "japan"),
                says=("field expect.answer_ends.prompts[japan].ends_within", "went on past stop id 2"),
            ),
        ),
    ),
    Break(
        "chat_template.jinja writes BOS itself (SmolLM2)",
        "model folder",
        lambda mp, tmp: from_folder(
            "smollm2-135m-instruct", smollm2_folder(tmp / "m", chat_template=lambda t: "{{ bos_token }}" + t)
        ),
        (Check(CHAT_IDS, says=("field expect.tokenizer.chat.leading_bos", "obtained: 2")),),
    ),
    Break(
        "tokenizer.json's pre-tokenizer gains add_prefix_space (SmolLM2)",
        "model folder",
        lambda mp, tmp: from_folder(
            "smollm2-135m-instruct", smollm2_folder(tmp / "m", tokenizer_json=add_prefix_space)
        ),
        (
            Check(
                SPECIAL_TEXT,
                case("smollm2-135m-instruct", "tokenizer.special_text", "eos-glued"),
                says=("field expect.tokenizer.special_text[eos-glued].ids",),
            ),
        ),
    ),
    Break(
        "apply_chat_template(tokenize=True) adds special tokens",
        "library",
        patched(chat_template_tokenized_with_special_tokens, tiny),
        (
            Check(CHAT_IDS, says=("a property every model must have", "at position 1: tokenize=True gives [1, 1,")),
            Check("test_snapshot.py::test_matches_snapshot", says=("[error] tokenizer.chat.ids",)),
        ),
    ),
    Break(
        "the causal mask ignores the padding mask",
        "library",
        patched(padding_mask_ignored, tiny),
        (
            Check("test_decoding.py::test_greedy_is_batch_invariant", says=("still differ", ": real")),
            Check("test_decoding.py::test_a_batch_difference_is_what_the_card_says", says=("obtained: 'real'",)),
        ),
    ),
    Break(
        "the sdpa attention back-end scales its scores by 1.05",
        "library",
        patched(sdpa_that_scales_scores, tiny),
        (Check("test_internals.py::test_attention_backends_agree", says=("field expect.attention.max_prob_diff",)),),
    ),
    Break(
        "generate() samples with a fixed seed although do_sample=False",
        "library",
        patched(generate_that_samples, tiny),
        (GREEDY_ARGMAX,),
    ),
    Break(
        "generate() drifts from call to call, identical rows within a batch",
        "library",
        patched(generate_that_drifts_between_calls, tiny),
        (GREEDY_REPEATS, Check("test_tasks.py::test_story_openings_repeat_under_greedy")),
    ),
    Break(
        "beam search silently runs greedy",
        "library",
        patched(beam_search_that_runs_greedy, tiny),
        (Check("test_decoding.py::test_beam_search_is_deterministic_and_beats_greedy"),),
    ),
    Break(
        "dropout left on: the model stays in training mode (attention_dropout 0.5)",
        "library",
        patched(eval_that_keeps_dropout, lambda: tiny(attention_dropout=0.5)),
        (GREEDY_REPEATS,),
    ),
    Break(
        "TopPLogitsWarper keeps one token too many",
        "library",
        patched(warper_top_p_one_more, tiny),
        (Check("test_sampling.py::test_own_top_p_keeps_what_transformers_keeps", {"min_keep": 1}),),
    ),
    Break(
        "TopKLogitsWarper keeps k + 1 tokens",
        "library",
        patched(warper_top_k_one_more, tiny),
        (
            Check("test_sampling.py::test_own_top_k_keeps_what_transformers_keeps", {"min_keep": 1}),
            Check("test_decoding.py::test_top_k_sampling_draws_only_from_the_k_most_likely"),
        ),
    ),
    Break(
        "TemperatureLogitsWarper ignores the temperature",
        "library",
        patched(warper_temperature_ignored, tiny),
        (Check("test_decoding.py::test_own_temperature_matches_transformers"),),
    ),
    Break(
        "generate() ignores temperature and top_p (SmolLM2)",
        "library",
        patched(warpers_ignored, smollm2),
        (Check("test_decoding.py::test_low_top_p_low_temperature_behaves_like_greedy"),),
    ),
    Break(
        "generate() ignores do_sample=True and decodes greedily (SmolLM2)",
        "library",
        patched(generate_that_never_samples, smollm2),
        (Check("test_decoding.py::test_high_top_p_high_temperature_is_diverse"),),
    ),
    Break(
        "generate() ignores do_sample=True and decodes greedily",
        "library",
        patched(generate_that_never_samples, tiny),
        (Check("test_tasks.py::test_story_openings_differ_under_sampling"),),
    ),
    Break(
        "the own sampler ignores the temperature",
        "own probe",
        patched(own_temperature_ignored, tiny),
        (Check("test_sampling.py::test_own_sampler_draws_from_the_nucleus"),),
    ),
    Break(
        "the BOS-on greedy run lacks BOS (tokenizer stops adding it; probe does not force it)",
        "own probe",
        lambda mp, tmp: (bos_run_without_bos(mp), Subject(tiny_card().with_tokenizer_config(add_bos_token=False)))[1],
        (Check("test_decoding.py::test_bos_changes_the_continuation"),),
    ),
    Break(
        # transformers #42898 "decode spacing changed in v5": its clean_up_tokenization_spaces
        "decode joins pieces differently: clean_up_tokenization_spaces on",
        "library",
        lambda mp, tmp: joining_as_cleanup(mp, Subject(find_card("mistral-tokenizer"))),
        (
            Check(
                "test_tokenizer.py::test_encode",
                case("mistral-tokenizer", "tokenizer.encode", "spaced-punctuation"),
                says=("decode(ids) gave '<s> Hello, world!' (card: '<s> Hello , world !')",),
            ),
            Check(
                "test_tokenizer.py::test_decode_round_trip",
                case("mistral-tokenizer", "tokenizer.encode", "contractions"),
            ),
        ),
    ),
    Break(
        "tokenizer drops BOS (add_bos_token: false)",
        "tokenizer config",
        lambda mp, tmp: Subject(find_card("mistral-tokenizer").with_tokenizer_config(add_bos_token=False)),
        (
            Check("test_tokenizer.py::test_bos_prepended_by_default_and_absent_without_special_tokens"),
            Check("test_tokenizer.py::test_encode", case("mistral-tokenizer", "tokenizer.encode", "english")),
            Check(
                "test_tokenizer.py::test_duplicate_bos_detected",
                case("mistral-tokenizer", "tokenizer.duplicate_bos", "knowledge-prompt"),
            ),
            SNAPSHOT,
        ),
    ),
    Break(
        "tokenizer flips legacy (legacy: false)",
        "tokenizer config",
        lambda mp, tmp: Subject(find_card("mistral-tokenizer").with_tokenizer_config(legacy=False)),
        (
            Check("test_tokenizer.py::test_encode", case("mistral-tokenizer", "tokenizer.encode", "bos-text-inside")),
            Check(SPECIAL_TEXT, case("mistral-tokenizer", "tokenizer.special_text", "bos-then-word")),
            SNAPSHOT,
        ),
    ),
    Break("embedding rows shuffled", "weights", lambda mp, tmp: shuffle_embedding_rows(tiny()), (SNAPSHOT,)),
    Break(
        "a weight change flips the first greedy token",
        "weights",
        lambda mp, tmp: flip_first_greedy_token(tiny()),
        # an error naming the step and this run's logits, not excused as a near-tie
        (
            Check(
                "test_snapshot.py::test_matches_snapshot",
                says=("[error] greedy.bos: continuation changed at new token 0", "logits now"),
                not_says=("near-tie",),
            ),
        ),
    ),
    Break(
        "embedding collapsed to one direction",
        "weights",
        lambda mp, tmp: collapse_embedding(tiny()),
        (Check("test_embedding.py::test_two_components_explain_little_variance"), SNAPSHOT),
    ),
    Break(
        "embedding replaced by noise of the same scale (SmolLM2)",
        "weights",
        lambda mp, tmp: noise_embedding(Subject(find_card("smollm2-135m-instruct"))),
        (
            Check("test_embedding.py::test_semantic_group_is_closer_inside_than_outside", {"case": "people"}),
            Check("test_decoding.py::test_next_token_top1"),
        ),
    ),
]
