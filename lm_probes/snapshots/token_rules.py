"""The comparison rules of the sections that hold tokens the model chose or drew: the
next-token distribution, the greedy continuations (with the near-tie judges), the sampled
texts and the first-token draws (a chi-square test of homogeneity). Each section's rule
takes its two recordings and the ``Context``; within a machine class it is strict, across
classes it follows snapshots/cross_class.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from lm_probes.maths import softmax64
from lm_probes.snapshots import cross_class
from lm_probes.snapshots.differences import Context, Difference, first_diff
from lm_probes.subjects import results

# Sampled continuations are compared only when all of these match: otherwise another
# random stream or kernel makes a difference meaningless.
SAMPLING_PROVENANCE = ("torch", "transformers", "bitsandbytes", "device", "class", "dtype", "cpu threads")

# A first-token distribution judged changed when a chi-square test of homogeneity rejects at
# this level: the rate at which two runs of an unchanged sampler are called different.
FIRST_TOKEN_ALPHA = 1e-3

# ------------------------------------------------------------------------ next token


def compare_next_token(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    if rec["prompt_ids"] != cur["prompt_ids"]:
        return [Difference("error", "next_token.prompt_ids", f"{rec['prompt_ids']} -> {cur['prompt_ids']}")]
    tol = ctx.tolerances
    if ctx.across:
        return next_token_across(rec, cur, tol)
    if ctx.subject is not None:  # this run's own probabilities, not only its recorded top-20
        probs_now = softmax64(results.next_token(ctx.subject).logits)
        now = {i: float(probs_now[i]) for i in rec["top_ids"]}
    else:  # compare what both files hold
        now = dict(zip(cur["top_ids"], cur["top_probs"]))
    out: list[Difference] = []
    deltas = {i: abs(now.get(i, 0.0) - p) for i, p in zip(rec["top_ids"], rec["top_probs"])}
    worst = max(deltas, key=deltas.get)
    if deltas[worst] > tol["prob_atol"]:
        out.append(
            Difference(
                "error",
                "next_token.probs",
                f"max |delta p| {deltas[worst]:.2e} at id {worst} exceeds prob_atol {tol['prob_atol']:.0e}",
            )
        )
    return out + compare_top1(rec, cur, tol["prob_atol"])


def next_token_across(rec: dict, cur: dict, tol: dict[str, Any]) -> list[Difference]:
    """Across machine classes: KL, max |dp| and the top-1, within the cross-class bounds."""
    found = cross_class.next_token_statistics(rec, cur)
    out: list[Difference] = []
    if found["kl"] > tol["kl_max"]:
        out.append(
            Difference(
                "error", "next_token.kl", f"KL {found['kl']:.3g} nats exceeds the cross-class bound {tol['kl_max']:.3g}"
            )
        )
    if found["max_prob_diff"] > tol["prob_atol"]:
        out.append(
            Difference(
                "error",
                "next_token.probs",
                f"max |delta p| {found['max_prob_diff']:.2e} at id {found['worst_id']} exceeds the cross-class "
                f"bound {tol['prob_atol']:.2e} ({tol['dtype']} compute)",
            )
        )
    return out + compare_top1(rec, cur, tol["prob_atol"])


def compare_top1(rec: dict, cur: dict, prob_atol: float) -> list[Difference]:
    """Another most likely next token: a warning where the recording's top two were within
    ``prob_atol`` of each other (a near-tie), an error otherwise."""
    if rec["top_ids"][0] == cur["top_ids"][0]:
        return []
    gap = rec["top_probs"][0] - rec["top_probs"][1]
    return [
        Difference(
            "warning" if gap <= prob_atol else "error",
            "next_token.top1",
            f"{rec['top_ids'][0]} -> {cur['top_ids'][0]} (recorded top-2 gap {gap:.2e})",
        )
    ]


# ------------------------------------------------------------------------ answer ends


def ending(entry: dict[str, Any]) -> str:
    """How a recorded answer ended, in words."""
    if entry["end"] == "stop":
        return f"stopped at {entry['stop_id']} after {entry['new_tokens']} new tokens"
    if entry["end"] == "budget":
        return f"ran to the budget of {entry['budget']} new tokens"
    if entry["end"] == "ran past a stop id":
        return f"went on past a stop id {entry['stop_ids']} ({entry['new_tokens']} new tokens)"
    return f"ended after {entry['new_tokens']} new tokens without a stop id"


# what a served answer's finish_reason must be for where its tokens show it ended
FINISH_REASONS = {"stop": "stop", "budget": "length", "ran past a stop id": "length"}


def compare_answer_ends(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    """Where each greedy answer ended (U8). Within a machine class exactly: the same tokens
    and the same end. Across classes, a divergence where each side's token is in the other's
    top-k is a warning, and the ends after it are not compared (the answers now differ by
    construction); an answer that ends elsewhere with no such divergence is an error."""
    out: list[Difference] = []
    for request, r in rec.items():
        name = f"answer_ends.{request}"
        c = cur.get(request)
        if c is None:
            out.append(Difference("error", name, "not answered now (the inputs' answer_ends lost this request)"))
            continue
        if r["prompt_ids"] != c["prompt_ids"]:
            out.append(Difference("error", name, f"prompt ids {r['prompt_ids']} -> {c['prompt_ids']}"))
            continue
        if r["stop_ids"] != c["stop_ids"] or r["budget"] != c["budget"]:
            out.append(
                Difference(
                    "error",
                    name,
                    f"asked with other stop ids or budget: stop ids {r['stop_ids']} -> {c['stop_ids']}, "
                    f"budget {r['budget']} -> {c['budget']}",
                )
            )
        if "finish_reason" in c and c["finish_reason"] != FINISH_REASONS.get(c["end"]):
            out.append(
                Difference(
                    "error",
                    name,
                    f"finish_reason {c['finish_reason']!r}, but its tokens show it {ending(c)} "
                    f"(expected {FINISH_REASONS.get(c['end'])!r})",
                )
            )
        if (r["ids"], r["end"]) == (c["ids"], c["end"]):
            continue
        ends = f"recorded {ending(r)} -> now {ending(c)}"
        if c["end"] == "ran past a stop id":
            past = first_stop(c)
            ends += (
                f"; generation went on past stop id {c['ids'][past]} at new token {past}: "
                "nothing stopped it at the model's stop ids"
            )
        i = first_diff(r["ids"], c["ids"])
        parted = i < min(len(r["ids"]), len(c["ids"]))  # the tokens differ before either side ended
        severity = "error"
        if ctx.across and parted:
            severity, detail = cross_class.judge_greedy_divergence(r, c, i)
            if severity == "warning":
                detail += "; where it ends is not compared past the divergence"
        elif parted:
            detail = f"the answer changed at new token {i}: {r['ids'][i]} -> {c['ids'][i]}"
        else:
            detail = f"the same tokens up to new token {i}, then one side ended"
        out.append(
            Difference(
                severity, name, f"{ends}; {detail}\n      recorded: {r['text']!r}\n      now:      {c['text']!r}"
            )
        )
    return out


def first_stop(entry: dict[str, Any]) -> int:
    return next(i for i, token in enumerate(entry["ids"]) if token in entry["stop_ids"])


# ---------------------------------------------------------------------------- greedy


def compare_greedy(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    out: list[Difference] = []
    for label, r in rec.items():
        c = cur[label]
        if r["prompt_ids"] != c["prompt_ids"]:
            out.append(Difference("error", f"greedy.{label}", f"prompt ids {r['prompt_ids']} -> {c['prompt_ids']}"))
            continue
        if r["ids"] == c["ids"]:
            continue
        i = first_diff(r["ids"], c["ids"])
        if i >= min(len(r["ids"]), len(c["ids"])):
            out.append(Difference("error", f"greedy.{label}", f"length {len(r['ids'])} -> {len(c['ids'])} new tokens"))
            continue
        if ctx.across:
            # across machine classes: each side's token must be in the other's recorded top-k;
            # past the divergence nothing is compared (the sequences now differ by construction)
            severity, detail = cross_class.judge_greedy_divergence(r, c, i)
        elif ctx.subject is None:
            severity, detail = judge_recorded_flip(r, c, i, ctx.tolerances["logit_tie"])
        else:
            g = results.greedy_first_run(ctx.subject, label == "bos")
            severity, detail = judge_greedy_flip(
                g.step_logits[0][i],
                i,
                r["ids"][i],
                c["ids"][i],
                r.get("margins", []),
                ctx.tolerances["logit_tie"],
                ctx.subject.tokenizer,
            )
        out.append(
            Difference(
                severity, f"greedy.{label}", f"{detail}\n      recorded: {r['text']!r}\n      now:      {c['text']!r}"
            )
        )
    return out


def judge_recorded_flip(r: dict, c: dict, i: int, logit_tie: float) -> tuple[str, str]:
    """A greedy flip between two recorded sets (no model at hand): a near-tie (warning) only
    where each side's token is the other side's runner-up at that step and both sides chose
    by at most ``logit_tie``; otherwise an error saying which part failed."""
    was, now = r["ids"][i], c["ids"][i]
    detail = f"continuation changed at new token {i}: recorded {was} -> now {now}"
    if "runners_up" not in r or "runners_up" not in c:
        return "error", f"{detail} (a snapshot without runners-up: no near-tie judgement)"
    margins = (r["margins"][i], c["margins"][i])
    swapped = r["runners_up"][i] == now and c["runners_up"][i] == was
    detail += f"; runners-up {r['runners_up'][i]} / {c['runners_up'][i]}, margins {margins[0]} / {margins[1]}"
    if swapped and max(margins) <= logit_tie:
        return (
            "warning",
            f"{detail}: the two top tokens swapped places, a near-tie on both sides (logit_tie {logit_tie})",
        )
    if not swapped:
        return "error", f"{detail}: the new token was not the other side's runner-up, so no swap of a near-tie"
    return "error", f"{detail}: a side chose by more than logit_tie {logit_tie}, which is no tie"


def judge_greedy_flip(
    step: np.ndarray, i: int, was: int, now: int, recorded_margins: list[float], logit_tie: float, tokenizer: Any
) -> tuple[str, str]:
    """Severity and message of a greedy continuation that now differs at new token ``i``.

    A near-tie (a warning) needs all three: this run picked the highest logit of its own
    step (it decoded greedily), the recorded token is within ``logit_tie`` of it now, and
    the recording's own choice was within ``logit_tie`` of its runner-up. Anything else
    is an error that says which of these failed."""
    best = int(np.argmax(step))
    gap = float(step[now] - step[was])
    detail = (
        f"continuation changed at new token {i}: recorded {was} {tokenizer.decode([was])!r} -> now {now} "
        f"{tokenizer.decode([now])!r}; logits now {float(step[now]):.4f} vs {float(step[was]):.4f} (gap {gap:.4f})"
    )
    if step[now] < step[best]:
        return "error", (
            f"{detail}; this run did not pick the highest-scoring token: {best} {tokenizer.decode([best])!r} scored "
            f"{float(step[best] - step[now]):.4f} more, so generate() did not decode greedily (a logits processor "
            "inherited from generation_config.json, e.g. repetition_penalty, or sampling changed the choice)"
        )
    recorded_margin = recorded_margins[i] if i < len(recorded_margins) else None
    if gap > logit_tie:
        return (
            "error",
            f"{detail}; the scores changed: the recorded token is now {gap:.4f} below (logit_tie {logit_tie})",
        )
    if recorded_margin is not None and recorded_margin > logit_tie:
        return "error", (
            f"{detail}; the scores changed: the recording chose its token by a margin of {recorded_margin:.4f} "
            f"(logit_tie {logit_tie}), which is no tie"
        )
    return "warning", f"{detail}, a near-tie (logit_tie {logit_tie})"


# ------------------------------------------------------------ sampled, first tokens


def why_samples_not_comparable(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why sampled texts cannot be compared: the provenance fields that differ (none: comparable)."""
    return [
        f"{k} {recorded.get(k)} -> {current.get(k)}" for k in SAMPLING_PROVENANCE if recorded.get(k) != current.get(k)
    ]


