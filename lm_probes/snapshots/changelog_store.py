"""A changelog's folder: what it has recorded, kept so that a later run adds only new
releases and the page can be re-rendered from it alone (on any machine, without the cache).

- ``changelog.json``: the package, the cards asked for, every run's command, and per release
  each card's outcome, its machine class and provenance, and the digest of its observations;
- ``sets/<card>/<digest>.json``: each distinct observation of a card once (most releases
  observe what the one before did, so the folder stays small).

``materialize`` writes the releases back as recorded sets (``<release>/<card>/<class>.json``)
for snapshots/sets.py to compare."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_probes.snapshots.changelog import RECORDED, ReleaseEntry

STATE = "changelog.json"


class StoreMismatch(ValueError):
    """The folder holds a changelog of another package or other cards; one sentence."""


def digest(observed: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(observed, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Store:
    folder: Path
    package: str
    cards: list[str]
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, folder: Path, package: str, cards: list[str]) -> Store:
        """The folder's changelog, or a new one; StoreMismatch when it is another package's or
        was recorded for other cards (a changelog compares one selection)."""
        path = folder / STATE
        if not path.is_file():
            return cls(folder, package, cards)
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["package"] != package or saved["cards"] != cards:
            raise StoreMismatch(
                f"{folder} holds a changelog of {saved['package']} for {saved['cards']}, not of {package} for "
                f"{cards}; give another --output, or the same package and cards"
            )
        return cls(folder, package, cards, saved["releases"], saved.get("runs", []))

    def add(self, release: str, set_folder: Path | None, outcomes: dict[str, str], **problems: str | None) -> None:
        """Copy one release's recorded cards in: provenance into the state, observations by digest."""
        entry: dict[str, Any] = {"outcomes": outcomes, **{k: v for k, v in problems.items() if v}, "files": {}}
        for card, outcome in outcomes.items():
            if outcome != RECORDED or set_folder is None:
                continue
            for path in sorted((set_folder / card).glob("*.json")):
                recorded = json.loads(path.read_text(encoding="utf-8"))
                observed = {key: value for key, value in recorded.items() if key != "provenance"}
                name = digest(observed)
                target = self.folder / "sets" / card / f"{name}.json"
                if not target.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(json.dumps(observed, indent=1, sort_keys=True) + "\n", encoding="utf-8")
                entry["files"].setdefault(card, {})[path.stem] = {
                    "observed": name,
                    "provenance": recorded.get("provenance", {}),
                }
        self.releases[release] = entry

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {"package": self.package, "cards": self.cards, "runs": self.runs, "releases": self.releases}
        (self.folder / STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def materialize(self, into: Path, order: list[str]) -> list[ReleaseEntry]:
        """Each release's set written back under ``into``, as rows in ``order``."""
        entries = []
        for release in order:
            saved = self.releases[release]
            folder = into / release
            for card, classes in saved.get("files", {}).items():
                for device_class, file in classes.items():
                    observed = json.loads(
                        (self.folder / "sets" / card / f"{file['observed']}.json").read_text(encoding="utf-8")
                    )
                    target = folder / card / f"{device_class}.json"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(json.dumps({**observed, "provenance": file["provenance"]}), encoding="utf-8")
            entries.append(
                ReleaseEntry(
                    release,
                    folder,
                    saved.get("outcomes", {}),
                    saved.get("not_installable"),
                    saved.get("not_recorded"),
                )
            )
        return entries

    def provenance(self) -> list[dict[str, Any]]:
        """Every recorded file's provenance (the page names the machines and versions)."""
        return [
            file["provenance"]
            for saved in self.releases.values()
            for classes in saved.get("files", {}).values()
            for file in classes.values()
        ]
