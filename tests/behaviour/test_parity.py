"""The same card served and in-process (issue 26), each check named ``served.<check>``:
S1 tokenizer ids exactly, the next-token distribution within the card's measured
``served.parity`` bounds, greedy by the cross-class top-k rule; S2 greedy the same when asked
again and at once; S3 the sampler fitted to transformers' warpers; S4 the chat prompt and
reply; S5 what a request that leaves fields out gets (U2); S6 the knowledge verdicts.
Opt-in: ``pytest -m served --lm-probes-serve`` (lm-probes starts the card's engine) or ``-m served
--lm-probes-endpoint URL`` (a server you run)."""

from __future__ import annotations

import pytest
import torch

from lm_probes import generate_calls
from lm_probes.expect import check_that
from lm_probes.inputs import article_inputs
from lm_probes.paths import REPO_ROOT
from lm_probes.report import plots
from lm_probes.report.html import Cell
from lm_probes.served import checks
from lm_probes.served.parity import (
    greedy_alignment,
    parity_differences,
    parity_view,
    repeat_differences,
    served_observations,
    served_provenance,
    write_parity_snapshots,
)
from lm_probes.snapshots import sections
from lm_probes.snapshots.entries import GREEDY_TOP_K
from lm_probes.snapshots.record import provenance
from lm_probes.subjects import results

PARITY_SECTIONS = ("tokenizer", "next_token", "greedy")
REPEATS, CONCURRENT = 3, 4  # greedy asked again one after another, then this many at once
SUMMARY = "Served parity"
# both sides of S1 as snapshot files, for `lm-probes diff <root>/<card>/cpu.json <root>/<card>/served.json`
PARITY_SNAPSHOTS = REPO_ROOT / "reports" / "served"


def _in_process(lm_probes_subject) -> dict:
    return {name: sections.find(name).observe(lm_probes_subject) for name in PARITY_SECTIONS}


def _check(card, lm_probes_attach, differences, what: str, caption: str) -> None:
    """The differences as the report's table, then one failure naming every error's check."""
    __tracebackhide__ = True
    rows = [[Cell(d.where, code=True), d.severity, d.message] for d in differences] or [["-", "-", "no difference"]]
    lm_probes_attach.table(["check", "severity", "served against transformers"], rows, caption=caption, summary=SUMMARY)
    errors = [d for d in differences if d.severity == "error"]
    check_that(card, not errors, expected=what, obtained="; ".join(str(d) for d in errors))


@pytest.mark.served
@pytest.mark.observation("S1")
def test_served_model_matches_transformers(lm_probes_model_subject, lm_probes_served_endpoint, lm_probes_attach):
    card = lm_probes_model_subject.card
    in_process = _in_process(lm_probes_model_subject)
    served = served_observations(lm_probes_served_endpoint, in_process)
    bounds = card.served.parity.model_dump()
    decode = lm_probes_model_subject.tokenizer.decode
    here = provenance(lm_probes_model_subject)
    write_parity_snapshots(
        PARITY_SNAPSHOTS,
        card.name,
        (here, parity_view(in_process, served)),
        (served_provenance(lm_probes_served_endpoint, card), served),
    )

    def top10(side: dict) -> list:
        return [(i, decode([i]), p) for i, p in zip(side["top_ids"][:10], side["top_probs"][:10])]

    lm_probes_attach.png(
        plots.side_by_side_bars(
            (
                ("transformers", top10(in_process["next_token"])),
                (f"served ({lm_probes_served_endpoint.url})", top10(served["next_token"])),
            ),
            f"{card.name}: next token after {in_process['next_token']['prompt']!r}",
        ),
        name="served parity: top-10 next tokens",
        summary=SUMMARY,
    )
    lm_probes_attach.table(
        ["greedy run", "shared text", "transformers from there", "served from there"],
        [
            [label, *(Cell(repr(t), code=True) for t in texts)]
            for label, *texts in greedy_alignment(in_process["greedy"], served["greedy"], decode)
        ],
        caption=f"{card.name}: greedy texts aligned where they part",
        summary=SUMMARY,
    )
    _check(
        card,
        lm_probes_attach,
        parity_differences(in_process, served, bounds, here),
        f"the served model as transformers' (bounds {bounds})",
        f"{card.name} at {lm_probes_served_endpoint.url}: tokenizer, next token, greedy; cross-class rules, "
        f"bounds {bounds}",
    )


