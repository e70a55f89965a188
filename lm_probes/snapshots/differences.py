"""What a snapshot comparison reports (``Difference``) and what each section's rule is
handed (``Context``): the shared vocabulary of the comparison rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


@dataclass(frozen=True)
class Difference:
    severity: str  # "error" or "warning"
    where: str  # e.g. "greedy.bos"
    message: str

    def __str__(self) -> str:
        return f"[{self.severity}] {self.where}: {self.message}"


@dataclass(frozen=True)
class Context:
    """Everything a section's rule may need besides its own two recordings."""

    tolerances: dict[str, Any]  # the defaults, the card's overrides, and across classes the cross-class bounds
    across: bool = False  # recorded on another machine class: the cross-class rules (snapshots/cross_class.py)
    # the current run's subject, to judge a flip from its logits (its session's results,
    # lm_probes/subjects/results.py); None for two recorded sets
    subject: Subject | None = None
    recorded: dict[str, Any] = field(default_factory=dict)  # both whole observation sets: a rule may read
    current: dict[str, Any] = field(default_factory=dict)  # another section (temperature: the prompt's ids)
    recorded_provenance: dict[str, Any] = field(default_factory=dict)
    current_provenance: dict[str, Any] = field(default_factory=dict)


def first_diff(a: list, b: list) -> int:
    """The first position where two sequences differ (the shorter length if one is a prefix)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
