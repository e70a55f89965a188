"""The snapshot's sections as plain data: each one's name, what it holds, the tolerances its
comparison reads (defaults a card overrides under ``snapshot.tolerances``) and whether a card
may leave it out or records it without a model.

This is the bottom of the house: it imports nothing of probes but the registry, so the card schema (stage 1)
and the snapshot stage (lm_probes/snapshots/sections.py, which gives each section how it is
observed, compared and shown) both read it, and data flows one way. Adding a section is an
entry here and its behaviour there (docs/development.md); a plugin adds one from outside
the package with ``lm_probes.snapshots.sections.register`` (both at once)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lm_probes.registry import Registry


@dataclass(frozen=True)
class Tolerance:
    """One number a section's rule compares against."""

    meaning: str
    default: float | None  # within one machine class; None: used only across classes
    # across machine classes, the default bound in units of the compute dtype's resolution
    # (lm_probes/snapshots/cross_class.py); None: the same-class value applies across classes too
    cross_class_units: float | None = None


@dataclass(frozen=True)
class SectionSpec:
    name: str  # the key in a snapshot's "observed", and the name snapshot.leave_out takes
    meaning: str
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
SPECS: tuple[SectionSpec, ...] = (
    SectionSpec(
        "tokenizer",
        "ids of the inputs' texts with and without special tokens, vocabulary size, BOS, the chat template (U1, U6)",
        needs_model=False,
    ),
    SectionSpec(
        "next_token",
        "the top-20 next-token ids and probabilities after the D1 prompt",
        tolerances={
            "prob_atol": Tolerance("max |p_now - p_recorded| over the recorded top-20 next tokens", 1e-4, 1.3),
            "kl_max": Tolerance("nats, KL of the two recorded top-20 distributions (rest pooled)", None, 0.06),
        },
    ),
    SectionSpec(
        "temperature",
        "the next-token entropy per temperature (D2)",
        tolerances={"entropy_atol": Tolerance("nats, per temperature", 1e-3, 16.0)},
    ),
    SectionSpec(
        "greedy",
        "greedy continuations with and without BOS, with per-step margins, runners-up and top-5 ids",
        tolerances={
            "logit_tie": Tolerance("a greedy flip within this logit gap, on both sides, is a near-tie warning", 0.01)
        },
        leavable=True,
    ),
    SectionSpec(
        "embedding",
        "the word groups' sub-word ids, embedding row norms and the cosine matrix",
        tolerances={
            "cosine_atol": Tolerance("per entry of the 20 x 20 cosine matrix", 1e-5, 0.01),
            "norm_rtol": Tolerance("per embedding row norm, relative", 1e-5, 0.01),
        },
        leavable=True,
    ),
    SectionSpec(
        "sampled",
        "sampled continuations per regime for the session's seed (compared under the same provenance only)",
        leavable=True,
    ),
    SectionSpec(
        "first_tokens",
        "generate()'s first-token draws at top_p 0.9, T 1.4 (a homogeneity test across versions)",
        leavable=True,
    ),
    SectionSpec(
        "answer_ends",
        "where greedy answers to the answer_ends requests end: at a stop id, or at the budget (U8)",
        leavable=True,
    ),
    SectionSpec(
        "generation",
        "what each of the inputs' generate() calls runs with once generation_config is merged (U2)",
    ),
    SectionSpec(
        "hidden_states",
        "per internals prompt and layer, the last token's hidden-state norm and projection (U3)",
        tolerances={
            "hidden_norm_rtol": Tolerance("per layer, the last token's hidden-state norm (relative)", 1e-4, 1.2),
            "hidden_cosine_atol": Tolerance("per layer, 1 - cosine of the recorded and current projection", 1e-5, 0.03),
        },
    ),
    SectionSpec(
        "attention",
        "two attention back-ends' agreement, for a card that names them (U4)",
        tolerances={
            "backend_prob_atol": Tolerance(
                "attention back-ends: their max |dp| may grow up to this (or 2x the recorded gap)", 1e-4, 1.3
            )
        },
    ),
)


# every section a card may name: the built-in ones above, then those plugins register
# (lm_probes/snapshots/sections.py:register adds a section's spec and its behaviour together)
REGISTRY: Registry[SectionSpec] = Registry("snapshot section")
for _spec in SPECS:
    REGISTRY.register(_spec.name, _spec)


def specs() -> tuple[SectionSpec, ...]:
    """Every section's spec, built-in ones first."""
    return REGISTRY.entries()


def spec(name: str) -> SectionSpec | None:
    """A section's entry (None: a section this version does not know, e.g. a newer snapshot's)."""
    return REGISTRY.find(name)


def leavable() -> tuple[str, ...]:
    """The sections a card may leave out of its snapshot (snapshot.leave_out)."""
    return tuple(s.name for s in specs() if s.leavable)


def tolerances() -> dict[str, Tolerance]:
    """Every tolerance a section's rule reads, by the name a card overrides it with."""
    return {name: t for s in specs() for name, t in s.tolerances.items()}


def default_tolerances() -> dict[str, float]:
    """What counts as "the same" within a machine class; a card overrides any under ``tolerances:``."""
    return {n: t.default for n, t in tolerances().items() if t.default is not None}


def cross_class_units() -> dict[str, float]:
    """Across machine classes, each bound in units of the coarser side's compute-dtype resolution."""
    return {n: t.cross_class_units for n, t in tolerances().items() if t.cross_class_units is not None}
