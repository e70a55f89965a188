"""The comparison rules of the sections that hold no decoded tokens: the tokenizer (with the
chat template), the generation settings, hidden states, attention back-ends, the embedding
statistics and the temperature sweep. Each takes the two recordings of its section and the
``Context`` and returns its differences; snapshots/sections.py says which rule is whose."""

from __future__ import annotations

import numpy as np

from lm_probes.maths import first_moved_layer
from lm_probes.snapshots.differences import Context, Difference, first_diff


def compare_tokenizer(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    out: list[Difference] = []
    for key in ("vocab_size", "bos_token_id"):
        if rec.get(key) != cur.get(key):
            out.append(Difference("error", f"tokenizer.{key}", f"{rec.get(key)} -> {cur.get(key)}"))
    out += compare_chat(rec.get("chat"), cur.get("chat"))
    recorded_ids, current_ids = rec.get("ids"), cur.get("ids") or {}
    # (ids of another type are the file's shape, said as such by compare.py)
    if current_ids and (
        recorded_ids is None or (isinstance(recorded_ids, dict) and not set(recorded_ids) & set(current_ids))
    ):
        # a snapshot holding none of the texts this run encodes compares no id at all: every
        # tokenizer would pass (the deep fuzz run's finding, with "ids" renamed in the file)
        return out + [
            Difference(
                "error",
                "tokenizer.ids",
                f"the snapshot records none of the {len(current_ids)} texts this run encodes: no token id is "
                "compared. Re-record the snapshot",
            )
        ]
    for text, modes in recorded_ids.items():
        now = cur.get("ids", {}).get(text)
        if now is None:
            continue  # a text this run does not probe (the card's cases changed)
        for mode, label in (("special", "special tokens on"), ("plain", "special tokens off")):
            a, b = modes[mode], now[mode]
            if a != b:
                i = first_diff(a, b)
                out.append(
                    Difference(
                        "error", f"tokenizer.ids[{text!r}]", f"({label}) {a} -> {b}, first difference at position {i}"
                    )
                )
    return out


def compare_chat(rec: dict | None, cur: dict | None) -> list[Difference]:
    if rec is None or cur is None:
        return []  # a snapshot from before U1: nothing to compare with
    if rec["has_template"] != cur["has_template"]:
        had = "has" if rec["has_template"] else "has no"
        now = "has" if cur["has_template"] else "has none"
        return [
            Difference("error", "tokenizer.chat", f"the snapshot's tokenizer {had} chat template, this run's {now}")
        ]
    if not rec["has_template"]:
        return []
    out: list[Difference] = []
    if rec["text"] != cur["text"]:
        i = first_diff(list(rec["text"]), list(cur["text"]))
        out.append(
            Difference(
                "error",
                "tokenizer.chat.text",
                f"the rendered conversation changed at character {i}: {rec['text'][max(i - 20, 0) : i + 20]!r} -> "
                f"{cur['text'][max(i - 20, 0) : i + 20]!r}",
            )
        )
    if rec["ids"] != cur["ids"]:
        i = first_diff(rec["ids"], cur["ids"])
        out.append(
            Difference(
                "error",
                "tokenizer.chat.ids",
                f"apply_chat_template(tokenize=True) changed at position {i}: {rec['ids'][max(i - 2, 0) : i + 3]} -> "
                f"{cur['ids'][max(i - 2, 0) : i + 3]}",
            )
        )
    return out


def compare_generation(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    out: list[Difference] = []
    for call, was in rec.items():
        now = cur.get(call)
        if now is None:
            continue  # a call this run does not make (the inputs changed)
        if was["processors"] != now["processors"]:
            added = [p for p in now["processors"] if p not in was["processors"]]
            dropped = [p for p in was["processors"] if p not in now["processors"]]
            out.append(
                Difference(
                    "error",
                    f"generation.{call}.processors",
                    f"{was['processors']} -> {now['processors']} (added {added}, dropped {dropped})",
                )
            )
        changed = {k: (v, now["effective"].get(k)) for k, v in was["effective"].items() if now["effective"].get(k) != v}
        if changed:
            out.append(
                Difference(
                    "error",
                    f"generation.{call}.settings",
                    "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()),
                )
            )
    return out


def compare_hidden_states(rec: list, cur: list, ctx: Context) -> list[Difference]:
    tol, out = ctx.tolerances, []
    now_by_prompt = {entry["prompt"]: entry for entry in cur}
    for was in rec:
        now = now_by_prompt.get(was["prompt"])
        if now is None:
            continue
        where = f"hidden_states[{was['prompt']!r}]"
        if was["prompt_ids"] != now["prompt_ids"]:
            out.append(Difference("error", where, f"prompt ids {was['prompt_ids']} -> {now['prompt_ids']}"))
            continue
        if len(was["norms"]) != len(now["norms"]):
            out.append(Difference("error", where, f"{len(was['norms'])} -> {len(now['norms'])} hidden states"))
            continue
        moved = first_moved_layer(
            was["norms"],
            was["projections"],
            now["norms"],
            now["projections"],
            tol["hidden_norm_rtol"],
            tol["hidden_cosine_atol"],
        )
        if moved is not None:
            out.append(
                Difference(
                    "error",
                    where,
                    f"{moved.describe()} (hidden_norm_rtol {tol['hidden_norm_rtol']}, "
                    f"hidden_cosine_atol {tol['hidden_cosine_atol']})",
                )
            )
    return out


def compare_attention(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    if rec["backends"] != cur["backends"]:
        return [Difference("error", "attention", f"back-ends {rec['backends']} -> {cur['backends']}")]
    out: list[Difference] = []
    if rec["greedy_agrees"] and not cur["greedy_agrees"]:
        out.append(Difference("error", "attention.greedy", f"{' and '.join(cur['backends'])} no longer agree"))
    # the gap between back-ends may move with rounding: an error once it is past both
    # twice the recorded gap and the tolerance
    bound = max(2 * rec["max_prob_diff"], ctx.tolerances["backend_prob_atol"])
    if cur["max_prob_diff"] > bound:
        out.append(
            Difference(
                "error",
                "attention.max_prob_diff",
                f"{rec['max_prob_diff']:.3g} -> {cur['max_prob_diff']:.3g} (allowed up to {bound:.3g})",
            )
        )
    return out


def compare_temperature(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    prompts = [side.get("next_token", {}).get("prompt_ids") for side in (ctx.recorded, ctx.current)]
    if prompts[0] != prompts[1]:
        return []  # another prompt encoding changes every entropy: reported once, as next_token.prompt_ids
    tol = ctx.tolerances["entropy_atol"]
    return [
        Difference("error", f"temperature[{t}]", f"entropy {e} -> {cur['entropy'].get(t)} (entropy_atol {tol})")
        for t, e in rec["entropy"].items()
        if cur["entropy"].get(t) is None or abs(cur["entropy"][t] - e) > tol
    ]


def compare_embedding(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    tol, out = ctx.tolerances, []
    for word, ids in rec["sub_ids"].items():
        if cur["sub_ids"].get(word) != ids:
            out.append(Difference("error", f"embedding.sub_ids[{word}]", f"{ids} -> {cur['sub_ids'].get(word)}"))
    for word, norms in rec["row_norms"].items():
        now = cur["row_norms"].get(word, [])
        if len(now) != len(norms) or not np.allclose(now, norms, rtol=tol["norm_rtol"], atol=0):
            out.append(
                Difference("error", f"embedding.row_norms[{word}]", f"{norms} -> {now} (norm_rtol {tol['norm_rtol']})")
            )
    a, b = np.array(rec["cosine"]), np.array(cur["cosine"])
    if a.shape != b.shape:
        out.append(Difference("error", "embedding.cosine", f"shape {a.shape} -> {b.shape}"))
        return out
    delta = np.abs(a - b)
    if delta.max() > tol["cosine_atol"]:
        i, j = np.unravel_index(int(delta.argmax()), delta.shape)
        words = rec["words"]
        out.append(
            Difference(
                "error",
                "embedding.cosine",
                f"cos({words[i]}, {words[j]}) {a[i, j]} -> {b[i, j]}; max |delta| {delta.max():.2e} "
                f"exceeds cosine_atol {tol['cosine_atol']:.0e}",
            )
        )
    return out
