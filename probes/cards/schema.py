"""The card format, declared: what a card file may hold, with types, defaults and meanings.

A card file is validated against ``CardFile`` when it is read (cards/validation.py turns
pydantic's errors into one message naming the file and each field). Its parts are declared
elsewhere: ``expect:`` in cards/expect_schema.py, ``tokenizer:``/``model:`` by the source
classes in cards/sources.py (a union told apart by ``source:``), ``load:`` in
cards/loading.py, and ``snapshot:``/``tolerances:`` by the snapshot's sections
(probes/section_specs.py). The JSON Schema that editors validate card files with
(fixtures/card.schema.json) is generated from these classes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, create_model

from probes.cards.choices import CARD_NAME_MAX_LENGTH, CARD_NAME_PATTERN
from probes.cards.expect_schema import CardModel, Expect, ProbabilityTolerance, Tolerance
from probes.cards.loading import LoadSettings
from probes.cards.sources import ModelSource, TokenizerSource
from probes.section_specs import LEAVABLE, TOLERANCES

# A card's name is a file and folder name (probes/cards/choices.py says why and how).
CardName = Annotated[str, Field(pattern=CARD_NAME_PATTERN, max_length=CARD_NAME_MAX_LENGTH)]


class KnownFailure(CardModel):
    test: str = Field(description="the test function's name")
    case: str | None = Field(None, description="one case (parameter id) of the test; absent = every case")
    reason: str = Field(description="why: shown in the report")


# The snapshot's settings come from its section list (probes/section_specs.py): the
# names a card may leave out and every tolerance, with its default and meaning, are declared
# once there, with the section that uses them.
class SnapshotSettings(CardModel):
    leave_out: list[Literal[LEAVABLE]] = Field(  # type: ignore[valid-type]
        [], description="sections left out of this card's snapshot: for a model too slow to decode them all"
    )


CrossClassTolerances = create_model(
    "CrossClassTolerances",
    __base__=CardModel,
    __doc__="Bounds for comparing with a snapshot of another machine class "
    "(probes/snapshots/cross_class.py), measured between two recorded classes; absent ones default "
    "to the section's cross_class_units x the compute dtype's resolution.",
    **{
        name: (Tolerance | None, Field(None, description=t.meaning))
        for name, t in TOLERANCES.items()
        if t.cross_class_units is not None
    },
)

Tolerances = create_model(
    "Tolerances",
    __base__=CardModel,
    __doc__="Snapshot comparison tolerances (probes/section_specs.py), overriding the defaults.",
    **{
        name: (Tolerance | None, Field(None, description=f"{t.meaning} (default {t.default:.0e})".replace("e-0", "e-")))
        for name, t in TOLERANCES.items()
        if t.default is not None
    },
    cross_class=(
        CrossClassTolerances | None,
        Field(
            None,
            description="bounds against a snapshot of another machine class, measured (snapshots/cross_class.py)",
        ),
    ),
)


class ServedParity(CardModel):
    """How close the served model must stay to the in-process one (probes/served/parity.py),
    measured between the two; the rest is compared exactly or by the greedy top-k rule."""

    prob_atol: ProbabilityTolerance = Field(
        description="max |dp| over the top-20 next tokens, served against transformers"
    )
    kl_max: Tolerance = Field(description="nats, KL of the two top-20 next-token distributions")


class Served(CardModel):
    """The card's model behind a serving engine, for parity with transformers (-m served)."""

    engine: Literal["vllm"] = Field(description="the engine lm-probes starts with --serve (vLLM's CPU build)")
    args: list[str] = Field([], description="the server's own arguments (beyond model, host and port)")
    parity: ServedParity = Field(description="bounds of the served-against-transformers comparison, measured")
    bare_request: Literal["sampled", "greedy"] = Field(
        description="what a completion request without sampling fields does on this server, measured: sampled "
        "(the OpenAI default, temperature 1: vLLM started with --generation-config vllm) or greedy"
    )


class CardFile(CardModel):
    """One model card: what to load, how, and what to expect (fixtures/cards/<name>.yaml)."""

    name: CardName = Field(description="must match the file name; one path component: letters, digits, '.', '_', '-'")
    description: str = Field(description="what the model is and where its expected values came from")
    marks: list[Literal["gpu", "slow"]] = Field(
        [],
        description="pytest marks every test of this card carries: gpu (runs with -m gpu), slow (an opt-in "
        "card: runs only with -m slow)",
    )
    tokenizer: TokenizerSource = Field(description="where the tokenizer comes from (a source: see below)")
    model: ModelSource | None = Field(None, description="where the weights come from; absent = tokenizer only")
    load: LoadSettings = Field(LoadSettings(), description="device, dtype and quantization of the model")
    expect: Expect = Field(
        Expect(), description="expected values, keyed by probe: only the sections present are checked"
    )
    reference: CardName | None = Field(None, description="a full-precision card of the same weights, for expect.drift")
    snapshot: SnapshotSettings = Field(SnapshotSettings(), description="what the card's snapshot leaves out")
    served: Served | None = Field(None, description="the model behind a serving engine, for parity (-m served)")
    tolerances: Tolerances = Field(Tolerances(), description="snapshot comparison tolerances, overriding the defaults")
    xfail: list[KnownFailure] = Field(
        [],
        description="known failures, applied as strict xfails: a fix shows up as XPASS and fails the run",
    )
    leave_out: list[KnownFailure] = Field(
        [], description="tests this card does not run, with why (shown as skips in the report)"
    )
