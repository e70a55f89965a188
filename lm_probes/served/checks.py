"""The served checks beyond the snapshot sections (parity.py): the sampler fitted to the
distribution transformers' warpers define, the chat template's ids and reply, what the
server does with a request that leaves fields out (U2), and the knowledge verdicts. Each
returns ``Difference`` entries named ``served.<check>.<case>``, so a failure says which
check caught it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lm_probes import sampling as sp
from lm_probes.served.client import Completion, Endpoint
from lm_probes.snapshots import cross_class
from lm_probes.snapshots.differences import Difference, first_diff
from lm_probes.snapshots.entries import GREEDY_TOP_K
from lm_probes.tokenizer import leading

# The first-token draws the server makes, per setting, in one seeded request (n draws).
# top-p 0.8: on SmolLM2's D1 prompt a nucleus of 4 tokens whose last holds 2.6%, so a
# sampler that keeps one token fewer misses ~26 expected draws; top-k 5 at T 1.4; and the
# article's hot setting with transformers' default top_k 50 (vLLM #2415: its default is -1).
SAMPLING_SETTINGS: dict[str, dict[str, float | int]] = {
    "top-p": {"temperature": 1.0, "top_k": -1, "top_p": 0.8},
    "top-k": {"temperature": 1.4, "top_k": 5, "top_p": 1.0},
    "hot": {"temperature": 1.4, "top_k": 50, "top_p": 0.9},
}
SAMPLED_DRAWS = 1000
# each fit rejects a correct sampler with probability SAMPLING_ALPHA (its false-positive
# rate); the request is seeded, so a given seed always gives the same verdict
SAMPLING_ALPHA = 1e-3
BARE_REQUESTS = 8  # completions of a request with no sampling field (n=8, 16 new tokens)
BARE_TOKENS = 16
CHAT_TOKENS = 24


@dataclass(frozen=True)
class SampledFit:
    """One setting's served draws against transformers' distribution."""

    setting: str
    settings: dict[str, float | int]
    kept: int  # tokens transformers' warpers keep
    outside: int  # draws of a token they do not keep
    fit: sp.GoodnessOfFit


def sampled_fits(endpoint: Endpoint, logits: Any, prompt_ids: list[int], seed: int) -> list[SampledFit]:
    """Per setting, SAMPLED_DRAWS first tokens from the server (one request, seeded) fitted
    by chi-square to the distribution transformers' warpers give the in-process logits.
    ``seed`` is the session's (--lm-probes-seed); the request's is ``seed * SAMPLED_DRAWS``."""
    fits = []
    for name, settings in SAMPLING_SETTINGS.items():
        expected = sp.transformers_warped(
            logits, settings["temperature"], max(int(settings["top_k"]), 0), float(settings["top_p"])
        )
        drawn = endpoint.complete(
            prompt_ids,
            max_tokens=1,
            temperature=float(settings["temperature"]),
            top_k=int(settings["top_k"]),
            top_p=float(settings["top_p"]),
            n=SAMPLED_DRAWS,
            # vLLM seeds a request's n draws seed, seed + 1, ..., seed + n - 1 (its parallel
            # sampling): session seeds 0 and 1 would share 999 of 1000 draws, so each session
            # seed gets a block of its own
            seed=seed * SAMPLED_DRAWS,
            logprobs=0,
        )
        ids = [c.ids[0] for c in drawn]
        inside = set(expected.ids)
        fits.append(
            SampledFit(
                name, settings, len(expected.ids), sum(i not in inside for i in ids), sp.goodness_of_fit(ids, expected)
            )
        )
    return fits


def sampling_differences(fits: list[SampledFit]) -> list[Difference]:
    out = []
    for f in fits:
        if f.outside:
            out.append(
                Difference(
                    "error",
                    f"served.sampling.{f.setting}",
                    f"{f.outside} of {f.fit.draws} draws at {f.settings} are tokens transformers' warpers do not "
                    f"keep ({f.kept} kept): the server filters differently",
                )
            )
        elif f.fit.bins < 2 or f.fit.rejects(SAMPLING_ALPHA):
            out.append(
                Difference(
                    "error",
                    f"served.sampling.{f.setting}",
                    f"the draws at {f.settings} do not fit transformers' distribution ({f.kept} tokens) at alpha "
                    f"{SAMPLING_ALPHA}: chi-square {f.fit.statistic:.1f}, p {f.fit.p_value:.2e}, {f.fit.bins} bins",
                )
            )
    return out


def chat_differences(
    endpoint: Endpoint, messages: list[dict[str, str]], template_ids: list[int], bos_id: int | None, reply: dict
) -> tuple[list[Difference], dict[str, Any]]:
    """The server's chat ids against ``apply_chat_template``'s, exactly (vLLM #16028: a double
    BOS), and its greedy chat reply against transformers' greedy on those ids by the
    cross-class rule (``reply``: ids, text and per-step top-k ids of the in-process reply)."""
    served_ids = endpoint.tokenize_chat(messages)
    out = []
    if served_ids != list(template_ids):
        at = first_diff(served_ids, list(template_ids))
        bos = [leading(ids, bos_id) for ids in (template_ids, served_ids)]
        out.append(
            Difference(
                "error",
                "served.chat.ids",
                f"the server's chat prompt differs from apply_chat_template's from id {at}: "
                f"{list(template_ids[at : at + 4])} -> {served_ids[at : at + 4]} ({len(template_ids)} -> "
                f"{len(served_ids)} ids; leading BOS {bos[0]} -> {bos[1]})",
            )
        )
        return out, {"ids": served_ids}
    served = endpoint.chat(messages, max_tokens=len(reply["ids"]), top_logprobs=GREEDY_TOP_K)
    served_reply = {"ids": list(served.ids), "text": served.text}
    out += greedy_divergence("served.chat.reply", reply, served_reply, served)
    return out, {"ids": served_ids, "reply": served_reply}


def greedy_divergence(where: str, in_process: dict, served: dict, completion: Completion | None) -> list[Difference]:
    """Greedy ids equal, or diverging where each side's token is in the other's top-k."""
    if in_process["ids"] == served["ids"]:
        return []
    step = first_diff(in_process["ids"], served["ids"])
    if step >= min(len(in_process["ids"]), len(served["ids"])):
        return [Difference("error", where, f"length {len(in_process['ids'])} -> {len(served['ids'])} new tokens")]
    served_top = completion.top_ids(GREEDY_TOP_K) if completion and completion.top else None
    if served_top is None:
        detail = f"diverged at new token {step}: {in_process['ids'][step]} -> {served['ids'][step]} (no top-k sent)"
        return [Difference("error", where, detail)]
    severity, detail = cross_class.judge_greedy_divergence(in_process, {**served, "top_ids": served_top}, step)
    return [
        Difference(
            severity, where, f"{detail}\n      transformers: {in_process['text']!r}\n      served: {served['text']!r}"
        )
    ]


def defaults_differences(
    endpoint: Endpoint, greedy: dict[str, Any], bare_samples: bool
) -> tuple[list[Difference], dict[str, Any]]:
    """What a request gets from the server where it leaves fields out (U2; vLLM PR #12622
    merges the model's generation_config.json into every request unless started with
    ``--generation-config vllm``):
    - ``served.defaults.greedy``: temperature 0 and nothing else gives the ids of a greedy
      request with every field written out (so the server adds no penalty of its own);
    - ``served.defaults.bare``: a request with no sampling field samples (the OpenAI
      default, temperature 1) when the card says ``bare_request: sampled``, or gives the
      greedy ids when it says ``greedy``. (8 sampled answers of 16 tokens all alike: on
      SmolLM2's prompt of the order of (2.4e-7)^7, its greedy 16-token path having
      probability 2.4e-7 at temperature 1, measured.)"""
    out = []
    short = endpoint.complete_with(greedy["prompt_ids"], {"max_tokens": len(greedy["ids"]), "temperature": 0.0})[0]
    if list(short.ids) != list(greedy["ids"]):
        step = first_diff(list(greedy["ids"]), list(short.ids))
        out.append(
            Difference(
                "error",
                "served.defaults.greedy",
                f"a greedy request that leaves the penalties out differs from one that sets them neutral, from new "
                f"token {step}: the server adds sampling defaults of its own (vLLM: --generation-config auto "
                f"merges generation_config.json)\n      every field: {greedy['text']!r}\n      temperature "
                f"only: {short.text!r}",
            )
        )
    bare = endpoint.complete_with(greedy["prompt_ids"], {"max_tokens": BARE_TOKENS, "n": BARE_REQUESTS})
    texts = [c.text for c in bare]
    distinct = len({c.ids for c in bare})
    greedy_prefix = tuple(greedy["ids"][:BARE_TOKENS])
    if bare_samples and distinct < 2:
        out.append(
            Difference(
                "error",
                "served.defaults.bare",
                f"{BARE_REQUESTS} answers to a request without sampling fields are all {texts[0]!r}: it does not "
                "sample, though the card says bare_request: sampled",
            )
        )
    elif not bare_samples and any(c.ids[: len(greedy_prefix)] != greedy_prefix for c in bare):
        out.append(
            Difference(
                "error",
                "served.defaults.bare",
                f"a request without sampling fields is not greedy, though the card says bare_request: greedy: "
                f"{distinct} distinct answers, e.g. {texts[0]!r}",
            )
        )
    return out, {"temperature_only": short.text, "bare": texts}


def knowledge_differences(cases: list[Any], in_process: dict[str, Any], served: dict[str, str]) -> list[Difference]:
    """K1's verdict (does the answer contain the card's) the same served as in-process, per
    case: a served model that answers less (lm-evaluation-harness #1854: no BOS) is caught."""
    out = []
    for case in cases:
        here = case.answer in in_process[case.id].texts[0]
        there = case.answer in served[case.id]
        if here != there:
            out.append(
                Difference(
                    "error",
                    f"served.knowledge.{case.id}",
                    f"transformers' answer {'contains' if here else 'lacks'} {case.answer!r}, the served one "
                    f"{'contains' if there else 'lacks'} it\n      transformers: {in_process[case.id].texts[0]!r}"
                    f"\n      served: {served[case.id]!r}",
                )
            )
    return out


def served_answers(
    endpoint: Endpoint, cases: list[Any], in_process: dict[str, Any], tasks: Any, seed: int, default_top_k: int
) -> dict[str, str]:
    """Each knowledge case asked of the server with transformers' prompt ids and decoding;
    a sampled case's top_k is generate()'s (``default_top_k``: the model's generation
    config, transformers' default 50) where the card sets none, vLLM's -1 being another
    distribution (vLLM #2415)."""
    answers = {}
    for case in cases:
        decoding = case.decoding or tasks.decoding
        asked = in_process[case.id]
        settings = decoding.as_kwargs()
        (c,) = endpoint.complete(
            list(asked.prompt_ids),
            max_tokens=tasks.max_new_tokens,
            temperature=float(settings.get("temperature", 1.0)) if decoding.do_sample else 0.0,
            top_p=float(settings.get("top_p", 1.0)) if decoding.do_sample else 1.0,
            top_k=int(settings.get("top_k") or default_top_k or -1) if decoding.do_sample else -1,
            seed=seed if decoding.do_sample else None,
            logprobs=0,
        )
        answers[case.id] = c.text
    return answers
