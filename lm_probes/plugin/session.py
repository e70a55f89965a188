"""What lm-probes keeps of one pytest session, in one object (``SessionRecord``), as
pytest-benchmark and syrupy keep theirs: the selected cards, the loaded subjects, what the
tests put in the report, the observations' outcomes and the snapshot outcomes. Under
pytest-xdist each worker sends its record to the controller as JSON (``to_json``), and the
controller merges them (``merge``) before it writes the report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lm_probes.cards.card import Card
    from lm_probes.snapshots.outcome import SnapshotOutcome
    from lm_probes.subjects.subject import Subject


@dataclass
class SessionRecord:
    # whether this session uses lm-probes (one of its options, or a collected test that uses
    # its fixtures): until then the plugin reads no card and imports no torch
    in_use: bool = False
    cards: list[Card] | None = None  # the selected cards, read and validated on first use
    subjects: dict[str, Subject] = field(default_factory=dict)  # card -> its subject, loaded once
    # the report summary's heading -> card -> HTML fragments that tests put under it
    fragments: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # (card, observation id) -> outcomes of the tests that check it
    outcomes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # card -> what its snapshot test found, for the report's "Changes since snapshot"
    snapshots: dict[str, SnapshotOutcome] = field(default_factory=dict)
    # card -> its row of the report's "Subjects" table, as sent by pytest-xdist workers
    worker_subject_rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    # card -> the server --lm-probes-serve started for it (stopped at the session's end)
    servers: dict[str, Any] = field(default_factory=dict)
    # each benchmark test's figures (its `benchmark` fixture's stats), for the report's table;
    # not sent by xdist workers: pytest-benchmark turns itself off under xdist
    benchmarks: list[Any] = field(default_factory=list)

    def stop_servers(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def add_fragment(self, heading: str, card: str, content: str) -> None:
        self.fragments.setdefault(heading, {}).setdefault(card, []).append(content)

    def add_outcome(self, card: str, observation: str, state: str) -> None:
        self.outcomes.setdefault((card, observation), []).append(state)

    def add_test_outcome(self, item: pytest.Item, report: pytest.TestReport, card: str) -> None:
        """A behaviour test's outcome, under each observation its marker (or its case) names."""
        marker = item.get_closest_marker("observation")
        # the call phase decides, unless setup already failed or skipped
        if marker is None or not (report.when == "call" or (report.when == "setup" and not report.passed)):
            return
        state = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
        if hasattr(report, "wasxfail") and report.passed:
            state = "xpassed"
        # a case may name its own observation (encode cases: T1, T2 or T3)
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        observations = [case["observation"]] if isinstance(case, dict) and case.get("observation") else marker.args
        for observation in observations:
            self.add_outcome(card, observation, state)

    def subject_rows(self) -> list[dict[str, Any]]:
        """The Subjects table: this process's subjects and those the workers sent, by card."""
        rows = {name: subject_row(subject) for name, subject in self.subjects.items()} | self.worker_subject_rows
        return [rows[name] for name in sorted(rows)]

    def to_json(self, torch_runtime: dict[str, str]) -> str:
        """What a pytest-xdist worker sends the controller (execnet carries plain data only)."""
        return json.dumps(
            {
                "torch_runtime": torch_runtime,
                "subject_rows": {name: subject_row(subject) for name, subject in self.subjects.items()},
                "fragments": self.fragments,
                "outcomes": [[card, obs, states] for (card, obs), states in self.outcomes.items()],
                "snapshots": {card: outcome.as_json() for card, outcome in self.snapshots.items()},
            },
            default=str,
        )

    def merge(self, sent: str) -> dict[str, str]:
        """A worker's record merged into this (the controller's); returns the torch figures
        the worker ran with, for the report's environment table."""
        from lm_probes.snapshots.outcome import SnapshotOutcome

        data = json.loads(sent)
        self.in_use = True  # a worker ran tests of ours: the controller's report shows them
        self.worker_subject_rows.update(data["subject_rows"])
        for heading, by_card in data["fragments"].items():
            for card, fragments in by_card.items():
                self.fragments.setdefault(heading, {}).setdefault(card, []).extend(fragments)
        for card, obs, states in data["outcomes"]:
            self.outcomes.setdefault((card, obs), []).extend(states)
        self.snapshots.update({card: SnapshotOutcome.from_json(o) for card, o in data["snapshots"].items()})
        return data["torch_runtime"]


RECORD = pytest.StashKey[SessionRecord]()


def record_of(config: pytest.Config) -> SessionRecord:
    return config.stash[RECORD]


def is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


def subject_row(subject: Subject) -> dict[str, Any]:
    """A loaded card's row of the Subjects table, as data (sent as JSON by an xdist worker)."""
    p = subject.provenance
    row = {k: str(v) for k, v in (("card", p.card), ("model_source", p.model_source), ("device", p.device))}
    row |= {"dtype": str(p.dtype), "quantization": str(p.quantization), "revision": str(p.revision or "-")}
    # the numerics fingerprint once the model is loaded (reading it never loads one)
    numerics = subject.loaded_numerics
    row |= {
        "machine_class": subject.machine_class if numerics else "-",
        "numerics": numerics.describe() if numerics else "-",
    }
    return row | {"files": dict(p.files), "peak_rss": peak_rss_of(subject)}


def peak_rss_of(subject: Subject) -> dict[str, dict[str, object]]:
    """The peak RSS of each of the subject's steps this process saw (lm_probes/memory.py): the
    conversion of its GGUF file (keyed by the file's digest), its load and its probes."""
    from lm_probes import memory

    steps: dict[str, memory.Peak] = {}
    for digest in subject.provenance.files.values():
        steps |= memory.peaks(memory.file_key(digest))
    steps |= memory.peaks(subject.name)
    return {name: peak.as_json() for name, peak in steps.items()}
