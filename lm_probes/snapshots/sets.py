"""Two recorded observation sets compared: what ``lm-probes diff`` and
``lm-probes upgrade-check`` run.

An observation set is a snapshot folder (``<card>/<machine class>.json``, what
``--lm-probes-snapshot-update`` writes) or one snapshot file. Each card present on both sides is
compared with the same rules and tolerances as the snapshot test (``compare``),
and the result is one self-contained HTML page and an exit code:

- 0: no difference beyond tolerance (warnings, such as a near-tie greedy flip, or a machine
  class only one side recorded, allowed);
- 1: at least one difference beyond tolerance (a section only one side holds is one);
- 4: the inputs could not be compared (a missing or corrupt folder, no card in common, two
  files of different cards), or a card is on one side only and ``--card`` did not leave it
  out: the cards both hold are still compared and shown, and the missing ones named.

``upgrade-check`` adds 2: an environment could not be built or could not record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_probes.cards.card import CardError, find_card
from lm_probes.exit_codes import BAD_INPUT, COULD_NOT_RUN, DIFFERENT, SAME  # noqa: F401 (also read as sets.BAD_INPUT, ...)
from lm_probes.numerics import class_distance
from lm_probes.snapshots import sections, token_rules
from lm_probes.snapshots.compare import SnapshotShapeError, compare
from lm_probes.snapshots.differences import Difference
from lm_probes.snapshots.record import SnapshotError, load

# the machine class of observations taken from a server (lm_probes/served/parity.py writes them)
SERVED_CLASS = "served"


class DiffInputError(ValueError):
    """An observation set is missing or unreadable; the message says which and why."""


@dataclass(frozen=True)
class CardComparison:
    card: str
    device_a: str
    device_b: str
    provenance_a: dict[str, Any]
    provenance_b: dict[str, Any]
    differences: tuple[Difference, ...]
    sections: tuple[str, ...]  # the sections both sides hold
    observed_a: dict[str, Any] = field(repr=False, default_factory=dict)
    observed_b: dict[str, Any] = field(repr=False, default_factory=dict)
    device_note: str = ""  # set when the two sides were recorded on different machine classes
    several_classes: bool = False  # the card is compared in more than one class: its name says which
    sections_only_a: tuple[str, ...] = ()  # named, and each an error: what one side only holds was not compared
    sections_only_b: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The card, and the class where the card is compared in several."""
        return f"{self.card} [{self.device_a}]" if self.several_classes else self.card

    def section_of(self, difference: Difference) -> str:
        return difference.where.split(".", 1)[0].split("[", 1)[0]

    def by_section(self) -> dict[str, list[Difference]]:
        found: dict[str, list[Difference]] = {}
        for d in self.differences:
            found.setdefault(self.section_of(d), []).append(d)
        return found

    @property
    def errors(self) -> int:
        return sum(d.severity == "error" for d in self.differences)

    @property
    def unchanged(self) -> list[str]:
        changed = self.by_section()
        return [s for s in self.sections if s not in changed]

    @property
    def not_compared(self) -> list[str]:
        """Why sampled texts were set aside (they are compared only under the same versions)."""
        if "sampled" not in self.sections:
            return []
        return token_rules.why_samples_not_comparable(self.provenance_a, self.provenance_b)


@dataclass(frozen=True)
class OneSided:
    """A card, or some machine classes of a card, that only one side holds: not compared,
    and named in every output. A card missing from a side makes the verdict exit 4 (the
    sets were not compared as asked); a class does not (a set recorded on one machine holds
    that machine's class only), so it is a warning."""

    card: str
    side: str  # "A" or "B"
    classes: tuple[str, ...]
    whole_card: bool = True

    @property
    def severity(self) -> str:
        return "error" if self.whole_card else "warning"

    @property
    def message(self) -> str:
        what = "this card (class {})" if self.whole_card else "class {} of this card"
        return f"only {self.side} holds {what.format(', '.join(self.classes))}: not compared"


@dataclass(frozen=True)
class SetComparison:
    """Two sets compared: one ``CardComparison`` per card and machine class compared (iterate
    it for them), and what only one side holds (``one_sided``)."""

    comparisons: tuple[CardComparison, ...]
    one_sided: tuple[OneSided, ...] = ()

    @classmethod
    def of(cls, found: SetComparison | Sequence[CardComparison]) -> SetComparison:
        return found if isinstance(found, SetComparison) else cls(tuple(found))

    def __iter__(self) -> Iterator[CardComparison]:
        return iter(self.comparisons)

    def __len__(self) -> int:
        return len(self.comparisons)

    @property
    def missing_cards(self) -> list[OneSided]:
        return [o for o in self.one_sided if o.whole_card]

    @property
    def verdict(self) -> int:
        """BAD_INPUT where a card was on one side only (what was asked was not all compared,
        whatever the rest found), else DIFFERENT for a difference beyond tolerance, else SAME
        (the exit codes of lm-probes diff, which prints them)."""
        if self.missing_cards:
            return BAD_INPUT
        return DIFFERENT if any(c.errors for c in self) else SAME


