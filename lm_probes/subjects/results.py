"""A subject's probe results, each computed once per session and shared: the behaviour
tests, the snapshots and the report all read the same results from here, so nothing a probe
computed is computed again (the next-token logits feed the bar chart, the temperature
panels, the sampler checks and the snapshot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lm_probes import attention as at
from lm_probes import batching, generation, stopping
from lm_probes import decoding as dc
from lm_probes import embedding as em
from lm_probes import generate_calls as calls
from lm_probes import generation_settings as gs
from lm_probes import hidden_states as hs
from lm_probes import tokenizer as tk
from lm_probes.inputs import QUESTION_FORMAT, article_inputs, format_prompt, knowledge_question
from lm_probes.subjects.memo import RESULTS

if TYPE_CHECKING:
    from lm_probes.cards.expect_schema import Decoding, KnowledgeCase, TasksExpect
    from lm_probes.subjects.subject import Subject


def next_token(subject: Subject, prompt: str | None = None) -> dc.NextToken:
    """The next-token distribution after ``prompt`` (default: the article's D1 prompt),
    computed once per prompt: a check about another prompt asks for that prompt."""
    inputs = article_inputs()
    prompt, k = prompt or inputs["next_token_prompt"], inputs["top_k_shown"]
    return RESULTS.get(
        subject, ("next_token", prompt), lambda: dc.next_token(subject.tokenizer, subject.model, prompt, k)
    )


def chat_rendering(subject: Subject) -> tk.ChatRendering:
    """U1: the inputs' conversation through the subject's chat template (tokenizer only)."""
    return RESULTS.get(subject, "chat", lambda: tk.chat_rendering(subject.tokenizer, article_inputs()["chat"]))


def turn_end(subject: Subject, generation_config: Any | None = None) -> stopping.TurnEnd:
    """U7: the chat template's end of an assistant turn (the inputs' first two turns) against
    the ids generate() stops at: ``generation_config``'s where given (draft-card reads the
    folder's before loading weights), else the model's, or a tokenizer-only card's eos."""
    if generation_config is None and subject.card.has_model:
        generation_config = subject.model.generation_config
    return stopping.turn_end(subject.tokenizer, generation_config, article_inputs()["chat"][:2])


def answer_end_prompts(subject: Subject) -> dict[str, str]:
    """U8's requests (fixtures/inputs/article.yaml's answer_ends) as prompts: each a user turn
    through the chat template, or for a tokenizer without one, in the card's prompt format."""
    spec = article_inputs()["answer_ends"]
    tasks = subject.card.expect.tasks
    chat = bool(getattr(subject.tokenizer, "chat_template", None))
    prompt_format = "chat" if chat else (tasks.prompt_format if tasks is not None else QUESTION_FORMAT)
    return {
        request["id"]: format_prompt(
            subject.tokenizer,
            prompt_format,
            request["content"] if "content" in request else knowledge_question(request["question"]),
        )
        for request in spec["requests"]
    }


def answer_ends(subject: Subject) -> dict[str, stopping.AnswerEnd]:
    """U8: where each greedy answer to the answer_ends requests ended, all in one batched
    call with the model's own stop ids (its generation_config's) and the inputs' budget."""

    def answer() -> dict[str, stopping.AnswerEnd]:
        budget = article_inputs()["answer_ends"]["max_new_tokens"]
        prompts = answer_end_prompts(subject)
        tokenizer, model = subject.tokenizer, subject.model
        stop_ids, _ = stopping.stop_ids(tokenizer, model.generation_config)
        rows = calls.greedy_unstripped(
            tokenizer, model, list(prompts.values()), max_new_tokens=budget, top_k=stopping.TOP_K
        )
        decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
        return {
            request: stopping.read_answer_end(
                request,
                prompt,
                prompt_ids,
                row,
                budget=budget,
                stop_ids=stop_ids,
                pad_id=calls.pad_id(tokenizer),
                decode=decode,
                top_ids=top,
            )
            for (request, prompt), (prompt_ids, row, top) in zip(prompts.items(), rows)
        }

    return RESULTS.get(subject, "answer_ends", answer)


