"""Two recorded observation sets compared: the engine of ``lm-probes diff`` and
``lm-probes upgrade-check``.

An observation set is a snapshot folder (``<card>/<device class>.json``, what
``--snapshot-update`` writes) or one snapshot file. Each card present on both sides is
compared with the same rules and tolerances as the snapshot test (``comparing.compare``),
and the result is one self-contained HTML page and an exit code:

- 0: no difference beyond tolerance (warnings, such as a near-tie greedy flip, allowed);
- 1: at least one difference beyond tolerance;
- 4: the inputs could not be compared (a missing or corrupt folder, no card in common).

``upgrade-check`` adds 2: an environment could not be built or could not record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes.cards.card import CardError, find_card
from probes.exit_codes import BAD_INPUT, COULD_NOT_RUN, DIFFERENT, SAME  # noqa: F401 (also read as sets.BAD_INPUT, ...)
from probes.numerics import Numerics, class_distance
from probes.snapshots import compare as comparing
from probes.snapshots import record as recording
from probes.snapshots import sections, token_rules
from probes.snapshots.differences import Difference

# the machine class of observations taken from a server (probes/served/parity.py writes them)
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
    device_note: str = ""  # set when the two sides were recorded on different device classes

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


def _snapshot_files(root: Path) -> dict[str, dict[str, Path]]:
    """card -> device class -> file, for a folder of snapshots or a single snapshot file."""
    if root.is_file():
        return {root.parent.name: {root.stem: root}}
    if not root.is_dir():
        raise DiffInputError(f"{root} is neither a snapshot folder nor a snapshot file")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.glob("*/*.json")):
        found.setdefault(path.parent.name, {})[path.stem] = path
    if not found:
        raise DiffInputError(
            f"{root} holds no snapshots (<card>/<device class>.json); record some with "
            "`pytest tests/behaviour/test_snapshot.py --snapshot-update --snapshot-dir " + str(root) + "`"
        )
    return found


def pick_device_classes(a: list[str], b: list[str]) -> tuple[str, str, str]:
    """The machine classes to compare: the same class where both sides have it (cpu first),
    else the nearest pair (probes/numerics.py nearest_class: cuda-sm90 against cuda-sm89
    before cpu), saying which was used and that the cross-class rules apply, as
    transformers' ``Expectations`` falls back from an exact device to the nearest one."""
    common = sorted(set(a) & set(b), key=lambda d: (d != "cpu", d))
    if common:
        return common[0], common[0], ""
    x, y = min(((x, y) for x in a for y in b), key=lambda pair: (class_distance(*pair), pair))
    return x, y, f"no machine class on both sides: compared {x} with {y} (the nearest) under the cross-class rules"


def _read(path: Path) -> dict[str, Any]:
    try:
        return recording.load(path, "re-record it with --snapshot-update")
    except recording.SnapshotError as exc:
        raise DiffInputError(str(exc)) from None


def _tolerances(card: str, served: bool = False) -> dict[str, Any]:
    """The card's tolerances; where one side was recorded from a server (class "served"),
    its measured ``served.parity`` bounds are the cross-class ones."""
    try:
        found = find_card(card)
    except CardError:
        return {}  # a card this installation does not know: the default tolerances
    tolerances = dict(found.tolerances)
    if served and found.served is not None:
        tolerances["cross_class"] = found.served.parity.model_dump()
    return tolerances


def compare_sets(a: Path, b: Path, cards: list[str] | None = None) -> list[CardComparison]:
    """Every card both sets hold (or the ``cards`` asked for), compared A -> B."""
    files_a, files_b = _snapshot_files(Path(a)), _snapshot_files(Path(b))
    if Path(a).is_file() and Path(b).is_file():
        files_b = {next(iter(files_a)): next(iter(files_b.values()))}  # two files: compare them, whatever the card
    common = [c for c in files_a if c in files_b]
    if cards:
        missing = [c for c in cards if c not in common]
        if missing:
            raise DiffInputError(f"card(s) {', '.join(missing)} not on both sides; both have: {', '.join(common)}")
        common = [c for c in common if c in cards]
    if not common:
        raise DiffInputError(f"no card in common: {a} has {', '.join(files_a)}; {b} has {', '.join(files_b)}")
    comparisons = []
    for card in common:
        device_a, device_b, note = pick_device_classes(list(files_a[card]), list(files_b[card]))
        recorded, current = _read(files_a[card][device_a]), _read(files_b[card][device_b])
        differences = comparing.compare(
            recorded["observed"],
            current["observed"],
            tolerances=_tolerances(card, served=SERVED_CLASS in (device_a, device_b)),
            recorded_provenance=recorded["provenance"],
            current_provenance=current["provenance"],
            classes=(device_a, device_b),
        )
        comparisons.append(
            CardComparison(
                card=card,
                device_a=device_a,
                device_b=device_b,
                provenance_a=recorded["provenance"],
                provenance_b=current["provenance"],
                differences=tuple(differences),
                sections=_common_sections(recorded["observed"], current["observed"]),
                observed_a=recorded["observed"],
                observed_b=current["observed"],
                device_note=note,
            )
        )
    return comparisons


def _common_sections(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, ...]:
    """The sections both sets hold, in the report's order; one this list does not know yet
    (a newer snapshot's) is listed after them rather than left out of the count."""
    common = [s for s in a if s in b]
    known = [s.name for s in sections.SECTIONS]
    return tuple(s for s in known if s in common) + tuple(sorted(s for s in common if s not in known))


def exit_code(comparisons: list[CardComparison]) -> int:
    return DIFFERENT if any(c.errors for c in comparisons) else SAME


def fingerprint_line(provenance: dict[str, Any]) -> str:
    """A recorded side's numerics fingerprint as one line, or what a set from before
    fingerprints says of its device."""
    if isinstance(provenance.get("numerics"), dict):
        return Numerics.from_dict(provenance["numerics"]).describe()
    device, dtype = provenance.get("device", "?"), provenance.get("dtype", "?")
    return f"no numerics fingerprint recorded (device {device}, dtype {dtype})"


def summary_lines(comparisons: list[CardComparison]) -> list[str]:
    """One line per card, for the terminal."""
    lines = []
    for c in comparisons:
        head = comparing.summary_line(
            c.provenance_a, c.provenance_b, list(c.differences), classes=(c.device_a, c.device_b)
        )
        device = f" [{c.device_note}]" if c.device_note else ""
        lines.append(f"{c.card}: {head}{device}")
        for side, provenance in (("A", c.provenance_a), ("B", c.provenance_b)):
            lines.append(f"  {side} {c.device_a if side == 'A' else c.device_b}: {fingerprint_line(provenance)}")
    return lines


def as_json(comparisons: list[CardComparison]) -> str:
    """The differences as data, for CI that wants more than the exit code."""
    return json.dumps(
        [
            {
                "card": c.card,
                "devices": [c.device_a, c.device_b],
                "differences": [
                    {"severity": d.severity, "where": d.where, "message": d.message} for d in c.differences
                ],
                "unchanged": c.unchanged,
            }
            for c in comparisons
        ],
        indent=1,
    )
