"""Where the shipped files live: imported by every stage, importing nothing of the project.

The shipped cards, probe inputs and CPU snapshots are fixtures/ of a source checkout (and of
an editable install), probes/fixtures/ inside a non-editable one (pyproject.toml installs
fixtures/ there as the package probes.fixtures).
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
FIXTURES_DIR = REPO_ROOT / "fixtures" if (REPO_ROOT / "fixtures" / "cards").is_dir() else PACKAGE_DIR / "fixtures"
CARDS_DIR = FIXTURES_DIR / "cards"
CARD_SCHEMA_FILE = FIXTURES_DIR / "card.schema.json"
INPUTS_DIR = FIXTURES_DIR / "inputs"
SNAPSHOT_DIR = FIXTURES_DIR / "snapshots"
