"""The sections of a snapshot: one entry each, holding everything about it.

A snapshot (``fixtures/snapshots/<card>/<machine class>.json``) is a dict of sections. Each
entry says how its section is observed from a subject (snapshots/observe.py), how two
recordings of it are compared, within a machine class and across classes
(snapshots/rules.py, snapshots/token_rules.py), the tolerances that comparison reads
(defaults a card overrides under ``tolerances:``), whether a card may leave the section out
(``snapshot.leave_out``), and how ``lm-probes diff`` shows a change (snapshots/render.py).
The card schema, the recording, the comparison and the diff page all read this list, so
adding a section is adding an entry here and its test (docs/development.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probes.snapshots import observe, render, rules, token_rules

if TYPE_CHECKING:
    from probes.snapshots.differences import Context, Difference
    from probes.subjects.subject import Subject


@dataclass(frozen=True)
class Tolerance:
    """One number a section's rule compares against."""

    meaning: str
    default: float | None  # within one machine class; None: used only across classes
    # across machine classes, the default bound in units of the compute dtype's resolution
    # (probes/snapshots/cross_class.py); None: the same-class value applies across classes too
    cross_class_units: float | None = None


@dataclass(frozen=True)
class Section:
    name: str  # the key in a snapshot's "observed", and the name snapshot.leave_out takes
    meaning: str
    observe: Callable[[Subject, Any], Any]  # (subject, the session's results) -> data, or None
    compare: Callable[[Any, Any, Context], list[Difference]]  # (recorded, current, context)
    render: Callable[[str, Any, Any, tuple[str, str]], list[render.Detail]]  # for lm-probes diff
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    leavable: bool = False  # a card may leave it out of its snapshot (a slow model)
    needs_model: bool = True  # False: a tokenizer-only card records it too


# The cross_class_units: default cross-class bounds, in units of the coarser side's compute-dtype resolution
# (torch.finfo(dtype).eps: float32 1.2e-7, float16 9.8e-4, bfloat16 7.8e-3), never below the
# same-class tolerance. Set from the NF4 card, whose five recorded classes (float16
# dequantize, bfloat16 packed, each with and without oneDNN's float16 GEMM and AVX512-FP16;
# docs/machine-classes.md) differ by at most: max |dp| 5.0e-3 (0.64 units of bfloat16),
# KL 2.3e-4 nats, entropies 0.062 nats (7.9 units), hidden-state norms 4.4e-3 relative
# (0.56 units), 1 - cosine 1.1e-4 (0.014 units), embedding cosines 0. Each default is about
# twice the largest measured.
SECTIONS: tuple[Section, ...] = (
    Section(
        "tokenizer",
        "ids of the inputs' texts with and without special tokens, vocabulary size, BOS, the chat template (U1, U6)",
        observe.observe_tokenizer,
        rules.compare_tokenizer,
        render.changed_values,
        needs_model=False,
    ),
    Section(
        "next_token",
        "the top-20 next-token ids and probabilities after the D1 prompt",
        observe.observe_next_token,
        token_rules.compare_next_token,
        render.changed_values,
        tolerances={
            "prob_atol": Tolerance("max |p_now - p_recorded| over the recorded top-20 next tokens", 1e-4, 1.3),
            "kl_max": Tolerance("nats, KL of the two recorded top-20 distributions (rest pooled)", None, 0.06),
        },
    ),
    Section(
        "temperature",
        "the next-token entropy per temperature (D2)",
        observe.observe_temperature,
        rules.compare_temperature,
        render.changed_values,
        tolerances={"entropy_atol": Tolerance("nats, per temperature", 1e-3, 16.0)},
    ),
    Section(
        "greedy",
        "greedy continuations with and without BOS, with per-step margins, runners-up and top-5 ids",
        observe.observe_greedy,
        token_rules.compare_greedy,
        render.greedy_texts,
        tolerances={
            "logit_tie": Tolerance("a greedy flip within this logit gap, on both sides, is a near-tie warning", 0.01)
        },
        leavable=True,
    ),
    Section(
        "embedding",
        "the word groups' sub-word ids, embedding row norms and the cosine matrix",
        observe.observe_embedding,
        rules.compare_embedding,
        render.changed_values,
        tolerances={
            "cosine_atol": Tolerance("per entry of the 20 x 20 cosine matrix", 1e-5, 0.01),
            "norm_rtol": Tolerance("per embedding row norm, relative", 1e-5, 0.01),
        },
        leavable=True,
    ),
    Section(
        "sampled",
        "sampled continuations per regime for the session's seed (compared under the same provenance only)",
        observe.observe_sampled,
        token_rules.compare_sampled,
        render.changed_values,
        leavable=True,
    ),
    Section(
        "first_tokens",
        "generate()'s first-token draws at top_p 0.9, T 1.4 (a homogeneity test across versions)",
        observe.observe_first_tokens,
        token_rules.compare_first_tokens,
        render.changed_values,
        leavable=True,
    ),
    Section(
        "answer_ends",
        "where greedy answers to the answer_ends requests end: at a stop id, or at the budget (U8)",
        observe.observe_answer_ends,
        token_rules.compare_answer_ends,
        render.answer_end_texts,
        leavable=True,
    ),
    Section(
        "generation",
        "what each of the inputs' generate() calls runs with once generation_config is merged (U2)",
        observe.observe_generation,
        rules.compare_generation,
        render.changed_values,
    ),
    Section(
        "hidden_states",
        "per internals prompt and layer, the last token's hidden-state norm and projection (U3)",
        observe.observe_hidden_states,
        rules.compare_hidden_states,
        render.changed_values,
        tolerances={
            "hidden_norm_rtol": Tolerance("per layer, the last token's hidden-state norm (relative)", 1e-4, 1.2),
            "hidden_cosine_atol": Tolerance("per layer, 1 - cosine of the recorded and current projection", 1e-5, 0.03),
        },
    ),
    Section(
        "attention",
        "two attention back-ends' agreement, for a card that names them (U4)",
        observe.observe_attention,
        rules.compare_attention,
        render.changed_values,
        tolerances={
            "backend_prob_atol": Tolerance(
                "attention back-ends: their max |dp| may grow up to this (or 2x the recorded gap)", 1e-4, 1.3
            )
        },
    ),
)


def find(name: str) -> Section | None:
    """The entry of a section (None: a section this version does not know, e.g. a newer snapshot's)."""
    return next((section for section in SECTIONS if section.name == name), None)


# Derived once, for the card schema (which is built at import): the consumers of a snapshot
# read SECTIONS itself, so an entry added there is all they need.
# the sections a card may leave out of its snapshot (snapshot.leave_out)
LEAVABLE: tuple[str, ...] = tuple(s.name for s in SECTIONS if s.leavable)
TOLERANCES: dict[str, Tolerance] = {name: t for s in SECTIONS for name, t in s.tolerances.items()}
# what counts as "the same" within a machine class; a card overrides any under `tolerances:`
DEFAULT_TOLERANCES: dict[str, float] = {n: t.default for n, t in TOLERANCES.items() if t.default is not None}
# across machine classes, in units of the coarser side's compute-dtype resolution
CROSS_CLASS_UNITS: dict[str, float] = {
    n: t.cross_class_units for n, t in TOLERANCES.items() if t.cross_class_units is not None
}
