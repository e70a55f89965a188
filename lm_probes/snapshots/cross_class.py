"""Comparing observations recorded on two machine classes: honest, and still sharp.

Within one machine class (``lm_probes/numerics.py``) a snapshot is compared strictly: the
same kernels give the same numbers. Across classes (another CPU, a first GPU run against
the CPU's snapshot, one GPU generation against another) rounding legitimately differs,
and these rules take over (the anchors: vLLM's ``check_logprobs_close``, llama.cpp's
``--kl-divergence`` statistics, ``torch.testing.assert_close``'s dtype-scaled tolerances):

- exact, as within a class: tokenizer ids, the chat template, generation settings;
- greedy: the token ids agree up to the first divergence; there each side's token must be
  in the other's recorded top-k, and the rest is not compared (the sequences now differ by
  construction);
- the next-token distribution: KL divergence, the same top-1 and max |dp|, within bounds
  *measured* between recorded classes (a card's ``tolerances.cross_class``), else the
  defaults below, in units of the compute dtype's resolution;
- hidden states, embedding statistics, temperature entropies: per-entry tolerances scaled
  the same way;
- sampled texts are not compared (another kernel changes which token a seed draws); the
  first-token draws are tested for homogeneity, as across versions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lm_probes.maths import kl_divergence, layer_change


def next_token_statistics(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """KL(recorded || current) over the ids either side recorded (the rest of each side's
    mass pooled into one bin: a lower bound of the full KL), max |dp| over those ids (an id
    one side did not record counts as 0 there: an upper bound), and the two top-1 ids."""
    p_rec = dict(zip(recorded["top_ids"], recorded["top_probs"]))
    p_cur = dict(zip(current["top_ids"], current["top_probs"]))
    ids = sorted(set(p_rec) | set(p_cur))
    # an id only one side recorded is below that side's 20th probability: take it as that
    floor_rec, floor_cur = min(recorded["top_probs"]), min(current["top_probs"])
    a = np.array([p_rec.get(i, floor_rec) for i in ids] + [0.0])
    b = np.array([p_cur.get(i, floor_cur) for i in ids] + [0.0])
    a[-1], b[-1] = max(1.0 - a[:-1].sum(), 0.0), max(1.0 - b[:-1].sum(), 0.0)
    kl = kl_divergence(a / a.sum(), b / b.sum())
    deltas = {i: abs(p_rec.get(i, 0.0) - p_cur.get(i, 0.0)) for i in ids}
    worst = max(deltas, key=deltas.get)
    return {
        "kl": kl,
        "max_prob_diff": float(deltas[worst]),
        "worst_id": int(worst),
        "top1": (int(recorded["top_ids"][0]), int(current["top_ids"][0])),
    }


def hidden_state_statistics(recorded: list[dict[str, Any]], current: list[dict[str, Any]]) -> dict[str, float]:
    """Over every prompt and layer both sides hold: the largest relative norm change and
    the largest 1 - cosine between the projected states."""
    now_by_prompt = {e["prompt"]: e for e in current}
    worst_norm, worst_cosine = 0.0, 0.0
    for was in recorded:
        now = now_by_prompt.get(was["prompt"])
        if now is None or now["prompt_ids"] != was["prompt_ids"] or len(now["norms"]) != len(was["norms"]):
            continue
        for n0, n1, p0, p1 in zip(was["norms"], now["norms"], was["projections"], now["projections"]):
            relative_norm, cosine = layer_change(n0, n1, p0, p1)
            worst_norm, worst_cosine = max(worst_norm, relative_norm), max(worst_cosine, 1.0 - cosine)
    return {"hidden_norm_rel": worst_norm, "hidden_one_minus_cosine": worst_cosine}


def statistics(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, float]:
    """The cross-class figures between two observation sets (docs/machine-classes.md's per-card table,
    and what a card's measured ``tolerances.cross_class`` is set from)."""
    out: dict[str, float] = {}
    if "next_token" in recorded and "next_token" in current:
        nt = next_token_statistics(recorded["next_token"], current["next_token"])
        out |= {
            "kl": nt["kl"],
            "max_prob_diff": nt["max_prob_diff"],
            "same_top1": float(nt["top1"][0] == nt["top1"][1]),
        }
    if "temperature" in recorded and "temperature" in current:
        out["entropy_diff"] = max(
            abs(e - current["temperature"]["entropy"].get(t, e)) for t, e in recorded["temperature"]["entropy"].items()
        )
    if recorded.get("hidden_states") and current.get("hidden_states"):
        out |= hidden_state_statistics(recorded["hidden_states"], current["hidden_states"])
    if "embedding" in recorded and "embedding" in current:
        a, b = np.array(recorded["embedding"]["cosine"]), np.array(current["embedding"]["cosine"])
        out["embedding_cosine_diff"] = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    return out


def top_ids_at(side: dict[str, Any], step: int) -> list[int]:
    """The ids a recorded greedy run ranked highest at ``step``: its recorded top-k, or, in a
    snapshot from before top-k was kept, its token and runner-up."""
    if "top_ids" in side and step < len(side["top_ids"]):
        return list(side["top_ids"][step])
    ranked = [side["ids"][step]]
    if "runners_up" in side and step < len(side["runners_up"]):
        ranked.append(side["runners_up"][step])
    return ranked


def judge_greedy_divergence(recorded: dict[str, Any], current: dict[str, Any], step: int) -> tuple[str, str]:
    """vLLM's rule at the first step where two classes' greedy tokens differ: each side's
    token is in the other side's top-k there (a reordering of close candidates, which
    rounding can cause; an error otherwise). What follows is not compared."""
    was, now = recorded["ids"][step], current["ids"][step]
    top_rec, top_cur = top_ids_at(recorded, step), top_ids_at(current, step)
    detail = (
        f"continuation diverged at new token {step}: recorded {was} -> now {now}; recorded top-{len(top_rec)} "
        f"{top_rec}, now top-{len(top_cur)} {top_cur}"
    )
    if now in top_rec and was in top_cur:
        return "warning", f"{detail}: each token is in the other side's top-k (not compared further)"
    missing = [f"{now} not in the recorded top-k"] if now not in top_rec else []
    missing += [f"{was} not in this run's top-k"] if was not in top_cur else []
    return "error", f"{detail}: {' and '.join(missing)}, which rounding does not explain"
