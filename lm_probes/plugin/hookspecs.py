"""The hooks a user's conftest.py (or plugin) may implement to change how snapshots are
matched to machines, as pytest-benchmark lets ``pytest_benchmark_generate_machine_info`` and
``pytest_benchmark_compare_machine_info`` be overridden. Both are first-result hooks: the
first implementation that returns something other than None decides; without one, the
numerics fingerprint's own class and the nearest recorded class (lm_probes/numerics.py) apply."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


@pytest.hookspec(firstresult=True)
def pytest_lm_probes_machine_class(config: pytest.Config, subject: Subject, fingerprint_class: str) -> str | None:
    """The machine class a subject's snapshot is recorded under and compared as, e.g. one
    name for a fleet of machines that compute alike, or the fingerprint's class with a driver
    version added. Return None to keep ``fingerprint_class``."""


@pytest.hookspec(firstresult=True)
def pytest_lm_probes_compare_with(config: pytest.Config, own_class: str, recorded_classes: list[str]) -> str | None:
    """Where this machine's class is not recorded: the recorded class to compare with under
    the cross-class rules. Return None to take the nearest (``numerics.nearest_class``)."""
