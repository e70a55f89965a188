"""What lm-probes reads off a collected test item: whether it uses lm-probes at all, and the
card and case it was parametrized with (nothing here reads a card)."""

from __future__ import annotations

from typing import Any

import pytest

# the fixtures lm-probes parametrizes over cards (model_subject: cards with a model only)
SUBJECT_FIXTURES = ("subject", "model_subject", "loaded_subject")


def uses_lm_probes(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return any(f in fixtures for f in (*SUBJECT_FIXTURES, "snapshot")) or bool(item.get_closest_marker("observation"))


def case_id(case: Any) -> str:
    """A case is a mapping with an ``id`` or a plain value (a group name) that is its own id."""
    return str(case["id"]) if isinstance(case, dict) else str(case)


def card_of(item: pytest.Item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    # an empty parameter set (no selected card has the field) leaves a non-str NOTSET here
    return next((params[f] for f in SUBJECT_FIXTURES if isinstance(params.get(f), str)), None)
