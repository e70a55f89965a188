"""Each probe result computed once per subject and session: the memo behind
lm_probes/subjects/results.py."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from weakref import WeakKeyDictionary

from lm_probes.ledger import LEDGER, label_of

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


Result = TypeVar("Result")


# What a result is kept under: the probe's name and what else it depends on (prompt,
# seed, ...); results of one subject only.
ResultKey = str | tuple[Hashable, ...]


class SessionResults:
    """Each probe result computed once per subject and session, and shared by the tests
    that need it (the next-token logits feed the bar chart, the temperature panels, the
    snapshot, ...). Held per Subject object, and gone with it: a test that builds its own
    subject (a deliberately broken one) never sees the session's results."""

    def __init__(self) -> None:
        self._by_subject: WeakKeyDictionary[Subject, dict[ResultKey, Any]] = WeakKeyDictionary()

    def get(self, subject: Subject, key: ResultKey, compute: Callable[[], Result]) -> Result:
        results = self._by_subject.setdefault(subject, {})
        if key not in results:
            # the model work of compute() is this result's in the ledger (lm_probes/ledger.py)
            with LEDGER.probe(label_of(key), subject.name):
                results[key] = compute()
        return results[key]

    def has(self, subject: Subject, key: ResultKey) -> bool:
        return key in self._by_subject.get(subject, {})

    @contextmanager
    def set_aside(self, subject: Subject) -> Iterator[None]:
        """Within the block, ``subject``'s results are computed anew (a test that edits
        the loaded model in place); afterwards the session's results are back."""
        kept = self._by_subject.pop(subject, {})
        try:
            yield
        finally:
            self._by_subject[subject] = kept


RESULTS = SessionResults()
