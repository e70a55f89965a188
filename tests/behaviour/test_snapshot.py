"""Did anything change since the recorded snapshot? (after an upgrade of transformers,
torch or the model). Record with --snapshot-update; compare is the default."""

from __future__ import annotations

import warnings

import pytest

from probes import snapshots


def test_matches_snapshot(loaded_subject, snapshot_settings, attach):
    subject = loaded_subject
    path = snapshots.snapshot_path(subject, snapshot_settings["dir"])
    results = snapshot_settings["results"]
    if snapshot_settings["update"]:
        snapshots.record(subject, snapshot_settings["dir"])
        results[subject.name] = {"status": f"recorded {path}"}
        return
    hint = (
        f"pytest tests/behaviour/test_snapshot.py --card {subject.name} "
        f"--snapshot-update{snapshot_settings['dir_option']}"
    )
    unrecorded = snapshots.unrecorded_device_class(path)
    if unrecorded:
        results[subject.name] = {"status": "no snapshot for this device class yet", "summary": unrecorded}
        pytest.skip(f"{subject.name}: {unrecorded}. Record one on this machine with: {hint}")
    try:
        recorded = snapshots.load(path, hint)
    except snapshots.SnapshotError as exc:
        results[subject.name] = {"status": "no usable snapshot", "summary": str(exc)}
        pytest.fail(str(exc), pytrace=False)
    current_prov = snapshots.provenance(subject)
    current = snapshots.observe(subject)
    differences = snapshots.compare(
        recorded["observed"],
        current,
        tolerances=subject.card.tolerances,
        subject=subject,
        recorded_provenance=recorded["provenance"],
        current_provenance=current_prov,
    )
    summary = snapshots.summary_line(recorded["provenance"], current_prov, differences)
    not_compared = snapshots.sampling_comparable(recorded["provenance"], current_prov)
    results[subject.name] = {
        "status": f"compared with {path.name}",
        "summary": summary,
        "recorded_provenance": recorded["provenance"],
        "current_provenance": current_prov,
        "differences": differences,
        "not_compared": ", ".join(not_compared),
    }
    attach.text(summary + "".join(f"\n{d}" for d in differences), name="snapshot comparison")
    for d in differences:
        if d.severity == "warning":
            warnings.warn(snapshots.SnapshotWarning(f"{subject.name}: {d}"), stacklevel=1)
    errors = [d for d in differences if d.severity == "error"]
    if errors:
        pytest.fail(
            f"{subject.name} differs from its snapshot {path}\n  {summary}\n"
            + "\n".join(f"  {d}" for d in errors)
            + f"\nIf the change is intended, re-record with: {hint}",
            pytrace=False,
        )
