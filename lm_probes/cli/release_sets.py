"""One release's recorded set, for ``bisect`` and ``changelog``: the release's cached
environment (environments.py), the cards recorded in it, and what happened to each card.

Sets are cached per package version, torch and machine (``set_folder``) with a marker written
last (``MARKER``) that says which cards were asked for and, per card, whether it was recorded
or why not; a release that cannot be installed is cached as such too, so that a later run
over an overlapping range records and resolves nothing twice."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lm_probes.cards.files import cache_dir
from lm_probes.cli import environments
from lm_probes.paths import REPO_ROOT
from lm_probes.snapshots.changelog import RECORDED

if TYPE_CHECKING:
    from packaging.version import Version

# where a release's notes are, for the packages whose tags are known
RELEASE_NOTES = {
    "transformers": "https://github.com/huggingface/transformers/releases/tag/v{version}",
    "tokenizers": "https://github.com/huggingface/tokenizers/releases/tag/v{version}",
    "torch": "https://github.com/pytorch/pytorch/releases/tag/v{version}",
}


def release_notes(package: str, release: str) -> str | None:
    """The release's notes, where the package's tags are known."""
    notes = RELEASE_NOTES.get(package)
    return notes.format(version=release) if notes else None


class IndexUnreadable(RuntimeError):
    """pip could not list the package's releases."""


