"""Draft a card from measurement: what does this model do with the article's inputs?

``draft_card(subject, settings)`` runs every probe once on a loaded subject (the same
functions the behavioural tests call, through ``lm_probes.subjects.results``, so the same
batches and seeds) and returns the card's sections with the measured values:

- exact observations (ids, pieces, BOS behaviour, architecture, processors, greedy
  texts, verdicts) are written as measured;
- bounds (a top-1 probability, sampling shares over many draws, an attention
  back-end difference, PCA variance, beam's gain, drift figures) keep a stated margin
  from the measured value, and a bound that could no longer fail is not written: the
  comment says what was measured and why the field is absent;
- what the model gets wrong (a knowledge answer, a word group no more coherent than a
  random embedding) is a strict xfail whose reason is the obtained value.

Every value carries a comment saying what was measured. The suite then passes on the
card by construction, and fails when the model, its files or a library changes what
they do (tests/unit/draft/test_draft.py shows both). The user reviews the card and commits it.
``lm-probes draft-card`` (lm_probes/cli/draft_card.py) is the command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lm_probes import decoding as dc
from lm_probes import quantization as qz
from lm_probes.cards.expect_schema import TasksExpect
from lm_probes.draft.embedding import draft_embedding
from lm_probes.draft.margins import BACKENDS, BEAM_GAIN, DISTINCT, DRIFT_MARGINS, TOP1_PROB
from lm_probes.draft.sampling_bounds import draft_sampling, opening_groups
from lm_probes.draft.settings import Draft, DraftSettings, short_text
from lm_probes.draft.tokenizer import draft_tokenizer
from lm_probes.draft.turn_end import draft_turn_end
from lm_probes.draft.writer import Commented
from lm_probes.inputs import article_inputs
from lm_probes.subjects import drift as drifts
from lm_probes.subjects import results

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


# ------------------------------------------------------------------------ rounding


# ---------------------------------------------------------------------- tokenizer


# -------------------------------------------------------------------------- model


def draft_model(subject: Subject) -> dict[str, Any]:
    model = subject.model
    weight = model.get_input_embeddings().weight
    return {
        "architecture": type(model).__name__,
        "embedding_shape": list(weight.shape),
        "embedding_dtype": str(weight.dtype).removeprefix("torch."),
    }


def draft_quantization(subject: Subject) -> dict[str, Any]:
    info = subject.quantization
    found = info.as_dict()
    keys = (
        "method",
        "linear_4bit",
        "linear_8bit",
        "full_precision_linear",
        "compute_dtype",
        "embedding_class",
        "embedding_dtype",
    )
    drafted = {k: list(found[k]) if isinstance(found[k], tuple) else found[k] for k in keys}
    if info.computed_dtype is not None:
        # what the kernels computed in here, by machine class; any other class is expected
        # to compute in the asked dtype until measured there (Q1 says what to add)
        drafted["computed_dtype"] = {"default": info.compute_dtype}
        if info.computed_dtype != info.compute_dtype:
            drafted["computed_dtype"][subject.machine_class] = info.computed_dtype
    return drafted


def draft_generation(subject: Subject) -> dict[str, Any]:
    """U2: every setting generate() resolves for each call, and its processors."""
    calls = []
    for call in article_inputs()["generate_calls"]:
        found = results.generation_settings(subject, call)
        calls.append({"id": call, "settings": dict(found.effective), "processors": list(found.processors)})
    return Commented({"calls": calls}, "U2: what generate() runs with once the model's generation_config is merged in")


def draft_answer_ends(subject: Subject) -> Any:
    """U8: each answer_ends request answered as the suite answers it; an answer that stopped
    at a stop id gets the bound ends_within, twice its measured length (a rewording at a
    near-tie on another machine class), at most one short of the budget. An answer that ran
    to the budget gets none: there is nothing to bound. None: no answer stopped."""
    ends = results.answer_ends(subject)
    budget = next(iter(ends.values())).budget
    prompts = [
        {"id": request, "ends_within": min(2 * len(end.ids), budget - 1)}
        for request, end in ends.items()
        if end.end == "stop"
    ]
    measured = ", ".join(
        f"{request} {len(end.ids)}" if end.end == "stop" else f"{request} ran to the budget ({budget})"
        for request, end in ends.items()
    )
    if not prompts:
        return None
    return Commented(
        {"prompts": prompts},
        f"U8, measured greedy ends in new tokens with the stop id: {measured}; bounds twice the measured",
    )


def draft_internals(subject: Subject, draft: Draft) -> tuple[dict[str, Any], Any]:
    """U3 (the layer count; the fingerprint itself goes into the snapshot) and U4."""
    layers = results.fingerprints(subject)[0].layers
    hidden = Commented({"layers": layers}, "U3: the embedding output plus one per decoder layer")
    backends = ("eager", "sdpa")
    try:
        agreement = results.attention_backends(subject, backends)
    except Exception as exc:  # a model without one of the back-ends: the section is left out
        draft.skip("attention", f"{backends} could not both run ({type(exc).__name__}: {exc})")
        return hidden, None
    measured = agreement.max_prob_diff
    # kernels' rounding moves with the thread count and the CPU; a back-end that computes
    # something else moves far more
    attention = Commented(
        {
            "backends": list(backends),
            "max_prob_diff": BACKENDS.bound(measured),
            "greedy_agrees": agreement.greedy_agrees,
        },
        f"U4: measured max |dp| {measured:.2g}; the bound is {BACKENDS.describe()}",
    )
    return hidden, attention


# ---------------------------------------------------------------------- embedding


# ----------------------------------------------------------------------- decoding


def draft_next_token(subject: Subject) -> Any:
    result = results.next_token(subject)
    p = result.top1_prob
    section: dict[str, Any] = {"top1": result.top1_token}
    if TOP1_PROB.can_fail(p):
        section["min_top1_prob"] = TOP1_PROB.bound(p)
    top3 = ", ".join(f"{t!r} {q:.3f}" for t, q in zip(result.top_tokens[:3], result.top_probs[:3]))
    return Commented(section, f"D1: measured {top3}; the bound is {TOP1_PROB.describe()}")


def first_words(text: str) -> str | None:
    """A substring the greedy text must keep: its first line (first non-empty one), at
    most 5 words; None for a text of whitespace only."""
    line = next((line for line in text.split("\n") if line.strip()), "")
    if not line.strip():
        return None
    start = text.index(line)
    words = line.split(" ")
    kept = " ".join(words[: 5 + (1 if words[0] == "" else 0)])
    return text[start : start + len(kept)]


def draft_greedy(subject: Subject) -> Any:
    with_bos, without = results.greedy_first_run(subject, True), results.greedy_first_run(subject, False)
    section: dict[str, Any] = {}
    for name, run in (("with_bos_contains", with_bos), ("without_bos_contains", without)):
        opening = first_words(run.texts[0])
        if opening:
            section[name] = Commented([opening], short_text(run.texts[0]))
    if subject.tokenizer.bos_token_id is not None:
        section["bos_changes_continuation"] = with_bos.texts[0] != without.texts[0]
    diagnosis = results.batch_diagnosis(subject)
    section["batch_invariant"] = diagnosis.comparison.identical
    section["batch_difference"] = Commented(diagnosis.verdict, diagnosis.describe())
    prompt = article_inputs()["greedy"]["prompt"]
    section["default_generate_is_greedy"] = dc.default_decoding(subject.tokenizer, subject.model, prompt).greedy
    return Commented(section, "D3, D4, U5: greedy texts as measured (the first line, at most 5 words)")


def draft_beam_search(subject: Subject, draft: Draft) -> Any:
    beams = article_inputs()["beam_search"]["num_beams"]
    result = results.beam_against_greedy(subject)
    first, gain = result.beam, result.gain
    if first.distinct_hypotheses != beams:
        draft.fails(
            "test_beam_search_is_deterministic_and_beats_greedy",
            f"{first.distinct_hypotheses} distinct hypotheses of {beams} (measured by lm-probes draft-card)",
        )
    section: dict[str, Any] = {"at_least_greedy_logprob": gain >= -1e-4}
    if BEAM_GAIN.can_fail(gain):
        section["min_gain_over_greedy"] = BEAM_GAIN.bound(gain)
    return Commented(
        section, f"D9: beam's log p exceeds greedy's by {gain:.2f} nats; the bound is {BEAM_GAIN.describe()}"
    )


def draft_tasks(subject: Subject, settings: DraftSettings, draft: Draft) -> Any:
    """K1: the inputs' questions in the chosen prompt format (and through the chat
    template where there is one), greedy; a wrong answer is a strict xfail naming what the
    model said. K2: the openings, greedy and over the draws."""
    questions = article_inputs()["knowledge"]
    cases: list[dict[str, Any]] = [{"id": q["id"], "answer": q["answer"]} for q in questions]
    if getattr(subject.tokenizer, "chat_template", None):
        cases += [
            {"id": f"{q['id']}-chat", "question": q["id"], "prompt_format": "chat", "answer": q["answer"]}
            for q in questions
        ]
    tasks = {"prompt_format": settings.prompt_format, "decoding": {"do_sample": False}, "max_new_tokens": 40}
    answers = results.answer_questions(subject, TasksExpect.model_validate({**tasks, "knowledge": cases}))
    knowledge = []
    for case in cases:
        said = answers[case["id"]].texts[0]
        if case["answer"] not in said:
            answer = f"it answers {said.strip()[:120]!r}" if said.strip() else f"it answers nothing ({said!r})"
            draft.fails("test_knowledge_answer", f"{answer} (measured by lm-probes draft-card)", case=case["id"])
        knowledge.append(Commented(case, short_text(said)))
    tasks["knowledge"] = knowledge

    greedy_runs = results.openings(subject, sampling=False)
    creative: dict[str, Any] = {"greedy_repeats": all(g.all_identical for g in greedy_runs)}
    distinct = min(opening_groups(subject, settings.draws))
    over = f"over {settings.draws} draws"
    if DISTINCT.can_fail(distinct):
        creative["min_distinct_samples"] = DISTINCT.bound(distinct)
    else:
        draft.skip("tasks.creative.min_distinct_samples", f"smallest distinct continuations {over}: {distinct}")
    tasks["creative"] = Commented(creative, f"smallest distinct sampled continuations {over}: {distinct}")
    return tasks


def draft_drift(subject: Subject, reference: Subject) -> Any:
    """Q2-Q5 against the reference card: each figure with its margin (DRIFT_MARGINS)."""
    figures = qz.drift_figures(drifts.drift(subject, reference))
    section: dict[str, Any] = {}
    rules = []
    for field, (figure, margin) in DRIFT_MARGINS.items():
        if margin.can_fail(figures[figure]):
            section[field] = margin.bound(figures[figure])
            rules.append(f"{field} {margin.describe()}")
    measured = ", ".join(f"{k} {v:.3g}" for k, v in figures.items())
    return Commented(section, f"against {reference.name}, measured {measured}; bounds: {'; '.join(rules)}")


# -------------------------------------------------------------------------- card


def draft_card(subject: Subject, settings: DraftSettings | None = None) -> Draft:
    """Every probe on ``subject``: the tokenizer's always, the model's when it has one, then
    where generation stops (U7: with the model loaded, its own generation_config, as the
    suite reads it). Raises TurnEndNotAStop for a model whose stop ids miss its turn end,
    unless the settings accept it."""
    settings = settings or DraftSettings()
    draft = Draft()
    draft.expect["tokenizer"] = draft_tokenizer(subject.tokenizer, draft)
    if subject.card.has_model:
        draft_model_sections(subject, settings, draft)
    draft_turn_end(subject, draft, settings.accept_turn_end_not_a_stop_id)
    return draft


def draft_model_sections(subject: Subject, settings: DraftSettings, draft: Draft) -> None:
    """The model's sections: minutes on a real model (sampling over the draws, knowledge)."""
    expect = draft.expect
    expect["model"] = draft_model(subject)
    if subject.options.quantization != "none":
        expect["quantization"] = draft_quantization(subject)
    expect["generation"] = draft_generation(subject)
    answer_ends = draft_answer_ends(subject)
    if answer_ends is not None:
        expect["answer_ends"] = answer_ends
    expect["hidden_states"], attention = draft_internals(subject, draft)
    if attention is not None:
        expect["attention"] = attention
    expect["embedding"] = draft_embedding(subject, draft)
    expect["next_token"] = draft_next_token(subject)
    expect["greedy"] = draft_greedy(subject)
    sampling = draft_sampling(subject, settings, draft)
    if sampling is not None:
        expect["sampling"] = sampling
    expect["beam_search"] = draft_beam_search(subject, draft)
    expect["tasks"] = draft_tasks(subject, settings, draft)
    if settings.reference is not None:
        expect["drift"] = draft_drift(subject, settings.reference)
