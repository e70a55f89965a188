"""SPEC K1-K2: knowledge questions and story openings, in each card's prompt format."""

from __future__ import annotations

import pytest

from lm_probes import generation
from lm_probes.expect import check_at_least, check_equal, check_that
from lm_probes.report.html import Cell
from lm_probes.subjects.results import knowledge_answers, openings


@pytest.mark.observation("K1", expects="tasks.knowledge")
def test_knowledge_answer(lm_probes_model_subject, case, lm_probes_attach):
    answer = knowledge_answers(lm_probes_model_subject)[case["id"]]
    lm_probes_attach.table(
        ["question", "prompt", "settings", "answer"],
        [[case["id"], Cell(repr(answer.prompt), code=True), answer.settings, Cell(repr(answer.texts[0]), code=True)]],
        summary="Knowledge answers (K1)",
    )
    check_that(
        lm_probes_model_subject.card,
        case["answer"] in answer.texts[0],
        field=f"tasks.knowledge[{case['id']}].answer",
        expected=f"an answer containing {case['answer']!r}",
        obtained=answer.texts[0],
        note=f"prompt: {answer.prompt!r}",
    )


def _attach_openings(lm_probes_attach, generations: list[generation.Generation], summary: str) -> None:
    for g in generations:
        lm_probes_attach.texts(g.texts, caption=repr(g.prompt), summary=summary)


@pytest.mark.observation("K2", expects="tasks.creative.greedy_repeats")
def test_story_openings_repeat_under_greedy(lm_probes_model_subject, lm_probes_attach):
    generations = openings(lm_probes_model_subject, sampling=False)
    _attach_openings(lm_probes_attach, generations, summary="Story openings, greedy (K2)")
    check_equal(
        lm_probes_model_subject.card,
        "tasks.creative.greedy_repeats",
        all(g.all_identical for g in generations),
        note=f"runs: {[list(g.texts) for g in generations]}",
    )


@pytest.mark.observation("K2", expects="tasks.creative.min_distinct_samples")
def test_story_openings_differ_under_sampling(lm_probes_model_subject, lm_probes_attach):
    generations = openings(lm_probes_model_subject, sampling=True)
    _attach_openings(lm_probes_attach, generations, summary="Story openings, top_p 0.9, T 1.4 (K2)")
    distinct = {g.prompt: g.distinct for g in generations}
    check_at_least(
        lm_probes_model_subject.card,
        "tasks.creative.min_distinct_samples",
        min(distinct.values()),
        note=f"distinct continuations per opening: {distinct}",
    )