def _record_hint(card: str, snapshot_dir: Path) -> str:
    """The command that (re-)records a card's snapshot into a set."""
    return (
        f"pytest tests/behaviour/test_snapshot.py --lm-probes-card {card} --lm-probes-snapshot-update "
        f"--lm-probes-snapshot-dir {snapshot_dir}"
    )


@dataclass(frozen=True)
class _Set:
    """One side: card -> machine class -> file, and whether it was given as one file."""

    root: Path
    files: dict[str, dict[str, Path]]
    one_file: bool


def _snapshot_set(root: Path) -> _Set:
    """A folder of snapshots, or a single snapshot file: the card of a file is its ``card``
    field (its folder's name for a file without one), so two files are paired by what they
    are, not by where they lie."""
    if root.is_file():
        recorded = _read(root, _record_hint(root.parent.name, root.parent.parent))
        card = recorded["card"] if isinstance(recorded.get("card"), str) else root.parent.name
        return _Set(root, {card: {root.stem: root}}, True)
    if not root.is_dir():
        raise DiffInputError(f"{root} is neither a snapshot folder nor a snapshot file")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.glob("*/*.json")):
        found.setdefault(path.parent.name, {})[path.stem] = path
    if not found:
        raise DiffInputError(
            f"{root} holds no snapshots (<card>/<machine class>.json); record some with "
            "`pytest tests/behaviour/test_snapshot.py --lm-probes-snapshot-update --lm-probes-snapshot-dir "
            + str(root)
            + "`"
        )
    return _Set(root, found, False)


def pick_device_classes(a: list[str], b: list[str]) -> tuple[str, str, str]:
    """The machine classes to compare: the same class where both sides have it (cpu first),
    else the nearest pair (lm_probes/numerics.py nearest_class: cuda-sm90 against cuda-sm89
    before cpu), saying which was used and that the cross-class rules apply, as
    transformers' ``Expectations`` falls back from an exact device to the nearest one."""
    common = sorted(set(a) & set(b), key=lambda d: (d != "cpu", d))
    if common:
        return common[0], common[0], ""
    x, y = min(((x, y) for x in a for y in b), key=lambda pair: (class_distance(*pair), pair))
    return x, y, f"no machine class on both sides: compared {x} with {y} (the nearest) under the cross-class rules"


def class_pairs(a: list[str], b: list[str]) -> list[tuple[str, str, str]]:
    """Every machine class both sides hold, each compared strictly (cpu first); where they
    share none, the nearest pair (``pick_device_classes``). A class held by both and left
    uncompared would be a green that covers nothing."""
    common = sorted(set(a) & set(b), key=lambda d: (d != "cpu", d))
    return [(c, c, "") for c in common] if common else [pick_device_classes(a, b)]


def _read(path: Path, hint: str, card: str | None = None) -> dict[str, Any]:
    try:
        return load(path, hint, card=card)
    except SnapshotError as exc:
        raise DiffInputError(str(exc)) from None


def _tolerances(card: str, served: bool = False) -> dict[str, Any]:
    """The card's tolerances; where one side was recorded from a server (class "served"),
    its measured ``served.parity`` bounds are the cross-class ones."""
    try:
        found = find_card(card)
    except CardError:
        return {}  # a card this installation does not know: the default tolerances
    tolerances = found.tolerance_overrides
    if served and found.served is not None:
        tolerances["cross_class"] = found.served.parity.model_dump()
    return tolerances