@pytest.mark.served
@pytest.mark.observation("S2")
def test_served_greedy_is_the_same_asked_again_and_at_once(
    lm_probes_model_subject, lm_probes_served_endpoint, lm_probes_attach
):
    greedy = _in_process(lm_probes_model_subject)["greedy"]
    _check(
        lm_probes_model_subject.card,
        lm_probes_attach,
        repeat_differences(lm_probes_served_endpoint, greedy, REPEATS, CONCURRENT),
        "greedy ids that do not depend on when or beside what they are asked",
        f"{lm_probes_model_subject.name}: greedy {REPEATS} times in a row, then {CONCURRENT} requests at once",
    )


@pytest.mark.served
@pytest.mark.observation("S3")
def test_served_sampler_draws_from_transformers_distribution(
    lm_probes_model_subject, lm_probes_served_endpoint, lm_probes_attach
):
    """Per setting, checks.SAMPLED_DRAWS seeded first tokens from the server, chi-square
    against the distribution transformers' warpers give the in-process logits. False-positive
    rate per setting: checks.SAMPLING_ALPHA."""
    nt = results.next_token(lm_probes_model_subject)
    prompt_ids = _in_process(lm_probes_model_subject)["next_token"]["prompt_ids"]
    fits = checks.sampled_fits(
        lm_probes_served_endpoint, torch.as_tensor(nt.logits), prompt_ids, lm_probes_model_subject.seed
    )
    lm_probes_attach.table(
        ["setting", "fields", "tokens kept", "draws outside", "chi-square", "p", "bins"],
        [
            [
                f.setting,
                str(f.settings),
                f.kept,
                f.outside,
                f"{f.fit.statistic:.1f}",
                f"{f.fit.p_value:.3g}",
                f.fit.bins,
            ]
            for f in fits
        ],
        caption=f"{lm_probes_model_subject.name}: {checks.SAMPLED_DRAWS} served first tokens per setting, "
        f"seed {lm_probes_model_subject.seed}, alpha {checks.SAMPLING_ALPHA}",
        summary=SUMMARY,
    )
    _check(
        lm_probes_model_subject.card,
        lm_probes_attach,
        checks.sampling_differences(fits),
        f"draws that fit transformers' warpers at alpha {checks.SAMPLING_ALPHA}",
        f"{lm_probes_model_subject.name}: the served sampler",
    )


@pytest.mark.served
@pytest.mark.observation("S4")
def test_served_chat_is_apply_chat_template(lm_probes_model_subject, lm_probes_served_endpoint, lm_probes_attach):
    rendering = results.chat_rendering(lm_probes_model_subject)
    if not rendering.has_template:
        pytest.skip(f"{lm_probes_model_subject.name}'s tokenizer has no chat template")
    reply = generate_calls.generate(
        lm_probes_model_subject.tokenizer,
        lm_probes_model_subject.model,
        rendering.text,
        max_new_tokens=checks.CHAT_TOKENS,
        add_special_tokens=False,
        keep_logits=True,
        do_sample=False,
    )
    in_process = {
        "ids": list(reply.new_ids[0]),
        "text": reply.texts[0],
        "top_ids": [list(t) for t in reply.step_top_ids(GREEDY_TOP_K)],
    }
    differences, served = checks.chat_differences(
        lm_probes_served_endpoint, article_inputs()["chat"], list(rendering.ids), rendering.bos_id, in_process
    )
    _check(
        lm_probes_model_subject.card,
        lm_probes_attach,
        differences,
        "the chat prompt's ids exactly apply_chat_template's, the greedy reply by the top-k rule",
        f"{lm_probes_model_subject.name}: chat prompt ({len(rendering.ids)} ids) and reply: transformers "
        f"{in_process['text']!r}, "
        f"served {served.get('reply', {}).get('text')!r}",
    )


