"""``lm-probes changelog --package NAME --from A --to B [--every minor|patch]``: record each
selected release of a package (the cached environments and recorded sets bisect uses,
cli/release_sets.py) and write the behaviour changelog: releases as rows, card sections as
columns, each release compared with the one before (snapshots/changelog.py), as Markdown and
HTML (report/changelog.py).

The output folder keeps what was recorded (snapshots/changelog_store.py), so a later run adds
only the releases it has not recorded (``--every patch`` over part of a range already done
``--every minor`` adds the patches), and the page can be re-rendered from the folder alone.
Releases are recorded ``--jobs`` at a time: each recording runs one torch thread.
Exit 0: nothing changed; 1: some section changed; 2: the index could not be read; 4: bad input.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from lm_probes.cli import environments
from lm_probes.cli.release_sets import IndexUnreadable, index_versions, parsed_versions, record_release, release_notes
from lm_probes.exit_codes import BAD_INPUT, COULD_NOT_RUN
from lm_probes.paths import REPO_ROOT
from lm_probes.report.changelog import render
from lm_probes.snapshots import sets
from lm_probes.snapshots.changelog import Matrix, build
from lm_probes.snapshots.changelog_store import Store, StoreMismatch

NOTHING_CHANGED, CHANGED = 0, 1


def select_releases(
    versions: list[str], first: str, last: str | None, every: str, package: str, pre: bool = False
) -> list[str]:
    """The releases from ``first`` to ``last`` (the newest listed when None), both included, in
    release order: every one (``patch``), or the newest patch of each minor (``minor``: what
    ``pip install 'NAME~=X.Y.0'`` gets). Pre-releases only with ``pre``.
    ValueError (one sentence) when the range is empty or backwards."""
    from packaging.version import Version

    parsed = parsed_versions(versions, pre)
    low = Version(first)
    high = Version(last) if last else max(parsed.values(), default=low)
    if last and low > high:
        raise ValueError(f"--from {first} is newer than --to {last}: give the older release as --from")
    chosen = sorted((v for v in parsed if low <= parsed[v] <= high), key=parsed.__getitem__)
    if every == "minor":
        newest = {parsed[v].release[:2]: v for v in chosen}  # later patches overwrite earlier ones
        chosen = sorted(newest.values(), key=parsed.__getitem__)
    if not chosen:
        newest = max(parsed.values(), default=None)
        raise ValueError(
            f"the index lists no {package} release from {first} to {last or 'the newest'} (it lists "
            f"{len(parsed)} releases, the newest {newest}); give a range that holds some (pip index versions {package})"
        )
    return chosen


def command_line(args: argparse.Namespace) -> str:
    """The run, as a user would type it (kept in the changelog's provenance)."""
    words = ["lm-probes", "changelog", "--package", args.package, "--from", args.from_]
    words += ["--to", args.to] if args.to else []
    words += ["--every", args.every, *[w for card in args.card for w in ("--card", card)]]
    words += ["--output", display(Path(args.output))]
    for option, path in (("--markdown", args.markdown), ("--html", args.html)):
        words += [option, display(Path(path))] if path else []
    return shlex.join(words)


def display(path: Path) -> str:
    """A path as the page names it: relative to the checkout when inside it (the same text on
    every machine, so the committed page re-renders equal)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(resolved)


def matrix_of(store: Store) -> Matrix:
    """The store's releases, in release order, compared card by card."""
    from packaging.version import Version

    order = sorted(store.releases, key=Version)
    with tempfile.TemporaryDirectory(prefix="lm-probes-changelog-") as folder:
        entries = store.materialize(Path(folder), order)
        return build(store.package, entries, lambda a, b, card: sets.compare_sets(a, b, [card]))


def rendered(store: Store) -> tuple[Matrix, str, str]:
    """(matrix, Markdown, HTML) of a changelog folder: what the command writes, and what the
    committed page's test re-renders."""
    matrix = matrix_of(store)
    regenerate = (
        f"It is rendered from `{display(store.folder)}` (every release's recorded observations), which the "
        "commands below filled; running one again adds only releases it has not recorded."
    )
    markdown, html = render(
        matrix, store.runs, store.provenance(), lambda release: release_notes(store.package, release), regenerate
    )
    return matrix, markdown, html


def record_new(store: Store, releases: list[str], cards: list[str], jobs: int) -> list[str]:
    """Record each release not yet in the store, ``jobs`` at a time; the store is saved after
    each, so an interrupted run keeps what it finished."""
    torch_pin, log = environments.torch_pin(), []

    def one(release: str):
        return record_release(store.package, release, cards, torch_pin, log)

    added = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for found in pool.map(one, releases):
            store.add(
                found.release,
                found.folder,
                found.outcomes,
                not_installable=found.not_installable,
                not_recorded=found.not_recorded,
            )
            store.save()
            added.append(found.release)
    return added


def run_changelog(args: argparse.Namespace) -> int:
    if not (REPO_ROOT / "pyproject.toml").is_file():
        print("lm-probes changelog: needs a source checkout of lm-probes (it installs it per release)", file=sys.stderr)
        return BAD_INPUT
    output = Path(args.output)
    cards = sorted(args.card)
    try:
        store = Store.open(output, args.package, cards)
        releases = select_releases(
            index_versions(args.package, args.pre), args.from_, args.to, args.every, args.package, args.pre
        )
    except IndexUnreadable as exc:
        print(f"lm-probes changelog: the index could not list {args.package}'s releases: {exc}", file=sys.stderr)
        return COULD_NOT_RUN
    except (StoreMismatch, ValueError) as exc:
        print(f"lm-probes changelog: {exc}", file=sys.stderr)
        return BAD_INPUT
    todo = [release for release in releases if release not in store.releases]
    print(
        f"changelog {args.package}: {len(releases)} releases selected ({', '.join(releases)}); "
        f"{len(todo)} not yet in {output}"
    )
    if args.dry_run:
        return NOTHING_CHANGED
    started = time.monotonic()
    added = record_new(store, todo, cards, args.jobs)
    if added or not store.runs:
        store.runs.append(
            {
                "command": command_line(args),
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "added": added,
                "seconds": round(time.monotonic() - started),
            }
        )
        store.save()
    matrix, markdown, html = rendered(store)
    markdown_path, html_path = (
        Path(args.markdown or output / "changelog.md"),
        Path(args.html or output / "changelog.html"),
    )
    for path, text in ((markdown_path, markdown), (html_path, html)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    changes = matrix.transitions()
    for row, card, section, cell in changes:
        print(f"{card} {section}: {row.release} ({cell.since} → {row.release}): {cell.detail}")
    code = CHANGED if changes else NOTHING_CHANGED
    print(
        f"changelog: {markdown_path}, {html_path} (exit {code}; "
        f"{len(store.releases)} releases, {len(added)} added in {time.monotonic() - started:.0f} s)"
    )
    return code