def generation_settings(subject: Subject, call: str) -> gs.InheritedSettings:
    """U2: what ``generate(**generate_calls[call])`` runs with, once the model's
    generation_config is merged in (no tokens generated)."""
    arguments = article_inputs()["generate_calls"][call]
    return RESULTS.get(subject, ("generation", call), lambda: gs.inherited_settings(subject.model, arguments))


def fingerprints(subject: Subject) -> list[hs.Fingerprint]:
    """U3: the hidden-state fingerprint of each internals prompt."""
    prompts = article_inputs()["internals"]["prompts"]
    return RESULTS.get(
        subject, "fingerprints", lambda: [hs.fingerprint(subject.tokenizer, subject.model, p) for p in prompts]
    )


def attention_backends(subject: Subject, backends: tuple[str, str]) -> at.BackendAgreement:
    """U4: the internals prompts under two attention back-ends."""
    inputs = article_inputs()
    spec = inputs["internals"]
    return RESULTS.get(
        subject,
        ("attention", backends),
        lambda: at.compare_backends(
            subject.tokenizer,
            subject.model,
            backends,
            spec["prompts"],
            inputs["batch_invariance"]["others"],
            spec["max_new_tokens"],
        ),
    )


def batch_diagnosis(subject: Subject) -> batching.BatchDiagnosis:
    """D3/U5: the batch-invariance prompt alone and in a left-padded batch, diagnosed one
    precision step up when the two differ."""
    spec = article_inputs()["batch_invariance"]
    return RESULTS.get(
        subject,
        "batch",
        lambda: batching.diagnose_batch_invariance(
            subject.tokenizer, subject.model, spec["prompt"], spec["others"], spec["max_new_tokens"]
        ),
    )


def temperature_sweep(subject: Subject) -> dc.TemperatureSweep:
    """softmax(z / T) of the next-token logits at the article's temperatures (D2): the
    panels and the snapshot's entropies."""
    inputs = article_inputs()
    return RESULTS.get(
        subject,
        "temperature",
        lambda: dc.temperature_sweep(next_token(subject).logits, inputs["temperatures"], k=inputs["top_k_shown"]),
    )


def greedy(subject: Subject, bos: bool) -> generation.Generation:
    """The article's greedy prompt, run in separate calls (D3/D4), keeping every run's
    logits (the argmax check, step margins). Run 1 is ``greedy_first_run``'s call.

    BOS on means the BOS token really leads the prompt: a tokenizer that adds none by
    itself (SmolLM2) gets it put in front explicitly, or "BOS on" and "BOS off" would be
    the same input. Keyed by the prompt's ids, so the same input is never run twice."""
    return RESULTS.get(
        subject,
        ("greedy", _greedy_ids(subject.tokenizer, bos)),
        lambda: calls.greedy_runs(
            subject.tokenizer,
            subject.model,
            runs=article_inputs()["greedy"]["runs"],
            first=greedy_first_run(subject, bos),
            **_greedy_call(subject, bos),
        ),
    )


def greedy_first_run(subject: Subject, bos: bool) -> generation.Generation:
    """Run 1 of ``greedy``, alone: what reads one greedy text (the card's substrings, BOS
    on against off, the snapshot) needs no more. A check of a freshly built subject (a
    break, a draft) then makes 1 call instead of 5; the repeat checks add runs 2 to 5."""
    return RESULTS.get(
        subject,
        ("greedy-run-1", _greedy_ids(subject.tokenizer, bos)),
        lambda: calls.generate(subject.tokenizer, subject.model, keep_logits=True, **_greedy_call(subject, bos)),
    )


def _greedy_call(subject: Subject, bos: bool) -> dict[str, Any]:
    """The D3 (BOS on) or D4 (BOS off) greedy call's arguments: every run is this call."""
    spec = article_inputs()["greedy"]
    return {
        "prompt": spec["prompt"],
        "max_new_tokens": spec["max_new_tokens"],
        "add_special_tokens": bos,
        "force_bos": _forces_bos(subject.tokenizer, bos),
    }