@pytest.mark.served
@pytest.mark.observation("S5", "U2")
def test_served_defaults_are_the_cards(lm_probes_model_subject, lm_probes_served_endpoint, lm_probes_attach):
    card = lm_probes_model_subject.card
    greedy = _in_process(lm_probes_model_subject)["greedy"]["no-bos"]
    differences, seen = checks.defaults_differences(
        lm_probes_served_endpoint, greedy, card.served.bare_request == "sampled"
    )
    lm_probes_attach.texts(
        seen["bare"], caption=f"{checks.BARE_REQUESTS} answers to a request without sampling fields", summary=SUMMARY
    )
    _check(
        card,
        lm_probes_attach,
        differences,
        f"a request that leaves fields out gets no default of the model's; a bare one is {card.served.bare_request}",
        f"{card.name}: requests that leave fields out",
    )


@pytest.mark.served
@pytest.mark.observation("S6", "K1")
def test_served_knowledge_verdicts_are_transformers(
    lm_probes_model_subject, lm_probes_served_endpoint, lm_probes_attach
):
    tasks = lm_probes_model_subject.card.expect.tasks
    if tasks is None or tasks.knowledge is None:
        pytest.skip(f"card '{lm_probes_model_subject.name}' has no tasks.knowledge")
    in_process = results.knowledge_answers(lm_probes_model_subject)
    default_top_k = int(lm_probes_model_subject.model.generation_config.top_k or 0)
    served = checks.served_answers(
        lm_probes_served_endpoint, tasks.knowledge, in_process, tasks, lm_probes_model_subject.seed, default_top_k
    )
    lm_probes_attach.table(
        ["case", "expected", "transformers", "served"],
        [
            [c.id, c.answer, Cell(repr(in_process[c.id].texts[0]), code=True), Cell(repr(served[c.id]), code=True)]
            for c in tasks.knowledge
        ],
        caption=f"{lm_probes_model_subject.name}: knowledge answers (K1) in-process and served",
        summary=SUMMARY,
    )
    _check(
        lm_probes_model_subject.card,
        lm_probes_attach,
        checks.knowledge_differences(tasks.knowledge, in_process, served),
        "every knowledge case judged the same served as in-process",
        f"{lm_probes_model_subject.name}: K1 verdicts",
    )


@pytest.mark.served
@pytest.mark.observation("S7", "U8")
def test_served_answers_end_where_transformers_stop(
    lm_probes_model_subject, lm_probes_served_endpoint, lm_probes_attach
):
    """U8 on the server: each answer_ends request's prompt ids asked greedily with max_tokens
    the budget. The served answer must end where transformers' did (same stop position, by the
    cross-class rule where the texts part at a near-tie), with the finish_reason its tokens call
    for: "stop" at a stop id, "length" at the budget."""
    in_process = {"answer_ends": sections.find("answer_ends").observe(lm_probes_model_subject)}
    served = {
        "answer_ends": sections.find("answer_ends").observe_served(lm_probes_served_endpoint, in_process["answer_ends"])
    }
    lm_probes_attach.table(
        ["request", "transformers", "served", "finish_reason"],
        [
            [request, f"{ours['end']} after {ours['new_tokens']}", f"{theirs['end']} after {theirs['new_tokens']}",
             theirs["finish_reason"]]
            for (request, ours), theirs in zip(in_process["answer_ends"].items(), served["answer_ends"].values())
        ],
        caption=f"{lm_probes_model_subject.name}: where greedy answers end, in-process and served (stop ids "
        f"{next(iter(in_process['answer_ends'].values()))['stop_ids']})",
        summary=SUMMARY,
    )  # fmt: skip
    here = provenance(lm_probes_model_subject)
    _check(
        lm_probes_model_subject.card,
        lm_probes_attach,
        parity_differences(in_process, served, lm_probes_model_subject.card.served.parity.model_dump(), here),
        "each served answer ends where transformers' does, with the finish_reason its tokens call for; a server "
        "that goes on past a stop id ignores the model's stop ids (generation_config.json's eos_token_id: vLLM "
        "before PR #4182, --generation-config pointed elsewhere, or ignore_eos)",
        f"{lm_probes_model_subject.name}: where answers end",
    )
