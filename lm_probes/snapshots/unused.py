"""Recorded snapshots that nothing reads any more, as syrupy's ``--snapshot-details`` /
unused report does for its snapshots: a file whose card no cards folder holds (a card renamed
or removed), and within a file the sections no section spec knows (a section removed from
lm_probes/section_specs.py) or that its card leaves out (``snapshot.leave_out``). The suite never
reads them; a folder that keeps them misleads whoever reads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lm_probes.section_specs import spec


@dataclass(frozen=True)
class Unused:
    path: Path
    sections: tuple[str, ...] = ()  # empty: the whole file is unused
    why: str = ""

    @property
    def whole_file(self) -> bool:
        return not self.sections

    def line(self) -> str:
        what = "the whole file" if self.whole_file else "sections " + ", ".join(self.sections)
        return f"{self.path}: {what} ({self.why})"


def unused_snapshots(snapshot_dir: Path, left_out_of: Callable[[str], tuple[str, ...] | None]) -> list[Unused]:
    """Every unused file or section under ``snapshot_dir`` (``<card>/<class>.json``).
    ``left_out_of(card)``: the sections the card leaves out of its snapshot, or None when no
    cards folder holds the card."""
    found = []
    for path in sorted(Path(snapshot_dir).glob("*/*.json")):
        card = path.parent.name
        left_out = left_out_of(card)
        if left_out is None:
            found.append(Unused(path, why=f"no card named {card!r} in the cards folders"))
            continue
        try:
            observed = json.loads(path.read_text(encoding="utf-8")).get("observed", {})
        except (OSError, ValueError) as exc:
            found.append(Unused(path, why=f"unreadable: {exc}"))
            continue
        unknown = tuple(s for s in observed if spec(s) is None)
        if unknown:
            found.append(Unused(path, unknown, "no section of this version has these names"))
        left = tuple(s for s in observed if s in left_out)
        if left:
            found.append(Unused(path, left, f"{card} leaves them out (snapshot.leave_out)"))
    return found
