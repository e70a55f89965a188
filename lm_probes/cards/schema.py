"""The card format, declared: what a card file may hold, with types, defaults and meanings.

A card file is validated against ``CardFile`` when it is read (cards/validation.py turns
pydantic's errors into one message naming the file and each field). Its parts are declared
elsewhere: ``expect:`` in cards/expect_schema.py, ``tokenizer:``/``model:`` by the source
classes in cards/sources.py (a union told apart by ``source:``, of the classes registered below), ``load:`` in
cards/loading.py, and ``snapshot:``/``tolerances:`` by the snapshot's sections
(lm_probes/section_specs.py). The JSON Schema that editors validate card files with
(fixtures/card.schema.json) is generated from these classes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from lm_probes.cards.choices import CARD_NAME_MAX_LENGTH, CARD_NAME_PATTERN
from lm_probes.cards.expect_schema import CardModel, Expect, ProbabilityTolerance, Tolerance
from lm_probes.cards.loading import LoadSettings
from lm_probes.cards.sources import (
    FollowModel,
    GgufFileSource,
    HubSource,
    MistralCommonTokenizer,
    ModelSource,
    PackageGgufSource,
    RandomInitSource,
    Source,
    TokenizerSource,
)
from lm_probes.registry import Registry
from lm_probes.section_specs import REGISTRY as SECTION_SPECS
from lm_probes.section_specs import Tolerance as SectionTolerance
from lm_probes.section_specs import leavable, tolerances

# ------------------------------------------------------------ sources a card may name
# The built-in sources of cards/sources.py, then those a plugin registers from outside the
# package (a conftest, a ``-p`` plugin or an ``lm_probes`` entry point; lm_probes/registry.py).
# ``model:`` and ``tokenizer:`` below validate against these registries.
# ``source:`` tag -> class, for ``model:`` and for ``tokenizer:``
MODEL_SOURCES: Registry[type[Source]] = Registry("model source")
TOKENIZER_SOURCES: Registry[type[Source]] = Registry("tokenizer source")


def source_tag(cls: type[Source]) -> str:
    """The ``source:`` a card writes for this class (its ``source: Literal[...]`` field)."""
    field = cls.model_fields.get("source")
    tags = get_args(field.annotation) if field is not None else ()
    if len(tags) != 1 or not isinstance(tags[0], str):
        raise TypeError(f"{cls.__name__} needs one field `source: Literal['<tag>']`: the tag a card writes")
    return tags[0]


def register_source(cls: type[Source], *, model: bool = False, tokenizer: bool = False, replace: bool = False):
    """Add a source class from outside the package: a card then names it with its tag under
    ``model:`` (it loads weights: ``load_model(options, files, device)``), ``tokenizer:``
    (``load_tokenizer(options, files)``) or both. The card schema takes it at once. A model
    source with ``folder(files)`` (a HubSource of its files) also serves ``tokenizer: {source:
    model}`` and ``--lm-probes-serve``."""
    if not (model or tokenizer):
        raise ValueError(f"{cls.__name__}: register it as a model source, a tokenizer source or both")
    tag = source_tag(cls)
    needs = [("load_model", MODEL_SOURCES)] if model else []
    if tokenizer and cls is not FollowModel:  # the model's own tokenizer: loaded through the model's folder()
        needs.append(("load_tokenizer", TOKENIZER_SOURCES))
    for method, registry in needs:
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"{cls.__name__} is registered as a {registry.kind} but has no {method}()")
    roles = [registry for wanted, registry in ((model, MODEL_SOURCES), (tokenizer, TOKENIZER_SOURCES)) if wanted]
    for registry in roles:  # all or nothing: a taken tag is refused before either role is added
        registry.ensure_free(tag, replace)
    for registry in roles:
        registry.register(tag, cls, replace=replace)
    return cls


def unregister_source(cls: type[Source]) -> None:
    """Remove a source class from the roles it holds (bringing back one it replaced);
    another class under the same tag, a built-in one included, stays."""
    tag = source_tag(cls)
    MODEL_SOURCES.unregister(tag, cls)
    TOKENIZER_SOURCES.unregister(tag, cls)


def source_union(registry: Registry[type[Source]]) -> Any:
    """The pydantic type of a ``model:`` or ``tokenizer:`` section: a union of the registered
    classes told apart by ``source:``."""
    classes = registry.entries()
    if len(classes) == 1:
        return classes[0]
    return Annotated[Union[classes], Field(discriminator="source")]  # noqa: UP007 (a tuple of types)


for _cls in (HubSource, PackageGgufSource, GgufFileSource, RandomInitSource):
    register_source(_cls, model=True)
for _cls in (MistralCommonTokenizer, HubSource, FollowModel):
    register_source(_cls, tokenizer=True)


# A card's name is a file and folder name (lm_probes/cards/choices.py says why and how).
CardName = Annotated[str, Field(pattern=CARD_NAME_PATTERN, max_length=CARD_NAME_MAX_LENGTH)]


class KnownFailure(CardModel):
    test: str = Field(description="the test function's name")
    case: str | None = Field(None, description="one case (parameter id) of the test; absent = every case")
    reason: str = Field(description="why: shown in the report")


# The snapshot's settings come from its section list (lm_probes/section_specs.py): the
# names a card may leave out and every tolerance, with its default and meaning, are declared
# once there, with the section that uses them.
class SnapshotSettings(CardModel):
    leave_out: list[Literal[leavable()]] = Field(  # type: ignore[valid-type]
        [], description="sections left out of this card's snapshot: for a model too slow to decode them all"
    )


def _same_class_field(t: SectionTolerance) -> tuple[Any, Any]:
    return (Tolerance | None, Field(None, description=f"{t.meaning} (default {t.default:.0e})".replace("e-0", "e-")))


def _cross_class_field(t: SectionTolerance) -> tuple[Any, Any]:
    return (Tolerance | None, Field(None, description=t.meaning))


CrossClassTolerances = create_model(
    "CrossClassTolerances",
    __base__=CardModel,
    __doc__="Bounds for comparing with a snapshot of another machine class "
    "(lm_probes/snapshots/cross_class.py), measured between two recorded classes; absent ones default "
    "to the section's cross_class_units x the compute dtype's resolution.",
    **{name: _cross_class_field(t) for name, t in tolerances().items() if t.cross_class_units is not None},
)

Tolerances = create_model(
    "Tolerances",
    __base__=CardModel,
    __doc__="Snapshot comparison tolerances (lm_probes/section_specs.py), overriding the defaults.",
    **{name: _same_class_field(t) for name, t in tolerances().items() if t.default is not None},
    cross_class=(
        CrossClassTolerances | None,
        Field(
            None,
            description="bounds against a snapshot of another machine class, measured (snapshots/cross_class.py)",
        ),
    ),
)

# The serving engines a card may name (served.engine): vLLM, and those plugins register
# (lm_probes/served/engines.py adds an engine's name here with how it starts).
ENGINE_NAMES: Registry[str] = Registry("serving engine")
ENGINE_NAMES.register("vllm", "vLLM's CPU build, in a cached environment of its own")


class ServedParity(CardModel):
    """How close the served model must stay to the in-process one (lm_probes/served/parity.py),
    measured between the two; the rest is compared exactly or by the greedy top-k rule."""

    prob_atol: ProbabilityTolerance = Field(
        description="max |dp| over the top-20 next tokens, served against transformers"
    )
    kl_max: Tolerance = Field(description="nats, KL of the two top-20 next-token distributions")


class Served(CardModel):
    """The card's model behind a serving engine, for parity with transformers (-m served)."""

    engine: Literal[ENGINE_NAMES.names()] = Field(  # type: ignore[valid-type]
        description="the engine lm-probes starts with --lm-probes-serve (vllm: vLLM's CPU build; "
        "or one a plugin registers)"
    )
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
    # a factory, not one instance: the Tolerances class grows when a plugin registers a section
    tolerances: Tolerances = Field(
        default_factory=Tolerances, description="snapshot comparison tolerances, overriding the defaults"
    )
    xfail: list[KnownFailure] = Field(
        [],
        description="known failures, applied as strict xfails: a fix shows up as XPASS and fails the run",
    )
    skip: list[KnownFailure] = Field(
        [],
        description="tests this card does not run, with why: pytest skips, shown in the report (`leave_out:` "
        "before issue 36, still read with a warning)",
    )


