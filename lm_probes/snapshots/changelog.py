"""The behaviour changelog behind ``lm-probes changelog``, as data: a package's releases as
rows, each card's sections as columns, and in each cell what comparing that release with the
previous one (where the card was recorded) found.

A cell is one of:
- ``unchanged``: no error-severity difference in that section (the snapshots' own rules and
  tolerances, snapshots/sections.py and the card's ``snapshot.tolerances``);
- ``changed``: the section's first error, as the comparison words it;
- ``not loadable``: the card did not record under that release (its reason);
- ``not installable``: the release's environment could not be built here (its reason);
- ``first``: the first release the card recorded under, what later rows are compared with.

A release is compared with the previous row where the same card recorded, so a card that
could not load for a while is compared across the gap (the cell says since which release)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lm_probes.snapshots.bisection import changed_sections

if TYPE_CHECKING:
    from lm_probes.snapshots.sets import SetComparison

RECORDED = "recorded"  # a card's outcome when it recorded (cli/release_sets.py writes it)
UNCHANGED, CHANGED, NOT_LOADABLE, NOT_INSTALLABLE, FIRST = (
    "unchanged",
    "changed",
    "not loadable",
    "not installable",
    "first",
)


@dataclass(frozen=True)
class ReleaseEntry:
    """One row's input: the release, where its set lies, and each card's outcome."""

    release: str
    folder: Path | None
    outcomes: dict[str, str] = field(default_factory=dict)  # card -> RECORDED or why not
    not_installable: str | None = None
    not_recorded: str | None = None


@dataclass(frozen=True)
class Cell:
    state: str
    detail: str = ""  # the first difference ("[error] where: message"), or why not loadable / not installable
    since: str = ""  # the release compared with


@dataclass(frozen=True)
class Row:
    release: str
    cards: dict[str, Cell]  # per card: FIRST, UNCHANGED (compared), CHANGED, NOT_LOADABLE, NOT_INSTALLABLE
    changes: dict[tuple[str, str], Cell]  # (card, section) -> the CHANGED cell


@dataclass(frozen=True)
class Matrix:
    package: str
    cards: tuple[str, ...]
    rows: tuple[Row, ...]
    sections: dict[str, tuple[str, ...]]  # card -> every section it was compared in, in order
    # card -> section -> why it was set aside between some releases (sampled texts across versions)
    not_compared: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def columns(self) -> list[tuple[str, str]]:
        """(card, section) for every section that changed in some release, card by card."""
        changed = {key for row in self.rows for key in row.changes}
        return [(card, s) for card in self.cards for s in self.sections.get(card, ()) if (card, s) in changed]

    def cell(self, row: Row, card: str, section: str) -> Cell:
        """What one row says of one card's section."""
        if (card, section) in row.changes:
            return row.changes[(card, section)]
        state = row.cards.get(card, Cell(NOT_LOADABLE, "not recorded"))
        return Cell(UNCHANGED, since=state.since) if state.state == CHANGED else state

    def never_changed(self, card: str) -> list[str]:
        left_out = {s for c, s in self.columns if c == card} | set(self.not_compared.get(card, {}))
        return [s for s in self.sections.get(card, ()) if s not in left_out]

    def transitions(self) -> list[tuple[Row, str, str, Cell]]:
        """Every changed cell, release by release: (row, card, section, cell)."""
        return [(row, card, section, cell) for row in self.rows for (card, section), cell in row.changes.items()]


def card_state(entry: ReleaseEntry, card: str) -> Cell | None:
    """The card's cell when it did not record under this release; None when it did."""
    if entry.not_installable:
        return Cell(NOT_INSTALLABLE, entry.not_installable)
    if entry.not_recorded:
        return Cell(NOT_LOADABLE, entry.not_recorded)
    outcome = entry.outcomes.get(card)
    if outcome == RECORDED:
        return None
    return Cell(NOT_LOADABLE, outcome or "not recorded under this release")


def build(package: str, entries: Sequence[ReleaseEntry], compare: Callable[[Path, Path, str], SetComparison]) -> Matrix:
    """The matrix of ``entries`` (in release order): each card compared, release by release,
    with the last release it recorded under (``compare(a, b, card)``: snapshots/sets.py)."""
    cards = sorted({card for entry in entries for card in entry.outcomes})
    last: dict[str, tuple[str, Path]] = {}
    sections: dict[str, list[str]] = {card: [] for card in cards}
    not_compared: dict[str, dict[str, str]] = {}
    rows = []
    for entry in entries:
        states: dict[str, Cell] = {}
        changes: dict[tuple[str, str], Cell] = {}
        for card in cards:
            missing = card_state(entry, card)
            if missing is not None:
                states[card] = missing
                continue
            if card not in last:
                states[card] = Cell(FIRST)
            else:
                since, folder = last[card]
                comparison = compare(folder, entry.folder, card)
                for compared in comparison:
                    sections[card] += [s for s in compared.sections if s not in sections[card]]
                    if compared.not_compared:  # sampled texts: compared only under the same versions
                        not_compared.setdefault(card, {}).setdefault("sampled", "; ".join(compared.not_compared))
                found = changed_sections(comparison)
                for (_, section), difference in found.items():
                    if section not in sections[card]:
                        sections[card].append(section)
                    changes[(card, section)] = Cell(
                        CHANGED,
                        f"[{difference.severity}] {difference.where}: {difference.message}",
                        since=since,
                    )
                states[card] = Cell(CHANGED if found else UNCHANGED, since=since)
            last[card] = (entry.release, entry.folder)
        rows.append(Row(entry.release, states, changes))
    return Matrix(package, tuple(cards), tuple(rows), {card: tuple(s) for card, s in sections.items()}, not_compared)
