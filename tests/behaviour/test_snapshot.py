"""Did anything change since the recorded snapshot? (after an upgrade of transformers,
torch or the model). Record with --lm-probes-snapshot-update; compare is the default."""

from __future__ import annotations

import warnings

import pytest

from lm_probes import SnapshotWarning


def test_matches_snapshot(lm_probes_loaded_subject, lm_probes_snapshot, lm_probes_attach):
    """The `snapshot` fixture records or compares (lm_probes/snapshots/ SnapshotCheck) and
    keeps the outcome for the report; this test turns the outcome into its verdict."""
    outcome = lm_probes_snapshot.check(lm_probes_loaded_subject)
    if outcome.verdict == "skipped":
        pytest.skip(outcome.message)
    if outcome.current_provenance:  # compared: what differed, for the report
        lm_probes_attach.text(
            outcome.summary + "".join(f"\n{d}" for d in outcome.differences), name="snapshot comparison"
        )
    for d in outcome.warnings:
        warnings.warn(SnapshotWarning(f"{outcome.card}: {d}"), stacklevel=1)
    if outcome.verdict == "failed":
        pytest.fail(outcome.message, pytrace=False)
