"""``lm-probes bisect --package NAME --good A --bad B``: which release of a package changed
each section that differs between A and B (the search: snapshots/bisection.py).

The releases come from the index pip is configured with (``pip index versions``: yanked
releases are not listed; pre-releases only with ``--pre``). Each release probed gets the
cached environment upgrade-check builds for ``NAME==VERSION`` (cli/environments.py) and its
recorded set is cached too, per release and machine, so a later search over an overlapping
range records nothing twice. A release that cannot be built or recorded is skipped with one
line saying why. Exit 0: nothing changed; 1: transitions found; 2: an end could not be
recorded or the index could not be read; 4: bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from probes.cards.files import cache_dir
from probes.cli import environments
from probes.exit_codes import BAD_INPUT, COULD_NOT_RUN
from probes.paths import REPO_ROOT
from probes.report.diff import write_bisect_pages
from probes.snapshots import sets
from probes.snapshots.bisection import Bisection, EndNotRecorded, ReleaseSkipped, Transition, bisect

NOTHING_CHANGED, CHANGED = 0, 1

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


MARKER = "bisect-recorded.json"  # written last into a release's recorded set
DEFAULT = "(the default cards)"


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


def releases_between(versions: list[str], good: str, bad: str, package: str) -> list[str]:
    """The releases from ``good`` to ``bad``, both included, in release order; ValueError (one
    sentence) when either is not on the index or good is not older than bad."""
    from packaging.version import InvalidVersion, Version

    parsed = {}
    for v in versions:
        try:
            parsed[v] = Version(v)
        except InvalidVersion:
            continue
    for end, name in ((good, "--good"), (bad, "--bad")):
        if end not in parsed:
            newest = max(parsed.values(), default=None)
            raise ValueError(
                f"{name} {end}: the index has no {package} {end} (it lists {len(parsed)} releases, the newest "
                f"{newest}); give a listed release (pip index versions {package})"
            )
    if parsed[good] >= parsed[bad]:
        raise ValueError(f"--good {good} is not older than --bad {bad}: give the older release as --good")
    return sorted((v for v in parsed if parsed[good] <= parsed[v] <= parsed[bad]), key=parsed.__getitem__)


@functools.cache
def host_key() -> str:
    """This machine as far as recorded numbers go: the snapshots' own fingerprint of it (the
    CPU, the kernel features torch uses, oneDNN's half-precision paths) and Python."""
    from probes.numerics import machine_numerics

    key = json.dumps([dataclasses.asdict(machine_numerics()), platform.python_version()], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def set_folder(package: str, release: str, torch_pin: str) -> Path:
    """Where a release's recorded set is cached: per package version, torch and machine."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{package}-{release}-{torch_pin.replace('==', '')}")
    return cache_dir() / "bisect-sets" / readable / host_key()


def recorder(package: str, cards: list[str], torch_pin: str, log: list[str]):
    """``record(release)`` for the search: the cached set, or the release's environment built
    (or reused) and the cards recorded in it; ReleaseSkipped with one line when it cannot be.
    Each release's line goes to the terminal as it happens (a search runs for minutes)."""
    wanted = sorted(cards) or [DEFAULT]

    def record(release: str) -> Path:
        folder = set_folder(package, release, torch_pin)
        marker = folder / MARKER
        if marker.is_file() and covers(json.loads(marker.read_text(encoding="utf-8")).get("cards", []), wanted):
            say(log, f"{release}: reusing its recorded set {folder}")
            return folder
        side = environments.Side(f"{package} {release}", (f"{package}=={release}",))
        started = time.monotonic()
        try:
            env = environments.prepare(side, torch_pin)
            environments.run(environments.record_command(env, folder, cards), f"recording under {side.describe()}")
        except environments.SideFailed as exc:
            raise ReleaseSkipped(one_line(str(exc))) from None
        marker.write_text(json.dumps({"cards": wanted, "release": release}), encoding="utf-8")
        say(log, f"{release}: recorded in {time.monotonic() - started:.0f} s")
        return folder

    return record


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


def as_json(found: Bisection, package: str) -> str:
    def entry(t: Transition) -> dict:
        return {**t.__dict__, "exact": t.exact, "line": t.line(), "notes": release_notes(package, t.release)}

    return json.dumps(
        {
            "package": package,
            "good": found.good,
            "bad": found.bad,
            "releases": list(found.releases),
            "recorded": found.recorded,
            "skipped": found.skipped,
            "transitions": [entry(t) for t in found.transitions],
        },
        indent=2,
    )


def run_bisect(args: argparse.Namespace) -> int:
    if not (REPO_ROOT / "pyproject.toml").is_file():
        print("lm-probes bisect: needs a source checkout of lm-probes (it installs it per release)", file=sys.stderr)
        return BAD_INPUT
    try:
        releases = releases_between(index_versions(args.package, args.pre), args.good, args.bad, args.package)
    except IndexUnreadable as exc:
        print(f"lm-probes bisect: the index could not list {args.package}'s releases: {exc}", file=sys.stderr)
        return COULD_NOT_RUN
    except ValueError as exc:
        print(f"lm-probes bisect: {exc}", file=sys.stderr)
        return BAD_INPUT
    print(f"bisect {args.package} {args.good} → {args.bad}: {len(releases)} releases ({', '.join(releases)})")
    if args.dry_run:
        return NOTHING_CHANGED
    torch_pin, log = environments.torch_pin(), []
    started = time.monotonic()
    try:
        found = bisect(
            releases,
            recorder(args.package, args.card, torch_pin, log),
            lambda a, b: sets.compare_sets(a, b, args.card or None),
        )
    except EndNotRecorded as exc:
        print(f"lm-probes bisect: {exc}", file=sys.stderr)
        return COULD_NOT_RUN
    for release, why in found.skipped.items():
        print(f"skipped {release}: {why}")
    for transition in found.transitions:
        link = release_notes(args.package, transition.release)
        print(transition.line() + (f"  {link}" if link else ""))
    index = write_bisect_pages(
        found, args.package, Path(args.output), lambda release: release_notes(args.package, release)
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(as_json(found, args.package), encoding="utf-8")
    code = CHANGED if found.transitions else NOTHING_CHANGED
    verdict = f"{len(found.transitions)} transition(s)" if found.transitions else "nothing changed"
    print(
        f"report: {index}  (exit {code}: {verdict}; {len(found.recorded)} releases recorded or reused, "
        f"{len(found.skipped)} skipped, {time.monotonic() - started:.0f} s)"
    )
    return code