# ------------------------------------------------- choices that plugins extend
# A card may name what the registries hold: sections (snapshot.leave_out, tolerances:),
# sources (tokenizer:, model:) and engines (served.engine). When a plugin registers one, the
# fields that list those choices are pointed at the registries again and the models rebuilt,
# innermost first, so the card it writes validates (and a misspelt name is still refused).


def _set_fields(model: type[BaseModel], wanted: dict[str, tuple[Any, Any]], keep: tuple[str, ...] = ()) -> None:
    fields = model.model_fields
    for name in [n for n in fields if n not in wanted and n not in keep]:
        del fields[name]
    for name, (annotation, default) in wanted.items():
        if name not in fields:
            fields[name] = FieldInfo.from_annotated_attribute(annotation, default)


def _rebuild() -> None:
    named = tolerances()
    SnapshotSettings.model_fields["leave_out"].annotation = list[Literal[leavable()]]  # type: ignore[valid-type]
    _set_fields(
        CrossClassTolerances,
        {n: _cross_class_field(t) for n, t in named.items() if t.cross_class_units is not None},
    )
    _set_fields(
        Tolerances, {n: _same_class_field(t) for n, t in named.items() if t.default is not None}, keep=("cross_class",)
    )
    Served.model_fields["engine"].annotation = Literal[ENGINE_NAMES.names()]  # type: ignore[valid-type]
    cards = (CardFile, *CardFile.__subclasses__())  # the Card the suite runs (cards/card.py) is one
    for card in cards:
        card.model_fields["tokenizer"].annotation = source_union(TOKENIZER_SOURCES)
        card.model_fields["model"].annotation = source_union(MODEL_SOURCES) | None
    for model in (SnapshotSettings, CrossClassTolerances, Tolerances, Served, *cards):
        model.model_rebuild(force=True)


for _registry in (SECTION_SPECS, MODEL_SOURCES, TOKENIZER_SOURCES, ENGINE_NAMES):
    _registry.listen(_rebuild)
