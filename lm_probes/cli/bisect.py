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
import json
import sys
import time
from pathlib import Path

from lm_probes.cli import environments
from lm_probes.cli.release_sets import IndexUnreadable, index_versions, parsed_versions, record_release, release_notes
from lm_probes.exit_codes import BAD_INPUT, COULD_NOT_RUN
from lm_probes.paths import REPO_ROOT
from lm_probes.report import ci_summary
from lm_probes.report.diff import write_bisect_pages
from lm_probes.snapshots import sets
from lm_probes.snapshots.bisection import Bisection, EndNotRecorded, ReleaseSkipped, Transition, bisect

NOTHING_CHANGED, CHANGED = 0, 1


def releases_between(versions: list[str], good: str, bad: str, package: str) -> list[str]:
    """The releases from ``good`` to ``bad``, both included, in release order; ValueError (one
    sentence) when either is not on the index or good is not older than bad."""
    parsed = parsed_versions(versions)
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


def recorder(package: str, cards: list[str], torch_pin: str, log: list[str]):
    """``record(release)`` for the search: the release's set (release_sets.py), or
    ReleaseSkipped with one line when it cannot be installed or a card was not recorded (the
    search compares whole sets)."""

    def record(release: str) -> Path:
        found = record_release(package, release, cards, torch_pin, log)
        problem = found.problem()
        if problem:
            raise ReleaseSkipped(problem)
        return found.folder

    return record


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
            width=args.jobs,
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
    markdown = ci_summary.bisect_markdown(args.package, args.good, args.bad, found, index, code)
    ci_summary.write(markdown, Path(args.summary) if args.summary else None)
    return code
