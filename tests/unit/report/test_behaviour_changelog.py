"""docs/behaviour-changelog.md is what ``lm-probes changelog`` renders from the folder it was
recorded into (docs/behaviour-changelog/): re-rendered here from that folder alone, without
the cache or any environment, it must be the committed text, byte for byte. A page edited by
hand, or a folder changed without regenerating the page, fails."""

from __future__ import annotations

import json

from lm_probes.cli.changelog import rendered
from lm_probes.paths import REPO_ROOT
from lm_probes.snapshots.changelog_store import STATE, Store

FOLDER = REPO_ROOT / "docs" / "behaviour-changelog"
PAGE = REPO_ROOT / "docs" / "behaviour-changelog.md"


def committed_store() -> Store:
    saved = json.loads((FOLDER / STATE).read_text(encoding="utf-8"))
    return Store.open(FOLDER, saved["package"], saved["cards"])


def test_the_committed_changelog_is_what_its_recorded_sets_render():
    _, markdown, _ = rendered(committed_store())
    assert markdown == PAGE.read_text(encoding="utf-8"), (
        "docs/behaviour-changelog.md differs from what docs/behaviour-changelog/ renders: regenerate it with the "
        "commands the page lists (they re-render without recording anything new)"
    )


def test_the_page_covers_what_it_promises():
    """Every minor release from 4.46 to the newest recorded, every patch from 5.20 on, the
    four default CPU cards, a reading guide and the machine it was recorded on."""
    from packaging.version import Version

    store = committed_store()
    releases = sorted(store.releases, key=Version)
    minors = {Version(r).release[:2] for r in releases}
    newest = Version(releases[-1])
    assert {(4, m) for m in range(46, 58)} <= minors and {(5, m) for m in range(newest.minor + 1)} <= minors
    patches = [r for r in releases if Version(r) >= Version("5.20.0")]
    assert {"5.20.0", "5.20.1", "5.20.2", "5.21.0", "5.21.1", "5.22.0", "5.22.1", "5.22.2"} <= set(patches)
    cards = {card for saved in store.releases.values() for card in saved.get("outcomes", {})}
    assert cards == {"mistral-tokenizer", "smollm2-135m-instruct", "smollm2-135m-instruct-nf4", "tiny-mistral"}
    page = PAGE.read_text(encoding="utf-8")
    assert "## Reading this page" in page and "## Recorded on" in page and "**Tolerances**" in page