def index_versions(package: str, pre: bool) -> list[str]:
    """Every release of ``package`` on pip's index, as ``pip index versions`` lists them (a seam
    for the tests)."""
    command = [sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"]
    result = subprocess.run(command + (["--pre"] if pre else []), capture_output=True, text=True)
    found = re.search(r"^Available versions: (.+)$", result.stdout, flags=re.MULTILINE)
    if result.returncode != 0 or not found:
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ERROR")]
        raise IndexUnreadable(errors[-1] if errors else f"pip index versions {package} listed nothing")
    return [v.strip() for v in found.group(1).split(",") if v.strip()]


def parsed_versions(versions: list[str], pre: bool = True) -> dict[str, Version]:
    """The index's list as versions (what packaging cannot parse is left out, as pip does;
    pre-releases only with ``pre``)."""
    from packaging.version import InvalidVersion, Version

    parsed = {}
    for v in versions:
        try:
            version = Version(v)
        except InvalidVersion:
            continue
        if pre or not version.is_prerelease:
            parsed[v] = version
    return parsed


MARKER = "bisect-recorded.json"  # written last into a release's recorded set
DEFAULT = "(the default cards)"


@dataclass(frozen=True)
class ReleaseSet:
    """What recording one release gave: its folder, and per card "recorded" or why not; or,
    for the whole release, why it could not be installed or recorded at all."""

    release: str
    folder: Path
    outcomes: dict[str, str] = field(default_factory=dict)  # card -> RECORDED, or why not (one line)
    not_installable: str | None = None  # the environment could not be built: why
    not_recorded: str | None = None  # the recording run failed before any card: why

    @property
    def recorded_cards(self) -> list[str]:
        return sorted(card for card, outcome in self.outcomes.items() if outcome == RECORDED)

    def problem(self) -> str | None:
        """Why this set is not a full recording of its cards (None: it is)."""
        if self.not_installable or self.not_recorded:
            return self.not_installable or self.not_recorded
        missing = {card: why for card, why in self.outcomes.items() if why != RECORDED}
        return "; ".join(f"{card}: {why}" for card, why in sorted(missing.items())) or None


@functools.cache
def host_key() -> str:
    """This machine as far as recorded numbers go: the snapshots' own fingerprint of it (the
    CPU, the kernel features torch uses, oneDNN's half-precision paths) and Python."""
    from lm_probes.numerics import machine_numerics

    key = json.dumps([dataclasses.asdict(machine_numerics()), platform.python_version()], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def set_folder(package: str, release: str, torch_pin: str) -> Path:
    """Where a release's recorded set is cached: per package version, torch and machine."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{package}-{release}-{torch_pin.replace('==', '')}")
    return cache_dir() / "bisect-sets" / readable / host_key()


def covers(recorded: list[str], wanted: list[str]) -> bool:
    """Whether a set recorded for ``recorded`` cards holds every card ``wanted`` (the default
    cards only as the default cards: which they are depends on the checkout)."""
    return recorded == wanted or (DEFAULT not in wanted and set(wanted) <= set(recorded))


def say(log: list[str], line: str) -> None:
    log.append(line)
    print(f"  {line}", flush=True)


def one_line(failure: str) -> str:
    """A build's or a recording's failure in one line: what failed, and pytest's or pip's own
    last error line from the output tail that follows it (the command itself is left out)."""
    lines = failure.splitlines()
    what = lines[0].split(": /", 1)[0]  # "recording under X failed (exit 1)", without the command
    raised = [line.strip()[1:].strip() for line in lines[1:] if line.lstrip().startswith("E ")]
    named = [line.strip() for line in lines[1:] if line.lstrip().startswith(("ERROR", "FAILED"))]
    found = raised or named
    return f"{what}: {found[-1]}" if found else lines[0]


def card_outcomes(junit: Path) -> dict[str, str]:
    """Per card, from the recording run's JUnit XML: RECORDED, or the first line of why its
    test failed, errored (a card that cannot load under this release) or was skipped."""
    if not junit.is_file():
        return {}
    outcomes = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        found = re.fullmatch(r"test_matches_snapshot\[(.+)\]", case.get("name", ""))
        if not found:
            continue
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if problem is None:
            outcomes[found[1]] = RECORDED
            continue
        message = (problem.get("message") or problem.text or problem.tag).strip().splitlines()
        reason = message[0] if message else problem.tag
        # pytest's wording for an error in a fixture: the exception is what the user needs
        reason = re.sub(r'^failed on setup with "(.*?)"?$', r"\1", reason)
        word = {"skipped": "skipped", "failure": "not recorded", "error": "not loadable"}[problem.tag]
        outcomes[found[1]] = f"{word}: {reason[:300]}"
    return outcomes


def read_marker(folder: Path, wanted: list[str]) -> dict | None:
    marker = folder / MARKER
    if not marker.is_file():
        return None
    saved = json.loads(marker.read_text(encoding="utf-8"))
    if saved.get("not_installable"):
        return saved
    return saved if covers(saved.get("cards", []), wanted) else None


def record_release(package: str, release: str, cards: list[str], torch_pin: str, log: list[str]) -> ReleaseSet:
    """The release's set: cached, or its environment built (or reused) and the cards recorded
    in it, each card's outcome kept. Each release's line goes to the terminal as it happens."""
    wanted = sorted(cards) or [DEFAULT]
    folder = set_folder(package, release, torch_pin)
    saved = read_marker(folder, wanted)
    if saved is not None:
        say(log, f"{release}: reusing its recorded set {folder}")
        # markers written before outcomes were kept were written only when every card recorded
        outcomes = saved.get("outcomes") or {card: RECORDED for card in saved.get("cards", []) if card != DEFAULT}
        return ReleaseSet(release, folder, outcomes, saved.get("not_installable"), saved.get("not_recorded"))
    side = environments.Side(f"{package} {release}", (f"{package}=={release}",))
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        env = environments.prepare(side, torch_pin)
    except environments.SideFailed as exc:
        why = one_line(str(exc))
        if "could not be reached" not in why:  # the index being down is not the release's fault: try again next time
            (folder / MARKER).write_text(json.dumps({"release": release, "not_installable": why}), encoding="utf-8")
        say(log, f"{release}: not installable: {why}")
        return ReleaseSet(release, folder, not_installable=why)
    junit = folder / "recording.xml"
    junit.unlink(missing_ok=True)
    command = [*environments.record_command(env, folder, cards), f"--junitxml={junit}"]
    # What the recording converts (SmolLM2's GGUF, 517 MB per transformers release: the
    # conversion is that release's code) goes to a scratch cache removed after it: the set is
    # what is kept, and each release is recorded once.
    with tempfile.TemporaryDirectory(prefix="lm-probes-recording-") as scratch:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "LM_PROBES_CACHE": scratch},
        )
    outcomes = card_outcomes(junit)
    not_recorded = None
    if result.returncode != 0 and not outcomes:  # nothing ran: an import or collection error
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        not_recorded = one_line(f"recording under {side.describe()} failed (exit {result.returncode})\n{tail}")
    found = ReleaseSet(release, folder, outcomes, not_recorded=not_recorded)
    (folder / MARKER).write_text(
        json.dumps({"cards": wanted, "release": release, "outcomes": outcomes, "not_recorded": not_recorded}),
        encoding="utf-8",
    )
    problem = found.problem()
    say(log, f"{release}: recorded in {time.monotonic() - started:.0f} s" + (f" ({problem})" if problem else ""))
    return found
