"""How a server shows a snapshot section: each function is the ``observe_served`` of its
section's entry (lm_probes/snapshots/sections.py), asked with the in-process recording's own
texts and prompt ids so that the model is compared on the same input. A section without one
(temperature, embedding, ...) is not something an OpenAI-compatible server shows."""

from __future__ import annotations

import math
from typing import Any

from lm_probes import stopping
from lm_probes.served.client import Endpoint
from lm_probes.snapshots.entries import GREEDY_TOP_K, TOP_N, answer_end_entry


def served_tokenizer(endpoint: Endpoint, recorded: dict[str, Any]) -> dict[str, Any]:
    """The recorded texts' ids from the server's /tokenize, with and without special tokens
    (vocabulary size and chat template are the model folder's, not the server's)."""
    texts = list(recorded["ids"])
    return {
        "ids": {
            t: {"special": endpoint.tokenize(t, add_special_tokens=True), "plain": endpoint.tokenize(t, False)}
            for t in texts
        }
    }


def served_next_token(endpoint: Endpoint, recorded: dict[str, Any]) -> dict[str, Any]:
    """The top-20 next tokens after the recorded prompt ids: one step, greedy, raw logprobs."""
    (step,) = endpoint.complete(recorded["prompt_ids"], max_tokens=1, temperature=0.0, logprobs=TOP_N)
    top = sorted(step.top[0].items(), key=lambda kv: -kv[1])[:TOP_N]
    return {
        "prompt": recorded["prompt"],
        "prompt_ids": list(recorded["prompt_ids"]),
        "top_ids": [i for i, _ in top],
        "top_probs": [math.exp(lp) for _, lp in top],
    }


def served_greedy(endpoint: Endpoint, recorded: dict[str, Any]) -> dict[str, Any]:
    """Each recorded greedy run (BOS on, off) again on the server, as long, with the top-k per step."""
    out = {}
    for label, run in recorded.items():
        (g,) = endpoint.complete(run["prompt_ids"], max_tokens=len(run["ids"]), temperature=0.0, logprobs=GREEDY_TOP_K)
        out[label] = {
            "prompt_ids": list(run["prompt_ids"]),
            "ids": list(g.ids),
            "text": g.text,
            "top_ids": g.top_ids(GREEDY_TOP_K),
        }
    return out


def served_answer_ends(endpoint: Endpoint, recorded: dict[str, Any]) -> dict[str, Any]:
    """U8 on the server: each recorded answer's prompt ids asked greedily with its budget as
    max_tokens, read as the in-process rows are (lm_probes/stopping.py) against the model's stop
    ids, with the server's finish_reason beside."""
    out = {}
    for request, answer in recorded.items():
        (g,) = endpoint.complete(
            answer["prompt_ids"], max_tokens=answer["budget"], temperature=0.0, logprobs=GREEDY_TOP_K
        )
        end = stopping.read_answer_end(
            request,
            "",
            tuple(answer["prompt_ids"]),
            g.ids,
            budget=answer["budget"],
            stop_ids=tuple(answer["stop_ids"]),
            pad_id=None,  # a server returns a finished answer without padding
            decode=lambda ids, text=g.text: text,
            top_ids=tuple(tuple(ids) for ids in g.top_ids(GREEDY_TOP_K)),
        )
        out[request] = answer_end_entry(end) | {"finish_reason": g.finish_reason}
    return out
