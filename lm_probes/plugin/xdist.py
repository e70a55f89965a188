"""Under ``pytest -n N`` (make test) the tests run in worker processes. Every test of one
card runs in one worker, so its model loads once and each probe result is computed once:
the scheduler here hands out all the tests of one card as one unit of work and every other
test on its own. (xdist's own ``--dist loadgroup`` would do it with marks, but xdist 3.8
cannot rename node ids under pytest 9, so those marks have no effect.) Imported only when
pytest-xdist asks for a scheduler."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from lm_probes.plugin.selection import selected_cards


class OneWorkerPerCard(LoadScopeScheduling):
    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self._config = config

    @functools.cached_property
    def _cards(self) -> tuple[list[str], dict[str, str]]:
        # read on the first parametrized test id: a session without one reads no card
        selected = {c.name: c for c in selected_cards(self._config)}
        # longest first: a card whose name starts with another card's name is matched whole
        names = sorted(selected, key=len, reverse=True)
        # a quantized card runs beside its selected reference: the drift probe then reuses
        # the reference's loaded model and results instead of loading it in a second worker
        return names, {n: (c.reference if c.reference in selected else n) for n, c in selected.items()}

    def _split_scope(self, nodeid: str) -> str:
        # a behaviour test's id starts with its card: test_x[smollm2-135m-instruct-bos]
        params = nodeid.partition("[")[2]
        if not params:
            return nodeid
        names, unit = self._cards
        card = next((n for n in names if params.startswith((n + "-", n + "]"))), None)
        return f"card {unit[card]}" if card else nodeid