def _forces_bos(tokenizer, bos: bool) -> bool:
    return bos and tokenizer.bos_token_id is not None


def _greedy_ids(tokenizer, bos: bool) -> tuple[int, ...]:
    """The D3 (BOS on) or D4 (BOS off) greedy prompt's ids."""
    prompt = article_inputs()["greedy"]["prompt"]
    return tuple(calls.prompt_ids(tokenizer, prompt, add_special_tokens=bos, force_bos=_forces_bos(tokenizer, bos)))


def sampled(
    subject: Subject, regime: str, *, seed: int | None = None, runs: int | None = None, until_groups_differ: int = 0
) -> generation.Generation:
    """The (top_p, temperature) regime's samples for the session seed, one batched call.
    ``seed`` and ``runs`` draw more (the draft's bounds); ``until_groups_differ``: stop once no
    group of that many rows holds two alike (rows are then beginnings: for counts only)."""
    spec = article_inputs()["sampling"]
    seed = subject.seed if seed is None else seed
    runs = spec["samples"] if runs is None else runs
    return RESULTS.get(
        subject,
        ("sampling", regime, seed, runs, until_groups_differ),
        lambda: calls.generate(
            subject.tokenizer,
            subject.model,
            spec["prompt"],
            max_new_tokens=spec["max_new_tokens"],
            runs=runs,
            do_sample=True,
            seed=seed,
            until_groups_differ=until_groups_differ,
            **spec["regimes"][regime],
        ),
    )


FIRST_TOKEN_DRAWS = 400  # generate()'s sampled first tokens at (top_p 0.9, T 1.4): D5's fit, the snapshot


def first_token_samples(subject: Subject) -> generation.Generation:
    """D5: 400 first tokens sampled by generate() at (top_p 0.9, T 1.4), no top-k, for the
    session seed, in one call: the goodness-of-fit test and the snapshot read the same draws."""
    prompt = article_inputs()["next_token_prompt"]
    return RESULTS.get(
        subject,
        ("first_tokens", prompt, subject.seed),
        lambda: calls.sample_first_tokens(
            subject.tokenizer,
            subject.model,
            prompt,
            runs=FIRST_TOKEN_DRAWS,
            top_p=0.9,
            temperature=1.4,
            top_k=0,
            seed=subject.seed,
        ),
    )


def top_k_samples(subject: Subject) -> generation.Generation:
    """D9: first tokens drawn with top-k alone (top_p 1, T 1) for the session seed, one
    batched call; keyed by the prompt, so another top-k prompt is drawn anew."""
    spec = article_inputs()["top_k_sampling"]
    return RESULTS.get(
        subject,
        ("top_k", spec["prompt"], spec["k"], spec["samples"], subject.seed),
        lambda: calls.generate(
            subject.tokenizer,
            subject.model,
            spec["prompt"],
            max_new_tokens=1,
            runs=spec["samples"],
            do_sample=True,
            top_k=spec["k"],
            top_p=1.0,
            temperature=1.0,
            seed=subject.seed,
        ),
    )


def greedy_reference(subject: Subject) -> generation.Generation:
    """Greedy on the sampling prompt as a plain call encodes it (D6 compares samples with
    its first text). Where that is the D3/D4 greedy input (same prompt, ids and length:
    the article's case), it is their run 1; else a call of its own."""
    spec, greedy_spec = article_inputs()["sampling"], article_inputs()["greedy"]
    if spec["prompt"] == greedy_spec["prompt"] and spec["max_new_tokens"] == greedy_spec["max_new_tokens"]:
        plain = tuple(calls.prompt_ids(subject.tokenizer, spec["prompt"]))
        for bos in (False, True):
            if plain == _greedy_ids(subject.tokenizer, bos):
                return greedy_first_run(subject, bos)
    return RESULTS.get(
        subject,
        "sampling-greedy",
        lambda: calls.generate(subject.tokenizer, subject.model, spec["prompt"], max_new_tokens=spec["max_new_tokens"]),
    )


