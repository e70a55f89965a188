"""The sections of a snapshot, with how each is observed, compared and shown.

A snapshot (``fixtures/snapshots/<card>/<machine class>.json``) is a dict of sections. Each
entry says how its section is observed from a subject (snapshots/observe.py), how two
recordings of it are compared, within a machine class and across classes
(snapshots/rules.py, snapshots/token_rules.py), the tolerances that comparison reads
(defaults a card overrides under ``tolerances:``), whether a card may leave the section out
(``snapshot.leave_out``), and how ``lm-probes diff`` shows a change (report/section_changes.py).
What a section is (its name, tolerances, whether a card may leave it out) is plain data at
the bottom of the house, lm_probes/section_specs.py, which the card schema reads too; this
module adds how each is observed, compared and shown. Adding a built-in section is an entry
there, its behaviour here, and its test; a plugin adds one from outside with ``register``
(docs/development.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lm_probes import section_specs
from lm_probes.registry import Registry
from lm_probes.report import section_changes
from lm_probes.section_specs import SPECS, SectionSpec, Tolerance
from lm_probes.served import observe as served_observe
from lm_probes.snapshots import observe, rules, token_rules

if TYPE_CHECKING:
    from lm_probes.served.client import Endpoint
    from lm_probes.snapshots.differences import Context, Difference
    from lm_probes.subjects.subject import Subject


@dataclass(frozen=True)
class Section:
    name: str  # the key in a snapshot's "observed", and the name snapshot.leave_out takes
    meaning: str
    observe: Callable[[Subject], Any]  # subject -> data (read from its session's results), or None
    compare: Callable[[Any, Any, Context], list[Difference]]  # (recorded, current, context)
    render: Callable[[str, Any, Any, tuple[str, str]], list[section_changes.Detail]]  # for lm-probes diff
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    leavable: bool = False  # a card may leave it out of its snapshot (a slow model)
    needs_model: bool = True  # False: a tokenizer-only card records it too
    # (endpoint, the in-process recording) -> what a server shows of it, for served parity
    # (lm_probes/served/observe.py); None: not something an OpenAI-compatible server shows
    observe_served: Callable[[Endpoint, Any], Any] | None = None


# How each section of lm_probes/section_specs.py is observed, compared and shown.
BEHAVIOUR: dict[str, tuple[Callable, Callable, Callable]] = {
    "tokenizer": (observe.observe_tokenizer, rules.compare_tokenizer, section_changes.changed_values),
    "next_token": (observe.observe_next_token, token_rules.compare_next_token, section_changes.changed_values),
    "temperature": (observe.observe_temperature, rules.compare_temperature, section_changes.changed_values),
    "greedy": (observe.observe_greedy, token_rules.compare_greedy, section_changes.greedy_texts),
    "embedding": (observe.observe_embedding, rules.compare_embedding, section_changes.changed_values),
    "sampled": (observe.observe_sampled, token_rules.compare_sampled, section_changes.changed_values),
    "first_tokens": (observe.observe_first_tokens, token_rules.compare_first_tokens, section_changes.changed_values),
    "answer_ends": (observe.observe_answer_ends, token_rules.compare_answer_ends, section_changes.answer_end_texts),
    "generation": (observe.observe_generation, rules.compare_generation, section_changes.changed_values),
    "hidden_states": (observe.observe_hidden_states, rules.compare_hidden_states, section_changes.changed_values),
    "attention": (observe.observe_attention, rules.compare_attention, section_changes.changed_values),
}


# the sections with their behaviour, by name: the built-in ones, then those plugins register
REGISTRY: Registry[Section] = Registry("snapshot section")


# keys of a card's tolerances: that are not a section's tolerance
RESERVED_TOLERANCE_NAMES = ("cross_class",)


def register(section: Section, *, replace: bool = False) -> Section:
    """Add a section from outside the package (a conftest, a ``-p`` plugin or an
    ``lm_probes`` entry point; lm_probes/registry.py): its spec joins what cards may name
    (``snapshot.leave_out``, ``tolerances:``) and its behaviour what snapshots record,
    compare and show. docs/extending.md has an example. A tolerance name another section
    uses is refused: one card key would set both."""
    owners = {
        t: s.name for s in section_specs.specs() for t in s.tolerances if not (replace and s.name == section.name)
    }
    for name in section.tolerances:
        if name in owners or name in RESERVED_TOLERANCE_NAMES:
            owner = f"section '{owners[name]}'" if name in owners else "the card schema"
            raise ValueError(f"section '{section.name}': the tolerance name '{name}' is taken by {owner}; name it anew")
    spec = SectionSpec(section.name, section.meaning, section.tolerances, section.leavable, section.needs_model)
    for registry in (section_specs.REGISTRY, REGISTRY):  # both halves or neither
        registry.ensure_free(section.name, replace)
    section_specs.REGISTRY.register(section.name, spec, replace=replace)
    return REGISTRY.register(section.name, section, replace=replace)


def unregister(name: str) -> None:
    REGISTRY.unregister(name)
    section_specs.REGISTRY.unregister(name)


def all_sections() -> tuple[Section, ...]:
    """Every section, built-in ones first, in the order a snapshot records them."""
    return REGISTRY.entries()


def find(name: str) -> Section | None:
    """The entry of a section (None: a section this version does not know, e.g. a newer snapshot's)."""
    return REGISTRY.find(name)


# How a server shows the sections it can (served parity); the rest have no served side.
SERVED: dict[str, Callable] = {
    "tokenizer": served_observe.served_tokenizer,
    "next_token": served_observe.served_next_token,
    "greedy": served_observe.served_greedy,
    "answer_ends": served_observe.served_answer_ends,
}


def _built_in(entry: SectionSpec) -> Section:
    observe_, compare, render_ = BEHAVIOUR[entry.name]
    return Section(
        entry.name,
        entry.meaning,
        observe_,
        compare,
        render_,
        tolerances=entry.tolerances,
        leavable=entry.leavable,
        needs_model=entry.needs_model,
        observe_served=SERVED.get(entry.name),
    )


for _spec in SPECS:
    REGISTRY.register(_spec.name, _built_in(_spec))
