"""The snapshot check behind the ``snapshot`` fixture: record, or compare with the nearest
recorded machine class, and keep each card's outcome for the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lm_probes.numerics import nearest_class
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots.compare import SnapshotShapeError, compare, summary_line
from lm_probes.snapshots.outcome import SnapshotOutcome
from lm_probes.snapshots.record import (
    SnapshotError,
    load,
    observe,
    provenance,
    record,
    recorded_classes,
    snapshot_path,
    unrecorded_device_class,
)
from lm_probes.snapshots.token_rules import why_samples_not_comparable

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


@dataclass
class SnapshotCheck:
    """The ``snapshot`` fixture: records (``--lm-probes-snapshot-update``) or compares a subject's
    observations with its snapshot under ``directory``, and keeps each card's outcome for
    the report (as ``data_regression.check`` and syrupy's ``snapshot`` own theirs)."""

    directory: Path = SNAPSHOT_DIR
    update: bool = False
    dir_option: str = ""  # " --lm-probes-snapshot-dir DIR" when not the default, for the record command
    outcomes: dict[str, SnapshotOutcome] = field(default_factory=dict)
    # the class a subject is recorded under and compared as (None: its fingerprint's), and the
    # recorded class to compare with where its own is not recorded: the plugin passes the
    # user's hooks here (lm_probes/plugin/hookspecs.py)
    machine_class_of: Callable[[Subject], str | None] = lambda subject: None
    compare_with: Callable[[str, list[str]], str | None] = nearest_class

    def record_command(self, subject: Subject) -> str:
        return (
            f"pytest tests/behaviour/test_snapshot.py --lm-probes-card {subject.name} "
            f"--lm-probes-snapshot-update{self.dir_option}"
        )

    def check(self, subject: Subject) -> SnapshotOutcome:
        outcome = self._check(subject)
        self.outcomes[subject.name] = outcome
        return outcome

    def _check(self, subject: Subject) -> SnapshotOutcome:
        own_class = self.machine_class_of(subject) or subject.machine_class
        path = snapshot_path(subject, self.directory, own_class)
        if self.update:
            try:
                record(subject, self.directory, own_class)
            except SnapshotError as exc:  # another model's baseline is there: kept, and the test fails saying so
                return SnapshotOutcome(subject.name, "failed", "not recorded", message=str(exc), summary=str(exc))
            return SnapshotOutcome(subject.name, "recorded", f"recorded {path}")
        hint = self.record_command(subject)
        if not path.is_file():
            # this machine class is not recorded: compare with the nearest one that is,
            # under the cross-class rules (strict again once its own class is recorded)
            nearest = self.compare_with(own_class, recorded_classes(path.parent))
            if nearest is not None:
                path = path.parent / f"{nearest}.json"
        unrecorded = unrecorded_device_class(path)
        if unrecorded:
            return SnapshotOutcome(
                subject.name,
                "skipped",
                "no snapshot for this machine class yet",
                message=f"{subject.name}: {unrecorded}. Record one on this machine with: {hint}",
                summary=unrecorded,
            )
        try:
            recorded = load(path, hint, card=subject.name)
        except SnapshotError as exc:
            return SnapshotOutcome(subject.name, "failed", "no usable snapshot", message=str(exc), summary=str(exc))
        current_prov = provenance(subject)
        classes = (path.stem, own_class)
        try:
            differences = tuple(
                compare(
                    recorded["observed"],
                    observe(subject),
                    tolerances=subject.card.tolerance_overrides,
                    subject=subject,
                    recorded_provenance=recorded["provenance"],
                    current_provenance=current_prov,
                    classes=classes,
                )
            )
        except SnapshotShapeError as exc:
            message = f"snapshot {path}: {exc}. Re-record it with: {hint}"
            return SnapshotOutcome(subject.name, "failed", "no usable snapshot", message=message, summary=message)
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
