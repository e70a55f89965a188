"""What lm-probes reads off a collected test item: whether it uses lm-probes at all, and the
card and case it was parametrized with (nothing here reads a card)."""

from __future__ import annotations

from typing import Any

import pytest

# the fixtures lm-probes parametrizes over cards (lm_probes_model_subject: cards with a model only).
# Every fixture of lm-probes starts with lm_probes_: the plugin loads in every session of the
# environment, where `snapshot` is syrupy's and `subject` may be a host project's own.
SUBJECT_FIXTURES = ("lm_probes_subject", "lm_probes_model_subject", "lm_probes_loaded_subject")
SNAPSHOT_FIXTURE = "lm_probes_snapshot"


def uses_lm_probes(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return any(f in fixtures for f in (*SUBJECT_FIXTURES, SNAPSHOT_FIXTURE)) or bool(
        item.get_closest_marker("observation")
    )


def case_id(case: Any) -> str:
    """A case is a mapping with an ``id`` or a plain value (a group name) that is its own id."""
    return str(case["id"]) if isinstance(case, dict) else str(case)


def card_of(item: pytest.Item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    # an empty parameter set (no selected card has the field) leaves a non-str NOTSET here
    return next((params[f] for f in SUBJECT_FIXTURES if isinstance(params.get(f), str)), None)
