"""What each snapshot section records of a subject: plain JSON data, read from the session's
probe results (lm_probes/subjects/results.py: each computed once per session, shared with the
tests and the report).

Each function returns its section's data, or None where the section does not apply (a card
that compares no attention back-ends)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lm_probes import tokenizer as tk
from lm_probes.inputs import article_inputs
from lm_probes.maths import softmax64
from lm_probes.snapshots.entries import GREEDY_TOP_K, TOP_N, answer_end_entry
from lm_probes.subjects import results

if TYPE_CHECKING:
    from lm_probes.hidden_states import Fingerprint
    from lm_probes.subjects.subject import Subject


def rounded(x: float, digits: int = 7) -> float:
    return float(round(float(x), digits))


def observe_tokenizer(subject: Subject) -> dict[str, Any]:
    inputs = article_inputs()
    tokenizer = subject.tokenizer
    special = [tk.special_text(tokenizer, k, t).text for k, t in inputs["special_texts"].items()]  # U6
    texts = list(
        dict.fromkeys(inputs["snapshot_texts"] + [c["text"] for c in subject.card.cases("tokenizer.encode")] + special)
    )
    chat = results.chat_rendering(subject)
    return {
        "vocab_size": tokenizer.vocab_size,
        "bos_token_id": tokenizer.bos_token_id,
        "ids": {
            t: {"special": tokenizer.encode(t), "plain": tokenizer.encode(t, add_special_tokens=False)} for t in texts
        },
        "chat": (
            {"has_template": True, "text": chat.text, "ids": list(chat.ids)}
            if chat.has_template
            else {"has_template": False}
        ),
    }


def observe_next_token(subject: Subject) -> dict[str, Any]:
    nt = results.next_token(subject)
    probs = softmax64(nt.logits)
    top = np.argsort(-probs, kind="stable")[:TOP_N]
    return {
        "prompt": nt.prompt,
        "prompt_ids": list(nt.input_ids),
        "top_ids": [int(i) for i in top],
        "top_probs": [rounded(probs[i]) for i in top],
    }


def observe_temperature(subject: Subject) -> dict[str, Any]:
    sweep = results.temperature_sweep(subject)
    return {"entropy": {str(t): rounded(e, 6) for t, e in zip(sweep.temperatures, sweep.entropies)}}


def observe_greedy(subject: Subject) -> dict[str, Any]:
    observed: dict[str, Any] = {}
    for label, bos in (("bos", True), ("no-bos", False)):
        g = results.greedy_first_run(subject, bos)
        observed[label] = {
            "prompt_ids": list(g.prompt_ids),
            "ids": list(g.new_ids[0]),
            "text": g.texts[0],
            "margins": [rounded(m, 4) for m in g.step_margins()],
            # the second-best token per step: lets two recorded sets judge a flip as a
            # near-tie without a model (lm-probes diff)
            "runners_up": list(g.step_runners_up()),
            # the top GREEDY_TOP_K ids per step: across machine classes, a divergence is
            # allowed where each side's token is in the other's (vLLM's check_logprobs_close)
            "top_ids": [list(ids) for ids in g.step_top_ids(GREEDY_TOP_K)],
        }
    return observed


def observe_answer_ends(subject: Subject) -> dict[str, Any]:
    """U8: per request, the greedy answer up to where it ended and how it ended."""
    return {request: answer_end_entry(end) for request, end in results.answer_ends(subject).items()}


def observe_embedding(subject: Subject) -> dict[str, Any]:
    vectors = results.word_vectors(subject)
    weight = subject.model.get_input_embeddings().weight
    return {
        "words": list(vectors.words),
        "sub_ids": {w: list(ids) for w, ids in zip(vectors.words, vectors.sub_ids)},
        "row_norms": {
            w: [rounded(float(weight[i].detach().float().norm()), 6) for i in ids]
            for w, ids in zip(vectors.words, vectors.sub_ids)
        },
        "cosine": [[rounded(x, 6) for x in row] for row in results.cosine(subject)],
    }


def observe_sampled(subject: Subject) -> dict[str, Any]:
    observed: dict[str, Any] = {"seed": subject.seed}
    for regime in article_inputs()["sampling"]["regimes"]:
        s = results.sampled(subject, regime)
        observed[regime] = {"ids": [list(r) for r in s.new_ids], "texts": list(s.texts)}
    return observed


def observe_first_tokens(subject: Subject) -> dict[str, Any]:
    # generate()'s first-token draws, sorted (one line in the file): compared exactly under
    # the same provenance, by a homogeneity test across versions (token_rules.FIRST_TOKEN_ALPHA)
    draws = results.first_token_samples(subject)
    return {
        "seed": subject.seed,
        "settings": {"top_p": 0.9, "temperature": 1.4},
        "ids": sorted(ids[0] for ids in draws.new_ids),
    }


def observe_generation(subject: Subject) -> dict[str, Any]:
    return {
        call: {"effective": found.effective, "processors": list(found.processors)}
        for call in article_inputs()["generate_calls"]
        for found in [results.generation_settings(subject, call)]
    }


def fingerprint_entries(fingerprints: list[Fingerprint]) -> list[dict[str, Any]]:
    """The hidden_states section: per prompt, the norms and projections per layer."""
    return [
        {
            "prompt": f.prompt,
            "prompt_ids": list(f.prompt_ids),
            "norms": [rounded(n, 6) for n in f.norms],
            "projections": [[rounded(x, 6) for x in row] for row in f.projections],
        }
        for f in fingerprints
    ]


def observe_hidden_states(subject: Subject) -> list[dict[str, Any]]:
    return fingerprint_entries(results.fingerprints(subject))


def observe_attention(subject: Subject) -> dict[str, Any] | None:
    if not subject.card.has_expectation("attention.backends"):
        return None  # the card compares no back-ends
    backends = tuple(subject.card.expected("attention.backends"))
    agreement = results.attention_backends(subject, backends)
    return {
        "backends": list(backends),
        "max_prob_diff": float(f"{agreement.max_prob_diff:.3g}"),
        "greedy_agrees": agreement.greedy_agrees,
    }