def compare_sampled(rec: dict, cur: dict, ctx: Context) -> list[Difference]:
    if ctx.across or rec["seed"] != cur["seed"]:
        return []  # another machine class or --lm-probes-seed: other samples are expected
    if why_samples_not_comparable(ctx.recorded_provenance, ctx.current_provenance):
        return []  # reported as "not compared" in the summary, not as a difference
    out: list[Difference] = []
    for regime, r in rec.items():
        if regime == "seed" or regime not in cur:
            continue
        if r["ids"] != cur[regime]["ids"]:
            changed = sum(a != b for a, b in zip(r["ids"], cur[regime]["ids"]))
            out.append(
                Difference(
                    "error",
                    f"sampled.{regime}",
                    f"{changed} of {len(r['ids'])} samples changed with the same seed and provenance",
                )
            )
    return out


def first_tokens_homogeneity(recorded: dict[str, int], current: dict[str, int]) -> tuple[float, int]:
    """(p-value, degrees of freedom) of a chi-square test that two sets of first-token
    counts come from one distribution. Tokens expected fewer than 5 times in either set are
    pooled into one bin, as the test needs."""
    from scipy.stats import chi2_contingency

    n_a, n_b = sum(recorded.values()), sum(current.values())
    tokens = sorted(set(recorded) | set(current))
    kept = [t for t in tokens if min(n_a, n_b) * (recorded.get(t, 0) + current.get(t, 0)) / (n_a + n_b) >= 5]
    pooled = [t for t in tokens if t not in kept]
    rows = [[recorded.get(t, 0) for t in kept], [current.get(t, 0) for t in kept]]
    if pooled:
        rows[0].append(sum(recorded.get(t, 0) for t in pooled))
        rows[1].append(sum(current.get(t, 0) for t in pooled))
    columns = [i for i in range(len(rows[0])) if rows[0][i] + rows[1][i] > 0]
    if len(columns) < 2:
        return 1.0, 0  # one token only, on both sides: nothing to test
    result = chi2_contingency([[row[i] for i in columns] for row in rows])
    return float(result.pvalue), int(result.dof)


def _counts(ids: list[int]) -> dict[str, int]:
    return dict(Counter(str(i) for i in ids))


def compare_first_tokens(was: dict, now: dict, ctx: Context) -> list[Difference]:
    """Under the same seed, provenance and machine class, the same draws; across versions,
    seeds or machine classes the draws differ, their distribution must not."""
    if was["settings"] != now["settings"]:
        return []  # other sampling settings: nothing to compare
    same_stream = was["seed"] == now["seed"] and not ctx.across
    if same_stream and not why_samples_not_comparable(ctx.recorded_provenance, ctx.current_provenance):
        if was["ids"] != now["ids"]:
            return [
                Difference("error", "first_tokens", "the first-token draws changed with the same seed and provenance")
            ]
        return []
    p, dof = first_tokens_homogeneity(_counts(was["ids"]), _counts(now["ids"]))
    if p >= FIRST_TOKEN_ALPHA:
        return []
    return [
        Difference(
            "error",
            "first_tokens",
            f"generate()'s first-token distribution changed: chi-square homogeneity p = {p:.2e} "
            f"< {FIRST_TOKEN_ALPHA} ({dof} degrees of freedom, {len(was['ids'])} and {len(now['ids'])} draws)",
        )
    ]