def _cards_to_compare(set_a: _Set, set_b: _Set, cards: list[str] | None) -> tuple[list[str], list[str], list[str]]:
    """The cards to compare, and those only A or only B holds (named, not compared). Cards
    asked for with ``--card``, or named by a side given as one file, must be on both sides;
    the others are then not asked for, so not reported as missing."""
    names = lambda s: ", ".join(s.files) or "none"  # noqa: E731
    if set_a.one_file and set_b.one_file and set(set_a.files) != set(set_b.files):
        raise DiffInputError(
            f"{set_a.root} is a snapshot of card {names(set_a)} and {set_b.root} of card {names(set_b)}: "
            "a file is compared only with a file of the same card; give two files of one card"
        )
    asked = list(dict.fromkeys(cards or []))
    for side in (set_a, set_b):
        if side.one_file and asked and not set(asked) <= set(side.files):
            raise DiffInputError(
                f"{side.root} is a snapshot of card {names(side)}, not of {', '.join(asked)} (asked with --card)"
            )
        if side.one_file:
            asked = asked or list(side.files)
    common = [c for c in set_a.files if c in set_b.files]
    if asked:
        missing = [c for c in asked if c not in common]
        if missing:
            raise DiffInputError(
                f"card(s) {', '.join(missing)} not on both sides: {set_a.root} has {names(set_a)}; "
                f"{set_b.root} has {names(set_b)}"
            )
        return [c for c in common if c in asked], [], []
    if not common:
        raise DiffInputError(f"no card in common: {set_a.root} has {names(set_a)}; {set_b.root} has {names(set_b)}")
    return common, [c for c in set_a.files if c not in common], [c for c in set_b.files if c not in common]


def compare_sets(a: Path, b: Path, cards: list[str] | None = None) -> SetComparison:
    """Every card both sets hold (or the ``cards`` asked for), compared A -> B in every machine
    class both hold; what one side only holds is named in the result, not compared."""
    set_a, set_b = _snapshot_set(Path(a)), _snapshot_set(Path(b))
    chosen, only_a, only_b = _cards_to_compare(set_a, set_b, cards)
    one_sided = [OneSided(c, "A", tuple(set_a.files[c])) for c in only_a]
    one_sided += [OneSided(c, "B", tuple(set_b.files[c])) for c in only_b]
    comparisons = []
    for card in chosen:
        pairs = class_pairs(list(set_a.files[card]), list(set_b.files[card]))
        for side, found, used in (("A", set_a, {x for x, _, _ in pairs}), ("B", set_b, {y for _, y, _ in pairs})):
            unused = tuple(c for c in found.files[card] if c not in used)
            if unused:
                one_sided.append(OneSided(card, side, unused, whole_card=False))
        for device_a, device_b, note in pairs:
            comparisons.append(_compare_files(card, set_a, set_b, device_a, device_b, note, several=len(pairs) > 1))
    return SetComparison(tuple(comparisons), tuple(one_sided))


def _compare_files(
    card: str, set_a: _Set, set_b: _Set, device_a: str, device_b: str, note: str, several: bool
) -> CardComparison:
    recorded, current = (
        _read(side.files[card][device], _record_hint(card, _snapshot_dir(side)), card=card)
        for side, device in ((set_a, device_a), (set_b, device_b))
    )
    try:
        differences = compare(
            recorded["observed"],
            current["observed"],
            tolerances=_tolerances(card, served=SERVED_CLASS in (device_a, device_b)),
            recorded_provenance=recorded["provenance"],
            current_provenance=current["provenance"],
            classes=(device_a, device_b),
        )
    except SnapshotShapeError as exc:
        files = " or ".join(str(side.files[card][device]) for side, device in ((set_a, device_a), (set_b, device_b)))
        raise DiffInputError(f"{files}: {exc}. Re-record it with: {_record_hint(card, _snapshot_dir(set_a))}") from None
    only_a = _in_order(s for s in recorded["observed"] if s not in current["observed"])
    only_b = _in_order(s for s in current["observed"] if s not in recorded["observed"])
    reported = {d.where for d in differences}
    for side, names in (("A", only_a), ("B", only_b)):
        differences += [
            Difference(
                "error",
                name,
                f"only {side} holds this section, so it was not compared (the other side was recorded without it: "
                "by another lm-probes version, or from a card whose sections changed; re-record that side)",
            )
            for name in names
            if name not in reported
        ]
    return CardComparison(
        card=card,
        device_a=device_a,
        device_b=device_b,
        provenance_a=recorded["provenance"],
        provenance_b=current["provenance"],
        differences=tuple(differences),
        sections=_in_order(s for s in recorded["observed"] if s in current["observed"]),
        observed_a=recorded["observed"],
        observed_b=current["observed"],
        device_note=note,
        several_classes=several,
        sections_only_a=only_a,
        sections_only_b=only_b,
    )


def _snapshot_dir(side: _Set) -> Path:
    """The --lm-probes-snapshot-dir that records into a side (a file lies at DIR/<card>/<class>.json)."""
    return side.root.parent.parent if side.one_file else side.root


def _in_order(names: Any) -> tuple[str, ...]:
    """Section names in the report's order; one this list does not know yet (a newer
    snapshot's) is listed after them rather than left out of the count."""
    found = list(names)
    known = [s.name for s in sections.all_sections()]
    return tuple(s for s in known if s in found) + tuple(sorted(s for s in found if s not in known))
