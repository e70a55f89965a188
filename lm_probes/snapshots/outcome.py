"""What the snapshot check of one card found (snapshots/check.py makes it): light, so that
the plugin's session record can carry outcomes between xdist workers without importing the
comparison and the probes behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lm_probes.snapshots.differences import Difference


@dataclass(frozen=True)
class SnapshotOutcome:
    """What the snapshot check of one card found. The test turns it into a pass, a skip
    or a failure; the report's "Changes since snapshot" reads it (sent from an xdist
    worker to the controller as JSON: ``as_json`` / ``from_json``)."""

    card: str
    verdict: str  # "recorded", "passed", "skipped" (no snapshot for this machine class yet), "failed"
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
