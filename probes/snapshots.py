"""Snapshots: what the probes observed, recorded with provenance, compared after upgrades.

A snapshot is a readable JSON file per card and device class
(``fixtures/snapshots/<card>/<device-class>.json``): token ids, the next-token
distribution, the temperature sweep, greedy continuations with their per-step logit
margins, embedding statistics, and samples for a fixed seed. ``compare`` reports every
change as an error or, where the change is within what the tolerances call noise (a
greedy flip at a near-tie), a warning.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import cross_class
from . import observations as ob
from . import tokenizer as tk
from .cards import FIXTURES_DIR, LEAVABLE_SECTIONS
from .decoding import softmax64
from .inputs import article_inputs
from .numerics import nearest_class
from .subjects import environment_info

if TYPE_CHECKING:
    from .hidden_states import Fingerprint
    from .subjects import Subject

SNAPSHOT_DIR = FIXTURES_DIR / "snapshots"


class SnapshotWarning(UserWarning):
    """A snapshot difference within tolerance of a real one (a near-tie flip): shown, not
    failed. Importable as ``probes.SnapshotWarning`` to filter or to turn into errors
    (``-W error::probes.SnapshotWarning``)."""


FORMAT = 1
TOP_N = 20  # next-token ids kept in a snapshot
GREEDY_TOP_K = 5  # per greedy step, the ids kept for the cross-class rule (vLLM's tests use 5)

# What counts as "the same" when comparing with a snapshot; a card can override any
# of these under `tolerances:`.
DEFAULT_TOLERANCES: dict[str, float] = {
    "prob_atol": 1e-4,  # max |p_now - p_recorded| over the recorded top-20 next tokens
    "entropy_atol": 1e-3,  # nats, per temperature
    "logit_tie": 0.01,  # a greedy flip whose two tokens' logits differ by at most this is a near-tie: warning
    "cosine_atol": 1e-5,  # per entry of the 20 x 20 cosine matrix
    "norm_rtol": 1e-5,  # per embedding row norm
    "hidden_norm_rtol": 1e-4,  # per layer, the last token's hidden-state norm (relative)
    "hidden_cosine_atol": 1e-5,  # per layer, 1 - cosine of the recorded and current projected state
    "backend_prob_atol": 1e-4,  # attention back-ends: max |dp| between them may grow up to this (or 2x recorded)
}

# Sampled continuations are compared only when all of these match: otherwise another
# random stream or kernel makes a difference meaningless.
SAMPLING_PROVENANCE = ("torch", "transformers", "bitsandbytes", "device", "class", "dtype", "cpu threads")


class SnapshotError(ValueError):
    """A snapshot file is missing, corrupt or of another format; the message says how to fix it."""


# ------------------------------------------------------------------------ recording


def device_class(subject: Subject) -> str:
    """The subject's machine class ('cpu', 'cpu-bnb-packed-bfloat16', 'cuda-sm90'): the
    machines on which this card's numbers are the same (probes/numerics.py)."""
    return subject.machine_class


def snapshot_path(subject: Subject, root: Path = SNAPSHOT_DIR) -> Path:
    return Path(root) / subject.card.name / f"{device_class(subject)}.json"


