"""Where the shipped files live, and whether a folder the user names can be written:
imported by every stage, importing nothing of the project.

The shipped cards, probe inputs and CPU snapshots are fixtures/ of a source checkout (and of
an editable install), lm_probes/fixtures/ inside a non-editable one (pyproject.toml installs
fixtures/ there as the package lm_probes.fixtures).
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
FIXTURES_DIR = REPO_ROOT / "fixtures" if (REPO_ROOT / "fixtures" / "cards").is_dir() else PACKAGE_DIR / "fixtures"
CARDS_DIR = FIXTURES_DIR / "cards"
CARD_SCHEMA_FILE = FIXTURES_DIR / "card.schema.json"
INPUTS_DIR = FIXTURES_DIR / "inputs"
SNAPSHOT_DIR = FIXTURES_DIR / "snapshots"


def user_path(path: str | os.PathLike[str]) -> Path:
    """A path as a user writes it, ``~`` expanded: an ini file's addopts or a CI file runs no shell.
    os.path's expansion, not Path's: a ``~name`` of no known user stays as written (Path's raises)."""
    return Path(os.path.expanduser(path))


def write_blocker(folder: Path) -> tuple[Path, str] | None:
    """What stops a file being written in ``folder`` (made first where absent), or None: the
    nearest existing path on the way there, and "file" (it is one: no folder can be made
    there) or "read-only" (os.access, as this user: root writes where chmod stops others).
    Nothing is created: every output door asks this before any work starts."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return existing, "file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return existing, "read-only"
    return None
