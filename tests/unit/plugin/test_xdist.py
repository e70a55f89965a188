"""lm_probes/plugin/xdist.py: under ``pytest -n N`` every test of one card is one unit of
work, a quantized card's beside its selected reference, and every other test its own
(issue 36: a test file per module; the scheduler at work is test_plugin_report.py's run
with two workers)."""

from __future__ import annotations

import pytest

from lm_probes.cards.card import find_card
from lm_probes.plugin import xdist


@pytest.fixture
def scheduler(monkeypatch):
    """The scheduler's scope rule, with these cards selected (no xdist session needed)."""

    def with_cards(*names: str) -> xdist.OneWorkerPerCard:
        monkeypatch.setattr(xdist, "selected_cards", lambda config: [find_card(n) for n in names])
        made = object.__new__(xdist.OneWorkerPerCard)
        made._config = None
        return made

    return with_cards


def test_a_cards_tests_share_one_scope_and_other_tests_have_their_own(scheduler):
    split = scheduler("smollm2-135m-instruct", "tiny-mistral")._split_scope
    assert split("tests/behaviour/test_decoding.py::test_x[smollm2-135m-instruct-bos]") == "card smollm2-135m-instruct"
    assert split("tests/behaviour/test_model.py::test_y[smollm2-135m-instruct]") == "card smollm2-135m-instruct"
    assert split("tests/behaviour/test_model.py::test_y[tiny-mistral]") == "card tiny-mistral"
    assert split("tests/unit/probe/test_ledger.py::test_z") == "tests/unit/probe/test_ledger.py::test_z"
    assert split("tests/unit/x.py::test_w[3]") == "tests/unit/x.py::test_w[3]"  # a parameter, not a card


def test_a_quantized_card_runs_beside_its_reference_only_when_that_is_selected(scheduler):
    """Beside it, the drift probe reuses the reference's loaded model; alone, it is a unit of
    its own."""
    nf4 = "tests/behaviour/test_quantization.py::test_q[smollm2-135m-instruct-nf4]"
    assert scheduler("smollm2-135m-instruct", "smollm2-135m-instruct-nf4")._split_scope(nf4) == (
        "card smollm2-135m-instruct"
    )
    assert scheduler("smollm2-135m-instruct-nf4")._split_scope(nf4) == "card smollm2-135m-instruct-nf4"
