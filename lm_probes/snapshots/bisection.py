"""Which release changed it: the search behind ``lm-probes bisect``, as data.

Given one package's releases in order (the good end first, the bad end last), a way to record
a release's observation set (``record``: a folder of ``<card>/<class>.json``, or
``ReleaseSkipped``) and the comparison of two sets (``compare``: snapshots/sets.py), ``bisect``
finds, for every card section that differs between the two ends, the first release where that
section leaves the good side's value, by binary search, and confirms each transition by
comparing the release just before it with it.

What the search assumes: a section's values come in runs. Between two releases where it was
measured equal to a reference, it did not change and change back (A, B, A inside an interval
is not looked for). After a transition the search goes on from that release's value, so a
section that changes twice (A, B, C) is found twice. When the assumption fails, it says so:
- a transition whose two neighbours compare equal (a value that drifts a little at every
  release, each step within tolerance, the sum not: tolerance is not transitive) is reported
  *unconfirmed*, naming both releases;
- a release that cannot be recorded (not installable here, or its recording fails) is
  skipped, as ``git bisect skip`` does: the search probes the nearest release inside the
  interval instead; when every release left between two measured ones is skipped, the
  transition is reported as "at one of" them, naming them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lm_probes.snapshots.differences import Difference

if TYPE_CHECKING:
    from lm_probes.snapshots.sets import SetComparison

Key = tuple[str, str]  # (card, as the comparison names it, section)


class ReleaseSkipped(Exception):
    """A release that cannot be recorded here; the message is one sentence saying why."""


class EndNotRecorded(Exception):
    """The good or the bad end could not be recorded: there is nothing to search."""


@dataclass(frozen=True)
class Transition:
    """A section leaving one value for another, between two releases."""

    card: str
    section: str
    before: str  # the last release measured with the old value
    release: str  # the first release measured with the new value
    change: str  # the first difference, as the comparison words it
    confirmed: bool  # ``before`` and ``release`` compared directly differ in this section
    among: tuple[str, ...] = ()  # skipped releases between them: the change is at one of these or ``release``

    @property
    def exact(self) -> bool:
        return self.confirmed and not self.among

    def line(self) -> str:
        """One line: where, which release, between which, and what changed."""
        where = f"{self.card} {self.section}: {self.release} ({self.before} → {self.release})"
        if self.among:
            where += f", or one of the skipped {', '.join(self.among)}"
        if not self.confirmed:
            where += f" [unconfirmed: {self.before} and {self.release} compared directly agree within tolerance]"
        return f"{where}: {self.change}"


@dataclass
class Bisection:
    """What a search found, and what it had to leave out."""

    releases: tuple[str, ...]
    ends: SetComparison | None = None  # the good end against the bad end
    transitions: list[Transition] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # release -> why
    recorded: list[str] = field(default_factory=list)  # in the order they were recorded or reused
    # (before, release) -> the two sets compared, for each transition (what its diff page shows)
    comparisons: dict[tuple[str, str], SetComparison] = field(default_factory=dict)

    @property
    def good(self) -> str:
        return self.releases[0]

    @property
    def bad(self) -> str:
        return self.releases[-1]


def changed_sections(comparison: SetComparison) -> dict[Key, Difference]:
    """Each (card, section) with an error, and its first error."""
    found: dict[Key, Difference] = {}
    for card in comparison:
        for section, differences in card.by_section().items():
            errors = [d for d in differences if d.severity == "error"]
            if errors:
                found.setdefault((card.name, section), errors[0])
    for one_sided in comparison.missing_cards:
        found.setdefault((one_sided.card, "(card)"), Difference("error", "(card)", one_sided.message))
    return found


class _Search:
    def __init__(
        self,
        releases: list[str],
        record: Callable[[str], Path],
        compare: Callable[[Path, Path], SetComparison],
        result: Bisection,
        width: int = 1,
    ):
        self.releases, self.record, self.compare, self.result = releases, record, compare, result
        self.width = max(1, width)
        self.sets: dict[int, Path] = {}
        self.compared: dict[tuple[int, int], SetComparison] = {}

    def recorded(self, index: int) -> Path | None:
        """The release's set, recorded once; None (and named in ``skipped``) if it cannot be."""
        if index not in self.sets and self.releases[index] not in self.result.skipped:
            self._keep(index, self._attempt(index))
        return self.sets.get(index)

    def _attempt(self, index: int) -> Path | ReleaseSkipped:
        try:
            return self.record(self.releases[index])
        except ReleaseSkipped as exc:
            return exc

    def _keep(self, index: int, outcome: Path | ReleaseSkipped) -> None:
        if isinstance(outcome, ReleaseSkipped):
            self.result.skipped[self.releases[index]] = str(outcome)
        else:
            self.sets[index] = outcome
            self.result.recorded.append(self.releases[index])

    def comparison(self, a: int, b: int) -> SetComparison:
        if (a, b) not in self.compared:
            self.compared[(a, b)] = self.compare(self.sets[a], self.sets[b])
        return self.compared[(a, b)]

    def differs(self, a: int, b: int) -> dict[Key, Difference]:
        return changed_sections(self.comparison(a, b))

    def record_at_once(self, indices: list[int]) -> None:
        """Record the releases not yet recorded, ``width`` at a time (each recording runs one
        torch thread: on N cores, N releases take about as long as one)."""
        todo = [i for i in indices if i not in self.sets and self.releases[i] not in self.result.skipped]
        if len(todo) < 2 or self.width < 2:
            for index in todo:
                self.recorded(index)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.width) as pool:
            outcomes = list(pool.map(self._attempt, todo))
        for index, outcome in zip(todo, outcomes):  # kept in release order, whichever finished first
            self._keep(index, outcome)

    def probe_between(self, lo: int, hi: int) -> int | None:
        """A release strictly between lo and hi that records, nearest the middle first."""
        middle = (lo + hi) / 2
        for index in sorted(range(lo + 1, hi), key=lambda i: (abs(i - middle), i)):
            if self.recorded(index) is not None:
                return index
        return None

    def probes_between(self, lo: int, hi: int) -> list[int]:
        """Releases strictly between lo and hi that record, in order: ``width`` of them spread
        evenly and recorded at once (one, nearest the middle, when width is 1); when all of
        those are skipped, the nearest to the middle that records."""
        inside = range(lo + 1, hi)
        if not inside:
            return []
        targets = [lo + (hi - lo) * (n + 1) / (self.width + 1) for n in range(self.width)]
        chosen = sorted({min(inside, key=lambda i: (abs(i - t), i)) for t in targets})
        self.record_at_once(chosen)
        found = [i for i in chosen if i in self.sets]
        if found:
            return found
        fallback = self.probe_between(lo, hi)
        return [fallback] if fallback is not None else []

    def transitions(self, key: Key) -> list[Transition]:
        """Every transition of one section from the good end to the bad end."""
        found = []
        bad = len(self.releases) - 1
        reference = 0
        while key in self.differs(reference, bad):
            lo, hi = reference, bad  # lo: equal to the reference; hi: differs from it
            while points := self.probes_between(lo, hi):
                for point in points:  # in order: the first that differs ends the interval
                    if key in self.differs(reference, point):
                        hi = point
                        break
                    lo = point
            direct = self.differs(lo, hi).get(key)
            self.result.comparisons[(self.releases[lo], self.releases[hi])] = self.comparison(lo, hi)
            change = direct or self.differs(reference, hi)[key]
            among = tuple(self.releases[i] for i in range(lo + 1, hi))
            found.append(
                Transition(
                    card=key[0],
                    section=key[1],
                    before=self.releases[lo],
                    release=self.releases[hi],
                    change=f"{change.where}: {change.message}",
                    confirmed=direct is not None,
                    among=among,
                )
            )
            if hi == bad:
                break
            reference = hi
        return found


def bisect(
    releases: list[str],
    record: Callable[[str], Path],
    compare: Callable[[Path, Path], SetComparison],
    width: int = 1,
) -> Bisection:
    """Every transition of every section that differs between ``releases[0]`` (good) and
    ``releases[-1]`` (bad); EndNotRecorded when either end cannot be recorded. ``width``
    releases are recorded at once: both ends together, then ``width`` evenly spread points of
    each interval (a (width + 1)-ary search: fewer rounds, the same transitions)."""
    if len(releases) < 2:
        raise ValueError("a search needs the good and the bad release")
    result = Bisection(tuple(releases))
    search = _Search(releases, record, compare, result, width)
    search.record_at_once([0, len(releases) - 1])
    for end in (0, len(releases) - 1):
        if search.recorded(end) is None:
            raise EndNotRecorded(f"{releases[end]} could not be recorded: {result.skipped[releases[end]]}")
    result.ends = search.comparison(0, len(releases) - 1)
    for key in sorted(changed_sections(result.ends)):
        result.transitions.extend(search.transitions(key))
    return result