def beam_against_greedy(subject: Subject) -> dc.BeamAgainstGreedy:
    """D9: the inputs' beam search against greedy of the same length, both scored."""
    spec = article_inputs()["beam_search"]
    return RESULTS.get(
        subject,
        "beam",
        lambda: dc.beam_against_greedy(
            subject.tokenizer,
            subject.model,
            spec["prompt"],
            num_beams=spec["num_beams"],
            max_new_tokens=spec["max_new_tokens"],
        ),
    )


def word_vectors(subject: Subject) -> em.WordVectors:
    groups = article_inputs()["word_groups"]
    return RESULTS.get(subject, "word_vectors", lambda: em.word_vectors(subject.tokenizer, subject.model, groups))


def cosine(subject: Subject) -> np.ndarray:
    return RESULTS.get(subject, "cosine", lambda: em.cosine_matrix(word_vectors(subject).vectors))


def projection(subject: Subject) -> em.Projection:
    return RESULTS.get(subject, "pca", lambda: em.pca_2d(word_vectors(subject).vectors))


def knowledge_answers(subject: Subject) -> dict[str, generation.Generation]:
    """Every knowledge question of the card, answered in one batched generate call per
    decoding setting (a case may override the card's prompt format and decoding)."""
    tasks = subject.card.expect.tasks
    assert tasks is not None and tasks.knowledge is not None
    return RESULTS.get(subject, "knowledge", lambda: answer_questions(subject, tasks))


def answer_questions(subject: Subject, tasks: TasksExpect) -> dict[str, generation.Generation]:
    """``tasks``' knowledge cases answered as the suite answers them: one batched call per
    decoding setting. (Batch membership changes left padding, and with it the answers, so
    the draft of a card asks here too, with the cases it is about to write.)"""
    assert tasks.knowledge is not None
    batches: dict[Decoding, list[KnowledgeCase]] = {}
    for case in tasks.knowledge:
        batches.setdefault(case.decoding or tasks.decoding, []).append(case)
    answers: dict[str, generation.Generation] = {}
    for decoding, cases in batches.items():
        prompts = [
            case.prompt
            or format_prompt(
                subject.tokenizer,
                case.prompt_format or tasks.prompt_format,
                knowledge_question(case.question or case.id),
            )
            for case in cases
        ]
        generations = calls.generate_many(
            subject.tokenizer,
            subject.model,
            prompts,
            max_new_tokens=tasks.max_new_tokens,
            seed=subject.seed if decoding.do_sample else None,
            **decoding.as_kwargs(),
        )
        answers.update({case.id: g for case, g in zip(cases, generations)})
    return answers


def openings(
    subject: Subject, sampling: bool, *, seed: int | None = None, runs: int | None = None, until_groups_differ: int = 0
) -> list[generation.Generation]:
    """The story openings, each run several times (K2). Sampled: one batched call for the
    session seed (``seed``, ``runs`` and ``until_groups_differ`` as in ``sampled``). Greedy: one
    call per run (each a batch over the openings), so a run-to-run difference is not hidden
    by identical rows of one batch."""
    spec = article_inputs()["creative"]
    tokenizer, model = subject.tokenizer, subject.model
    if not sampling:
        return RESULTS.get(
            subject,
            ("creative", False),
            lambda: calls.greedy_runs_many(
                tokenizer, model, spec["openings"], runs=spec["runs"], max_new_tokens=spec["max_new_tokens"]
            ),
        )
    seed = subject.seed if seed is None else seed
    runs = spec["runs"] if runs is None else runs
    return RESULTS.get(
        subject,
        ("creative", True, seed, runs, until_groups_differ),
        lambda: calls.generate_many(
            tokenizer,
            model,
            spec["openings"],
            max_new_tokens=spec["max_new_tokens"],
            runs=runs,
            seed=seed,
            do_sample=True,
            until_groups_differ=until_groups_differ,
            **spec["sampling"],
        ),
    )
