"""Issue 36: names of tests written as strings (a card's ``xfail:`` and ``skip:``
entries, the ones draft-card writes) name tests that exist, so a renamed test fails here
instead of leaving a dead xfail without a word."""

from __future__ import annotations

import ast
import re

import pytest

from lm_probes.cards.card import load_card
from lm_probes.paths import CARDS_DIR, REPO_ROOT


def behavioural_tests() -> set[str]:
    names = set()
    for path in (REPO_ROOT / "tests" / "behaviour").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    return names


@pytest.mark.parametrize("card", sorted(p.stem for p in CARDS_DIR.glob("*.yaml")))
def test_every_known_failure_of_a_shipped_card_names_a_test_that_exists(card):
    loaded = load_card(CARDS_DIR / f"{card}.yaml")
    named = {entry.test for entry in (*loaded.xfail, *loaded.skip)}
    assert named - behavioural_tests() == set()


def test_every_test_name_draft_card_writes_exists():
    written = set()
    for path in (REPO_ROOT / "lm_probes" / "draft").glob("*.py"):
        written |= set(re.findall(r"[\"'](test_[a-z0-9_]+)[\"']", path.read_text(encoding="utf-8")))
    assert written, "the draft writes no test names: this check reads nothing"
    assert written - behavioural_tests() == set()


def test_a_renamed_test_is_caught(monkeypatch):
    """The check can fail: with one test's name gone, the card that names it is caught."""
    existing = behavioural_tests()
    monkeypatch.setitem(globals(), "behavioural_tests", lambda: existing - {"test_knowledge_answer"})
    with pytest.raises(AssertionError, match="test_knowledge_answer"):
        test_every_known_failure_of_a_shipped_card_names_a_test_that_exists("smollm2-135m-instruct")