def provenance(subject: Subject) -> dict[str, Any]:
    # load first: loading fills in the file hashes, the device and the dtype
    subject.tokenizer  # noqa: B018
    if subject.card.has_model:
        subject.model  # noqa: B018
    env = environment_info()
    p = subject.provenance.as_dict()
    return {
        "python": env["python"],
        "torch": env["torch"],
        "transformers": env["transformers"],
        "tokenizers": env["tokenizers"],
        # "cpu", or the GPU's class ("cuda-sm90"), as before machine classes
        "device": "cpu" if subject.numerics.device == "cpu" else device_class(subject),
        "gpu": env["gpu"],
        "cpu threads": env["cpu threads"],
        "dtype": p["dtype"],
        "quantization": p["quantization"],
        "model source": p["model_source"],
        "files": p["files"],
        "revision": p["revision"],
        # only for a model with bitsandbytes layers: its kernels produced the numbers
        **({"bitsandbytes": env["bitsandbytes"]} if p["quantizer"] else {}),
        # what chose the kernels, and the class that follows from it (the file's name)
        "class": subject.machine_class,
        "numerics": subject.numerics.as_dict(),
        "recorded": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _r(x: float, digits: int = 7) -> float:
    return float(round(float(x), digits))


def observe(subject: Subject) -> dict[str, Any]:
    """Everything a snapshot holds for this subject (computed once, shared with the tests)."""
    inputs = article_inputs()
    tokenizer = subject.tokenizer
    special = [tk.special_text(tokenizer, k, t).text for k, t in inputs["special_texts"].items()]  # U6
    texts = list(
        dict.fromkeys(inputs["snapshot_texts"] + [c["text"] for c in subject.card.cases("tokenizer.encode")] + special)
    )
    observed: dict[str, Any] = {
        "tokenizer": {
            "vocab_size": tokenizer.vocab_size,
            "bos_token_id": tokenizer.bos_token_id,
            "ids": {
                t: {"special": tokenizer.encode(t), "plain": tokenizer.encode(t, add_special_tokens=False)}
                for t in texts
            },
            "chat": _observe_chat(subject),
        }
    }
    if not subject.card.has_model:
        return observed

    nt = ob.next_token(subject)
    probs = softmax64(nt.logits)
    top = np.argsort(-probs, kind="stable")[:TOP_N]
    observed["next_token"] = {
        "prompt": nt.prompt,
        "prompt_ids": list(nt.input_ids),
        "top_ids": [int(i) for i in top],
        "top_probs": [_r(probs[i]) for i in top],
    }
    sweep = ob.temperature_sweep(subject)
    observed["temperature"] = {"entropy": {str(t): _r(e, 6) for t, e in zip(sweep.temperatures, sweep.entropies)}}
    observed["generation"] = {
        call: {"effective": found.effective, "processors": list(found.processors)}
        for call in article_inputs()["generate_calls"]
        for found in [ob.generation_settings(subject, call)]
    }
    observed["hidden_states"] = fingerprint_entries(ob.fingerprints(subject))
    if subject.card.has_expectation("attention.backends"):
        backends = tuple(subject.card.expected("attention.backends"))
        agreement = ob.attention_backends(subject, backends)
        observed["attention"] = {
            "backends": list(backends),
            "max_prob_diff": float(f"{agreement.max_prob_diff:.3g}"),
            "greedy_agrees": agreement.greedy_agrees,
        }
    leave_out = set(subject.card.snapshot.leave_out)
    if "greedy" not in leave_out:
        observed["greedy"] = _observe_greedy(subject)
    if "embedding" not in leave_out:
        observed["embedding"] = _observe_embedding(subject)
    if "sampled" not in leave_out:
        observed["sampled"] = _observe_sampled(subject)
    if "first_tokens" not in leave_out:
        # generate()'s first-token draws, sorted (one line in the file): compared exactly
        # under the same provenance, by a homogeneity test across versions (FIRST_TOKEN_ALPHA)
        draws = ob.first_token_samples(subject)
        observed["first_tokens"] = {
            "seed": subject.seed,
            "settings": {"top_p": 0.9, "temperature": 1.4},
            "ids": sorted(ids[0] for ids in draws.new_ids),
        }
    return observed


def fingerprint_entries(fingerprints: list[Fingerprint]) -> list[dict[str, Any]]:
    """The snapshot's hidden_states section: per prompt, the norms and projections per layer."""
    return [
        {
            "prompt": f.prompt,
            "prompt_ids": list(f.prompt_ids),
            "norms": [_r(n, 6) for n in f.norms],
            "projections": [[_r(x, 6) for x in row] for row in f.projections],
        }
        for f in fingerprints
    ]


def _observe_chat(subject: Subject) -> dict[str, Any]:
    chat = ob.chat_rendering(subject)
    return (
        {"has_template": True, "text": chat.text, "ids": list(chat.ids)}
        if chat.has_template
        else {"has_template": False}
    )


def _observe_greedy(subject: Subject) -> dict[str, Any]:
    observed: dict[str, Any] = {}
    for label, bos in (("bos", True), ("no-bos", False)):
        g = ob.greedy_first_run(subject, bos)
        observed[label] = {
            "prompt_ids": list(g.prompt_ids),
            "ids": list(g.new_ids[0]),
            "text": g.texts[0],
            "margins": [_r(m, 4) for m in g.step_margins()],
            # the second-best token per step: lets two recorded sets judge a flip as a
            # near-tie without a model (lm-probes diff)
            "runners_up": list(g.step_runners_up()),
            # the top GREEDY_TOP_K ids per step: across machine classes, a divergence is
            # allowed where each side's token is in the other's (vLLM's check_logprobs_close)
            "top_ids": [list(ids) for ids in g.step_top_ids(GREEDY_TOP_K)],
        }
    return observed


def _observe_embedding(subject: Subject) -> dict[str, Any]:
    vectors = ob.word_vectors(subject)
    weight = subject.model.get_input_embeddings().weight
    return {
        "words": list(vectors.words),
        "sub_ids": {w: list(ids) for w, ids in zip(vectors.words, vectors.sub_ids)},
        "row_norms": {
            w: [_r(float(weight[i].detach().float().norm()), 6) for i in ids]
            for w, ids in zip(vectors.words, vectors.sub_ids)
        },
        "cosine": [[_r(x, 6) for x in row] for row in ob.cosine(subject)],
    }


def _observe_sampled(subject: Subject) -> dict[str, Any]:
    observed: dict[str, Any] = {"seed": subject.seed}
    for regime in article_inputs()["sampling"]["regimes"]:
        s = ob.sampled(subject, regime)
        observed[regime] = {"ids": [list(r) for r in s.new_ids], "texts": list(s.texts)}
    return observed


def dumps(snapshot: dict[str, Any]) -> str:
    """Stable, diff-friendly JSON: sorted keys, one level per line, lists of numbers inline
    (a 20 x 20 matrix is 20 lines, not 400). Written value by value, so a string is never
    touched: a generated text holding "[1,2,3]" is recorded as the model said it."""

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def write(value: Any, depth: int) -> str:
        inner, outer = " " * (depth + 1), " " * depth
        if isinstance(value, dict) and value:
            items = (f"{inner}{json.dumps(k, ensure_ascii=False)}: {write(value[k], depth + 1)}" for k in sorted(value))
            return "{\n" + ",\n".join(items) + f"\n{outer}}}"
        if isinstance(value, list) and value and not all(number(v) for v in value):
            return "[\n" + ",\n".join(f"{inner}{write(v, depth + 1)}" for v in value) + f"\n{outer}]"
        if isinstance(value, list):
            return "[" + ", ".join(json.dumps(v) for v in value) + "]"
        return json.dumps(value, ensure_ascii=False)

    return write(snapshot, 0) + "\n"


def record(subject: Subject, root: Path = SNAPSHOT_DIR) -> Path:
    path = snapshot_path(subject, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot = {
        "format": FORMAT,
        "card": subject.card.name,
        "provenance": provenance(subject),
        "observed": observe(subject),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(snapshot), encoding="utf-8")
    tmp.replace(path)  # atomic: an interrupted write never leaves half a snapshot
    return path


def recorded_classes(card_dir: Path) -> list[str]:
    """The machine classes a card's snapshot folder holds (its files' names)."""
    return sorted(p.stem for p in Path(card_dir).glob("*.json"))


def unrecorded_device_class(path: Path) -> str | None:
    """Why a first run on a GPU is a skip, not a failure, when *no* class of the card is
    recorded (None otherwise: a recorded class of its own is compared strictly, another
    one under the cross-class rules, and a CPU run with nothing recorded fails, as CI
    records on CPU)."""
    if path.is_file() or path.stem.startswith("cpu") or recorded_classes(path.parent):
        return None
    return f"no snapshot for device class {path.stem} yet (recorded: none)"


def load(path: Path, update_hint: str) -> dict[str, Any]:
    if not path.is_file():
        raise SnapshotError(f"no snapshot at {path}. Record one with: {update_hint}")
    try:
        snapshot = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotError(
            f"snapshot {path} is corrupt or truncated ({exc}). Re-record it with: {update_hint}"
        ) from None
    if not isinstance(snapshot, dict) or snapshot.get("format") != FORMAT or "observed" not in snapshot:
        raise SnapshotError(
            f"snapshot {path} is not a format-{FORMAT} lm-probes snapshot. Re-record it with: {update_hint}"
        )
    return snapshot


# ------------------------------------------------------------------------ comparing


@dataclass(frozen=True)
class Difference:
    severity: str  # "error" or "warning"
    where: str  # e.g. "greedy.bos"
    message: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.where}: {self.message}"


def _first_diff(a: list, b: list) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare(
    recorded: dict[str, Any],
    current: dict[str, Any],
    *,
    tolerances: dict[str, Any] | None = None,
    subject: Subject | None = None,
    recorded_provenance: dict[str, Any] | None = None,
    current_provenance: dict[str, Any] | None = None,
    classes: tuple[str, str] | None = None,
) -> list[Difference]:
    """Every difference between two observation dicts, judged by the tolerances.

    ``subject`` gives access to the current run's logits (to judge a greedy flip);
    without it (two recorded sets) a flip is judged from both sides' recorded margins
    and runners-up. ``classes``: the (recorded, current) machine classes; where they
    differ, the cross-class rules apply (probes/cross_class.py) with the card's measured
    ``tolerances.cross_class`` bounds."""
    tolerances = dict(tolerances or {})
    measured = tolerances.pop("cross_class", None) or {}
    recorded_provenance, current_provenance = recorded_provenance or {}, current_provenance or {}
    tol: dict[str, Any] = {**DEFAULT_TOLERANCES, **tolerances}
    across = classes is not None and classes[0] != classes[1]
    if across:
        tol = cross_class.tolerances(tol, measured, recorded_provenance, current_provenance)
    out: list[Difference] = []
    _compare_tokenizer(recorded.get("tokenizer", {}), current.get("tokenizer", {}), out)
    # U2-U4: each compared where both sides hold it (a snapshot from before them holds none)
    _compare_generation(recorded.get("generation", {}), current.get("generation", {}), out)
    _compare_hidden_states(recorded.get("hidden_states", []), current.get("hidden_states", []), tol, out)
    _compare_attention(recorded.get("attention"), current.get("attention"), tol, out)
    if "next_token" in recorded or "next_token" in current:
        if "next_token" not in recorded or "next_token" not in current:
            out.append(Difference("error", "model", "the snapshot and this run disagree on whether there is a model"))
            return out
        if across:
            _compare_next_token_across(recorded["next_token"], current["next_token"], tol, out)
        else:
            _compare_next_token(recorded["next_token"], current["next_token"], subject, tol, out)
        if recorded["next_token"]["prompt_ids"] == current["next_token"]["prompt_ids"]:
            # (another prompt encoding changes every entropy: reported once, as prompt_ids)
            _compare_temperature(recorded["temperature"], current["temperature"], tol, out)
        # a card may leave expensive sections out of its snapshot (snapshot.leave_out)
        for section in LEAVABLE_SECTIONS:
            if (section in recorded) != (section in current):
                had, has = ("has it", "leaves it out") if section in recorded else ("leaves it out", "has it")
                out.append(
                    Difference(
                        "error", section, f"the snapshot {had}, this run {has} (the card's snapshot.leave_out changed?)"
                    )
                )
        if "greedy" in recorded and "greedy" in current:
            if across:
                _compare_greedy_across(recorded["greedy"], current["greedy"], out)
            else:
                _compare_greedy(recorded["greedy"], current["greedy"], subject, tol, out)
        if "embedding" in recorded and "embedding" in current:
            _compare_embedding(recorded["embedding"], current["embedding"], tol, out)
        # sampled texts: only under the same provenance, which includes the class
        if "sampled" in recorded and "sampled" in current and not across:
            _compare_sampled(recorded, current, recorded_provenance, current_provenance, out)
        if "first_tokens" in recorded and "first_tokens" in current:
            _compare_first_tokens(
                recorded["first_tokens"],
                current["first_tokens"],
                recorded_provenance,
                current_provenance,
                out,
                same_draws_expected=not across,
            )
    return out


def _compare_next_token_across(rec: dict, cur: dict, tol: dict, out: list[Difference]) -> None:
    """Across machine classes: KL, max |dp| and the top-1, within the cross-class bounds."""
    if rec["prompt_ids"] != cur["prompt_ids"]:
        out.append(Difference("error", "next_token.prompt_ids", f"{rec['prompt_ids']} -> {cur['prompt_ids']}"))
        return
    found = cross_class.next_token_statistics(rec, cur)
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
    _compare_top1(rec, cur, tol["prob_atol"], out)


def _compare_greedy_across(rec: dict, cur: dict, out: list[Difference]) -> None:
    """Across machine classes: equal ids up to the first divergence, where each side's token
    must be in the other's recorded top-k; past it nothing is compared."""
    for label, r in rec.items():
        c = cur[label]
        if r["prompt_ids"] != c["prompt_ids"]:
            out.append(Difference("error", f"greedy.{label}", f"prompt ids {r['prompt_ids']} -> {c['prompt_ids']}"))
            continue
        i = _first_diff(r["ids"], c["ids"])
        if i >= min(len(r["ids"]), len(c["ids"])):
            if len(r["ids"]) != len(c["ids"]):
                out.append(
                    Difference("error", f"greedy.{label}", f"length {len(r['ids'])} -> {len(c['ids'])} new tokens")
                )
            continue
        severity, detail = cross_class.judge_greedy_divergence(r, c, i)
        out.append(
            Difference(
                severity, f"greedy.{label}", f"{detail}\n      recorded: {r['text']!r}\n      now:      {c['text']!r}"
            )
        )


def _compare_tokenizer(rec: dict, cur: dict, out: list[Difference]) -> None:
    for key in ("vocab_size", "bos_token_id"):
        if rec.get(key) != cur.get(key):
            out.append(Difference("error", f"tokenizer.{key}", f"{rec.get(key)} -> {cur.get(key)}"))
    _compare_chat(rec.get("chat"), cur.get("chat"), out)
    for text, modes in rec.get("ids", {}).items():
        now = cur.get("ids", {}).get(text)
        if now is None:
            continue  # a text this run does not probe (the card's cases changed)
        for mode, label in (("special", "special tokens on"), ("plain", "special tokens off")):
            a, b = modes[mode], now[mode]
            if a != b:
                i = _first_diff(a, b)
                out.append(
                    Difference(
                        "error", f"tokenizer.ids[{text!r}]", f"({label}) {a} -> {b}, first difference at position {i}"
                    )
                )


def _compare_chat(rec: dict | None, cur: dict | None, out: list[Difference]) -> None:
    if rec is None or cur is None:
        return  # a snapshot from before U1: nothing to compare with
    if rec["has_template"] != cur["has_template"]:
        had = "has" if rec["has_template"] else "has no"
        now = "has" if cur["has_template"] else "has none"
        out.append(
            Difference("error", "tokenizer.chat", f"the snapshot's tokenizer {had} chat template, this run's {now}")
        )
        return
    if not rec["has_template"]:
        return
    if rec["text"] != cur["text"]:
        i = _first_diff(list(rec["text"]), list(cur["text"]))
        out.append(
            Difference(
                "error",
                "tokenizer.chat.text",
                f"the rendered conversation changed at character {i}: {rec['text'][max(i - 20, 0) : i + 20]!r} -> "
                f"{cur['text'][max(i - 20, 0) : i + 20]!r}",
            )
        )
    if rec["ids"] != cur["ids"]:
        i = _first_diff(rec["ids"], cur["ids"])
        out.append(
            Difference(
                "error",
                "tokenizer.chat.ids",
                f"apply_chat_template(tokenize=True) changed at position {i}: {rec['ids'][max(i - 2, 0) : i + 3]} -> "
                f"{cur['ids'][max(i - 2, 0) : i + 3]}",
            )
        )


def _compare_generation(rec: dict, cur: dict, out: list[Difference]) -> None:
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


def _compare_hidden_states(rec: list, cur: list, tol: dict, out: list[Difference]) -> None:
    from .hidden_states import first_moved_layer

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


def _compare_attention(rec: dict | None, cur: dict | None, tol: dict, out: list[Difference]) -> None:
    if rec is None or cur is None:
        return  # the card compares no back-ends (or did not when recorded)
    if rec["backends"] != cur["backends"]:
        out.append(Difference("error", "attention", f"back-ends {rec['backends']} -> {cur['backends']}"))
        return
    if rec["greedy_agrees"] and not cur["greedy_agrees"]:
        out.append(Difference("error", "attention.greedy", f"{' and '.join(cur['backends'])} no longer agree"))
    # the gap between back-ends may move with rounding: an error once it is past both
    # twice the recorded gap and the tolerance
    bound = max(2 * rec["max_prob_diff"], tol["backend_prob_atol"])
    if cur["max_prob_diff"] > bound:
        out.append(
            Difference(
                "error",
                "attention.max_prob_diff",
                f"{rec['max_prob_diff']:.3g} -> {cur['max_prob_diff']:.3g} (allowed up to {bound:.3g})",
            )
        )


def _compare_next_token(rec: dict, cur: dict, subject: Subject | None, tol: dict, out: list[Difference]) -> None:
    if rec["prompt_ids"] != cur["prompt_ids"]:
        out.append(Difference("error", "next_token.prompt_ids", f"{rec['prompt_ids']} -> {cur['prompt_ids']}"))
        return
    if subject is not None:
        probs_now = softmax64(ob.next_token(subject).logits)
        now = {i: float(probs_now[i]) for i in rec["top_ids"]}
    else:  # compare what both files hold
        now = dict(zip(cur["top_ids"], cur["top_probs"]))
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
    _compare_top1(rec, cur, tol["prob_atol"], out)


def _compare_top1(rec: dict, cur: dict, prob_atol: float, out: list[Difference]) -> None:
    """Another most likely next token: a warning where the recording's top two were within
    ``prob_atol`` of each other (a near-tie), an error otherwise."""
    if rec["top_ids"][0] != cur["top_ids"][0]:
        gap = rec["top_probs"][0] - rec["top_probs"][1]
        severity = "warning" if gap <= prob_atol else "error"
        out.append(
            Difference(
                severity,
                "next_token.top1",
                f"{rec['top_ids'][0]} -> {cur['top_ids'][0]} (recorded top-2 gap {gap:.2e})",
            )
        )


def _compare_temperature(rec: dict, cur: dict, tol: dict, out: list[Difference]) -> None:
    for t, e in rec["entropy"].items():
        now = cur["entropy"].get(t)
        if now is None or abs(now - e) > tol["entropy_atol"]:
            out.append(
                Difference("error", f"temperature[{t}]", f"entropy {e} -> {now} (entropy_atol {tol['entropy_atol']})")
            )


def _compare_greedy(rec: dict, cur: dict, subject: Subject | None, tol: dict, out: list[Difference]) -> None:
    for label, r in rec.items():
        c = cur[label]
        if r["prompt_ids"] != c["prompt_ids"]:
            out.append(Difference("error", f"greedy.{label}", f"prompt ids {r['prompt_ids']} -> {c['prompt_ids']}"))
            continue
        if r["ids"] == c["ids"]:
            continue
        i = _first_diff(r["ids"], c["ids"])
        if i >= min(len(r["ids"]), len(c["ids"])):
            out.append(Difference("error", f"greedy.{label}", f"length {len(r['ids'])} -> {len(c['ids'])} new tokens"))
            continue
        was, now = r["ids"][i], c["ids"][i]
        detail = f"continuation changed at new token {i}: recorded {was} -> now {now}"
        severity = "error"
        if subject is None:
            severity, detail = _judge_recorded_flip(r, c, i, tol["logit_tie"])
        else:
            g = ob.greedy_first_run(subject, label == "bos")
            severity, detail = _judge_greedy_flip(
                g.step_logits[0][i], i, was, now, r.get("margins", []), tol["logit_tie"], subject.tokenizer
            )
        out.append(
            Difference(
                severity, f"greedy.{label}", f"{detail}\n      recorded: {r['text']!r}\n      now:      {c['text']!r}"
            )
        )


def _judge_recorded_flip(r: dict, c: dict, i: int, logit_tie: float) -> tuple[str, str]:
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


def _judge_greedy_flip(
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


def _compare_embedding(rec: dict, cur: dict, tol: dict, out: list[Difference]) -> None:
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
        return
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


def why_samples_not_comparable(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Why sampled texts cannot be compared: the provenance fields that differ (none: comparable)."""
    return [
        f"{k} {recorded.get(k)} -> {current.get(k)}" for k in SAMPLING_PROVENANCE if recorded.get(k) != current.get(k)
    ]


# A first-token distribution judged changed when a chi-square test of homogeneity rejects at
# this level: the rate at which two runs of an unchanged sampler are called different.
FIRST_TOKEN_ALPHA = 1e-3


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


def _compare_first_tokens(
    was: dict, now: dict, rec_prov: dict, cur_prov: dict, out: list[Difference], same_draws_expected: bool = True
) -> None:
    """Under the same seed and provenance, the same draws; across versions, seeds or machine
    classes the draws differ, their distribution must not."""
    if was["settings"] != now["settings"]:
        return  # other sampling settings: nothing to compare
    if same_draws_expected and was["seed"] == now["seed"] and not why_samples_not_comparable(rec_prov, cur_prov):
        if was["ids"] != now["ids"]:
            out.append(
                Difference("error", "first_tokens", "the first-token draws changed with the same seed and provenance")
            )
        return
    p, dof = first_tokens_homogeneity(_counts(was["ids"]), _counts(now["ids"]))
    if p < FIRST_TOKEN_ALPHA:
        out.append(
            Difference(
                "error",
                "first_tokens",
                f"generate()'s first-token distribution changed: chi-square homogeneity p = {p:.2e} "
                f"< {FIRST_TOKEN_ALPHA} ({dof} degrees of freedom, {len(was['ids'])} and {len(now['ids'])} draws)",
            )
        )


def _compare_sampled(rec: dict, cur: dict, rec_prov: dict, cur_prov: dict, out: list[Difference]) -> None:
    if rec["sampled"]["seed"] != cur["sampled"]["seed"]:
        return  # another --seed: other samples are expected
    if why_samples_not_comparable(rec_prov, cur_prov):
        return  # reported as "not compared" in the summary, not as a difference
    for regime, r in rec["sampled"].items():
        if regime == "seed" or regime not in cur["sampled"]:
            continue
        if r["ids"] != cur["sampled"][regime]["ids"]:
            changed = sum(a != b for a, b in zip(r["ids"], cur["sampled"][regime]["ids"]))
            out.append(
                Difference(
                    "error",
                    f"sampled.{regime}",
                    f"{changed} of {len(r['ids'])} samples changed with the same seed and provenance",
                )
            )


def summary_line(
    recorded_prov: dict[str, Any],
    current_prov: dict[str, Any],
    differences: list[Difference],
    classes: tuple[str, str] | None = None,
) -> str:
    """'transformers 4.57.6 -> 5.23.0: 1 error, 2 warnings (greedy.bos near-tie)'; across
    machine classes it starts 'machine class A -> B (cross-class rules)'."""
    changed = [
        f"{k} {recorded_prov.get(k)} -> {current_prov.get(k)}"
        for k in (
            "torch",
            "transformers",
            "tokenizers",
            "bitsandbytes",
            "device",
            "dtype",
            "quantization",
            "cpu threads",
        )
        if recorded_prov.get(k) != current_prov.get(k)
    ]
    if classes is not None and classes[0] != classes[1]:
        changed.insert(0, f"machine class {classes[0]} -> {classes[1]} (cross-class rules)")
    head = ", ".join(changed) if changed else "same versions and machine class"
    errors = [d for d in differences if d.severity == "error"]
    warnings_ = [d for d in differences if d.severity == "warning"]
    if not differences:
        return f"{head}: no change beyond tolerance"
    parts = []
    if errors:
        parts.append(f"{len(errors)} error(s) in {', '.join(sorted({d.where for d in errors}))}")
    if warnings_:
        parts.append(f"{len(warnings_)} warning(s) in {', '.join(sorted({d.where for d in warnings_}))}")
    return f"{head}: " + "; ".join(parts)


# ------------------------------------------------------------- the snapshot check


@dataclass(frozen=True)
class SnapshotOutcome:
    """What the snapshot check of one card found. The test turns it into a pass, a skip
    or a failure; the report's "Changes since snapshot" reads it (sent from an xdist
    worker to the controller as JSON: ``as_json`` / ``from_json``)."""

    card: str
    verdict: str  # "recorded", "passed", "skipped" (no snapshot for this device class yet), "failed"
    status: str  # the report's heading: "recorded <path>", "compared with cpu.json", ...
    message: str = ""  # why it was skipped or failed, with the command that records it
    summary: str = ""
    recorded_provenance: dict[str, Any] = field(default_factory=dict)
    current_provenance: dict[str, Any] = field(default_factory=dict)
    differences: tuple[Difference, ...] = ()
    not_compared: tuple[str, ...] = ()  # provenance changes that set the sampled texts aside

    @property
    def errors(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.severity == "error")

    @property
    def warnings(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.severity == "warning")

    def as_json(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in ("card", "verdict", "status", "message", "summary")},
            "recorded_provenance": self.recorded_provenance,
            "current_provenance": self.current_provenance,
            "differences": [[d.severity, d.where, d.message] for d in self.differences],
            "not_compared": list(self.not_compared),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotOutcome:
        return cls(
            **{k: data[k] for k in ("card", "verdict", "status", "message", "summary")},
            recorded_provenance=data["recorded_provenance"],
            current_provenance=data["current_provenance"],
            differences=tuple(Difference(*d) for d in data["differences"]),
            not_compared=tuple(data["not_compared"]),
        )


@dataclass
class SnapshotCheck:
    """The ``snapshot`` fixture: records (``--snapshot-update``) or compares a subject's
    observations with its snapshot under ``directory``, and keeps each card's outcome for
    the report (as ``data_regression.check`` and syrupy's ``snapshot`` own theirs)."""

    directory: Path = SNAPSHOT_DIR
    update: bool = False
    dir_option: str = ""  # " --snapshot-dir DIR" when not the default, for the record command
    outcomes: dict[str, SnapshotOutcome] = field(default_factory=dict)

    def record_command(self, subject: Subject) -> str:
        return f"pytest tests/behaviour/test_snapshot.py --card {subject.name} --snapshot-update{self.dir_option}"

    def check(self, subject: Subject) -> SnapshotOutcome:
        outcome = self._check(subject)
        self.outcomes[subject.name] = outcome
        return outcome

    def _check(self, subject: Subject) -> SnapshotOutcome:
        path = snapshot_path(subject, self.directory)
        if self.update:
            record(subject, self.directory)
            return SnapshotOutcome(subject.name, "recorded", f"recorded {path}")
        hint = self.record_command(subject)
        own_class = path.stem
        if not path.is_file():
            # this machine class is not recorded: compare with the nearest one that is,
            # under the cross-class rules (strict again once its own class is recorded)
            nearest = nearest_class(own_class, recorded_classes(path.parent))
            if nearest is not None:
                path = path.parent / f"{nearest}.json"
        unrecorded = unrecorded_device_class(path)
        if unrecorded:
            return SnapshotOutcome(
                subject.name,
                "skipped",
                "no snapshot for this device class yet",
                message=f"{subject.name}: {unrecorded}. Record one on this machine with: {hint}",
                summary=unrecorded,
            )
        try:
            recorded = load(path, hint)
        except SnapshotError as exc:
            return SnapshotOutcome(subject.name, "failed", "no usable snapshot", message=str(exc), summary=str(exc))
        current_prov = provenance(subject)
        classes = (path.stem, own_class)
        differences = tuple(
            compare(
                recorded["observed"],
                observe(subject),
                tolerances=subject.card.tolerances,
                subject=subject,
                recorded_provenance=recorded["provenance"],
                current_provenance=current_prov,
                classes=classes,
            )
        )
        summary = summary_line(recorded["provenance"], current_prov, list(differences), classes=classes)
        errors = [d for d in differences if d.severity == "error"]
        message = ""
        if errors:
            message = (
                f"{subject.name} differs from its snapshot {path}\n  {summary}\n"
                + "\n".join(f"  {d}" for d in errors)
                + f"\nIf the change is intended, re-record with: {hint}"
            )
        across = f" (cross-class rules: this run is {own_class})" if classes[0] != classes[1] else ""
        return SnapshotOutcome(
            subject.name,
            "failed" if errors else "passed",
            f"compared with {path.name}{across}",
            message=message,
            summary=summary,
            recorded_provenance=recorded["provenance"],
            current_provenance=current_prov,
            differences=differences,
            not_compared=tuple(why_samples_not_comparable(recorded["provenance"], current_prov)),
        )
