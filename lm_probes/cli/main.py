"""``lm-probes``: the command-line parser; each subcommand's module is imported when it runs.

    lm-probes diff A B [--card NAME] [--html PATH] [--json PATH]
    lm-probes upgrade-check --from transformers==4.57.6 --to transformers==5.23.0 [--card NAME]
    lm-probes bisect --package transformers --good 4.57.6 --bad 5.23.0 [--card NAME]
    lm-probes run-with transformers==4.57.6 [-- PYTEST ARGS]
    lm-probes draft-card --gguf-file ~/models/x.gguf --name my-model -o my_cards/my-model.yaml

Exit codes: 0 no difference beyond tolerance, 1 differences (draft-card: a model whose stop
ids miss its chat template's end of turn; bisect: transitions found), 2 an environment could
not be built or could not record (upgrade-check, bisect's ends), 4 bad input (missing or
unreadable sets, no card in common, not a source checkout).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from lm_probes import paths
from lm_probes.cards.choices import DEVICE_PATTERN, card_name_problem
from lm_probes.draft.settings import DEFAULT_DRAWS, DEFAULT_PROMPT_FORMAT, MAX_DRAWS
from lm_probes.exit_codes import BAD_INPUT

DEFAULT_OUTPUT = Path("reports") / "upgrade-check"

# ------------------------------------------------------------- the options' checks
# Each is an argparse ``type``: a bad value is refused by the parser (exit 4, one sentence)
# before any model loads or any environment is built.


def requirement(text: str) -> str:
    """A requirement as pip reads it (PEP 508: transformers==4.57.6, bitsandbytes>=0.49)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a requirement pip can read ({reason}): write it as NAME==VERSION, "
            "e.g. transformers==4.57.6"
        ) from None
    return text


def package_name(text: str) -> str:
    """A project name as the index spells it (PEP 508's name: letters, digits, . _ -)."""
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a package name: give it as pip does, e.g. transformers")
    return text


def version(text: str) -> str:
    """A release as the index lists it (PEP 440), e.g. 4.57.6."""
    from packaging.version import InvalidVersion, Version

    try:
        Version(text)
    except InvalidVersion:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version: give a release, e.g. 4.57.6") from None
    return text


def card_name(text: str) -> str:
    """A card's name: its file name without .yaml, one path component (cards/choices.py)."""
    problem = card_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def draws(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give 1 to {MAX_DRAWS}") from None
    if not 1 <= count <= MAX_DRAWS:
        raise argparse.ArgumentTypeError(
            f"{count} draws is out of range: give 1 to {MAX_DRAWS} (all draws are sampled in one batch)"
        )
    return count


def jobs(text: str) -> int:
    """--jobs: how many releases are recorded at once (each on one torch thread)."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give 1 or more") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{count} jobs records nothing: give 1 or more (default: the CPUs)")
    return count


def prompt_format(text: str) -> str:
    if text != "chat" and "{question}" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} has no {{question}} in it: write one there, or give 'chat'")
    return text


def user_path(text: str) -> str:
    """A path argument with ``~`` expanded (paths.user_path: a CI file runs no shell); an empty one
    stays empty, for the command's own check to refuse."""
    return str(paths.user_path(text)) if text else text


def device(text: str) -> str:
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: give cpu, cuda, cuda:N, mps or auto")
    return text


# ---------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # a usage error is bad input: exit 4, as pytest's
        self.print_usage(sys.stderr)
        self.exit(BAD_INPUT, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="lm-probes", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    d = commands.add_parser("diff", help="compare two recorded observation sets (snapshot folders or files)")
    d.add_argument(
        "a", type=user_path, help="the first set: a snapshot folder (<card>/<device>.json) or one snapshot file"
    )
    d.add_argument("b", type=user_path, help="the second set, compared against the first")
    d.add_argument("--card", action="append", help="compare only this card (repeatable)")
    d.add_argument("--html", type=user_path, default=str(Path("reports") / "diff.html"), help="where the report goes")
    d.add_argument("--json", type=user_path, help="also write the differences as JSON here")
    _summary_option(d)
    d.add_argument("--label-a", help="what to call the first set in the report (default: its path)")
    d.add_argument("--label-b", help="what to call the second set")
    d.set_defaults(run="lm_probes.cli.diff:run_diff")

    u = commands.add_parser(
        "upgrade-check",
        help="record the cards under two sets of package versions and compare",
        description="Each side gets a cached virtual environment: the same torch as this one, this project, "
        "and the side's requirements (e.g. transformers==4.57.6).",
    )
    u.add_argument(
        "--from", dest="from_", nargs="+", required=True, type=requirement, metavar="REQ", help="the side upgraded from"
    )
    u.add_argument("--to", nargs="+", required=True, type=requirement, metavar="REQ", help="the side upgraded to")
    u.add_argument("--card", action="append", default=[], help="record and compare only this card (repeatable)")
    u.add_argument(
        "--output", type=user_path, default=str(DEFAULT_OUTPUT), help="where both sides' snapshots and the report go"
    )
    u.add_argument("--html", type=user_path, help="the report (default: OUTPUT/report.html)")
    u.add_argument("--json", type=user_path, help="also write the differences as JSON here")
    _summary_option(u)
    _environment_options(u)
    u.set_defaults(run="lm_probes.cli.upgrade_check:run_upgrade_check")

    b = commands.add_parser(
        "bisect",
        help="find the release of a package that changed each section differing between two releases",
        description="Records the cards under --good and --bad (as upgrade-check does), then, for each section that "
        "differs, searches the releases between them for the first one where it leaves --good's value, and "
        "confirms it by the release before. Environments and recorded sets are cached per release.",
    )
    b.add_argument("--package", required=True, type=package_name, help="e.g. transformers")
    b.add_argument("--good", required=True, type=version, help="the release that behaves as expected, e.g. 4.57.6")
    b.add_argument("--bad", required=True, type=version, help="a later release that does not, e.g. 5.23.0")
    b.add_argument("--card", action="append", default=[], type=card_name, help="only this card (repeatable)")
    b.add_argument("--pre", action="store_true", help="include pre-releases (left out by default)")
    b.add_argument(
        "--output", type=user_path, default=str(Path("reports") / "bisect"), help="where the pages go (index.html)"
    )
    b.add_argument("--json", type=user_path, help="also write the transitions as JSON here")
    _summary_option(b)
    _jobs_option(b)
    b.add_argument("--dry-run", action="store_true", help="list the releases in the range, and stop")
    b.set_defaults(run="lm_probes.cli.bisect:run_bisect")

    c = commands.add_parser(
        "changelog",
        help="record each release of a package in a range and write which card sections changed in which release",
        description="Releases as rows, card sections as columns: each release compared with the previous one where "
        "the card recorded, as Markdown and HTML. The output folder keeps every recorded release, so a later run "
        "adds only new ones (e.g. --every patch over part of a range first done --every minor).",
    )
    c.add_argument("--package", required=True, type=package_name, help="e.g. transformers")
    c.add_argument("--from", dest="from_", required=True, type=version, help="the oldest release, e.g. 4.46.0")
    c.add_argument("--to", type=version, help="the newest release (default: the newest on the index)")
    c.add_argument(
        "--every",
        choices=("minor", "patch"),
        default="minor",
        help="minor: the newest patch of each minor release (default); patch: every release",
    )
    c.add_argument("--card", action="append", default=[], type=card_name, help="only this card (repeatable)")
    c.add_argument("--pre", action="store_true", help="include pre-releases (left out by default)")
    c.add_argument(
        "--output", type=user_path, default=str(Path("reports") / "changelog"), help="the changelog's folder (kept)"
    )
    c.add_argument("--markdown", type=user_path, help="the Markdown page (default: OUTPUT/changelog.md)")
    c.add_argument("--html", type=user_path, help="the HTML page (default: OUTPUT/changelog.html)")
    _jobs_option(c)
    c.add_argument("--dry-run", action="store_true", help="list the releases selected, and stop")
    c.set_defaults(run="lm_probes.cli.changelog:run_changelog")

    n = commands.add_parser(
        "unused-snapshots",
        help="list recorded snapshots nothing reads any more (a card removed, a section dropped or left out)",
        description="As syrupy's unused-snapshot report: files whose card no cards folder holds, and sections no "
        "section of this version knows or that the card leaves out. Exit 1 when any is found.",
    )
    n.add_argument(
        "--snapshot-dir", type=user_path, help="the snapshots folder (default: the shipped fixtures/snapshots)"
    )
    n.add_argument(
        "--cards-dir", type=user_path, action="append", default=[], help="a folder of your cards (repeatable)"
    )
    n.add_argument("--delete", action="store_true", help="remove the whole files whose card is gone")
    n.set_defaults(run="lm_probes.cli.unused_snapshots:run_unused_snapshots")

    w = commands.add_parser(
        "run-with",
        help="run the suite under other package versions (in the environment upgrade-check builds for them)",
        description="e.g. `lm-probes run-with transformers==4.57.6 -- tests/behaviour/test_snapshot.py`: what "
        "follows -- goes to pytest (default: tests/behaviour); the environment is built once and cached; pytest's "
        "exit code is returned.",
    )
    w.add_argument(
        "requirements",
        nargs="+",
        type=requirement,
        metavar="REQ",
        help="the versions to run under, e.g. transformers==4.57.6",
    )
    _environment_options(w)
    w.set_defaults(run="lm_probes.cli.run_with:run_with")

    c = commands.add_parser(
        "draft-card",
        help="load a model once, run every probe, and write a card of what it measured",
        description="Writes a complete card: measured ids, tokens, BOS behaviour, greedy texts, knowledge answers "
        "(wrong ones as strict xfails), bounds with stated margins (sampling over a seed sweep). Review it, commit it; "
        "the suite then passes on it and fails when the model or a library changes what it does.",
    )
    src = c.add_argument_group("the model (exactly one)")
    src.add_argument("--card", help="re-measure an existing card's sources (a name or a path)")
    src.add_argument("--model", help="a hub id or a local folder (tokenizer from the same place)")
    src.add_argument("--gguf-file", help="a .gguf file anywhere (~ is written back as ~ in the card)")
    c.add_argument(
        "--name",
        type=card_name,
        help="the card's name (its file name without .yaml); required with --model/--gguf-file",
    )
    c.add_argument("--description", help="the card's description (default: a line asking you to write one)")
    c.add_argument(
        "--output",
        "-o",
        type=user_path,
        help="write the card here (default: standard output); never overwritten without --force",
    )
    c.add_argument("--force", action="store_true", help="overwrite --output")
    c.add_argument("--snapshot-dir", type=user_path, help="also record the card's snapshot in this folder")
    c.add_argument(
        "--draws",
        type=draws,
        default=DEFAULT_DRAWS,
        help="groups of samples the counts of distinct samples (D7, D8, K2) and D8's bigrams hold for: the "
        f"suite's seed-0 call and N-1 more (default {DEFAULT_DRAWS}, at most {MAX_DRAWS}); the shares "
        "(D6, D7) come from measured probabilities",
    )
    c.add_argument(
        "--prompt-format",
        default=DEFAULT_PROMPT_FORMAT,
        type=prompt_format,
        help='how knowledge questions are asked ({question} is replaced; "chat" = the chat template)',
    )
    c.add_argument("--device", type=device, help="cpu, cuda, ... (default: the card's, or cpu)")
    c.add_argument(
        "--dtype", choices=["float32", "float16", "bfloat16", "auto"], help="(default: the card's, or float32)"
    )
    c.add_argument("--quantization", choices=["none", "nf4", "int8"], help="bitsandbytes quantization on load")
    c.add_argument("--reference", help="a full-precision card of the same weights: drafts expect.drift")
    c.add_argument(
        "--cards-dir", type=user_path, action="append", default=[], help="a folder of your own cards (repeatable)"
    )
    c.add_argument(
        "--accept-turn-end-not-a-stop-id",
        action="store_true",
        help="draft a model whose stop ids miss its chat template's end of turn (otherwise refused, exit 1): "
        "the card records the check as a strict xfail whose reason names the token, its id and the stop ids",
    )
    c.set_defaults(run="lm_probes.cli.draft_card:run_draft_card")
    return top


def _summary_option(command: argparse.ArgumentParser) -> None:
    """--summary of diff, upgrade-check and bisect: the CI summary (report/ci_summary.py)."""
    command.add_argument(
        "--summary",
        type=user_path,
        help="also write a short Markdown summary here (and append it to $GITHUB_STEP_SUMMARY when set)",
    )


def _jobs_option(command: argparse.ArgumentParser) -> None:
    """--jobs of bisect and changelog: releases recorded at once, each on one torch thread."""
    command.add_argument(
        "--jobs", type=jobs, default=max(1, os.cpu_count() or 1), help="releases recorded at once (default: CPUs)"
    )


def _environment_options(command: argparse.ArgumentParser) -> None:
    """What upgrade-check and run-with share: they build and use the same cached environments."""
    command.add_argument("--rebuild", action="store_true", help="build the cached environment(s) anew")
    command.add_argument("--dry-run", action="store_true", help="print what would be built and run, and stop")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # what follows "--" is pytest's (run-with), never lm-probes' own options
    forwarded = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if forwarded and args.command != "run-with":
        parser().error(f"{args.command} takes no arguments after --")
    args.pytest_args = forwarded
    # each command's module is imported when it runs, as pip does its commands: the parser
    # (and --help) loads neither torch nor the snapshot machinery
    # an installed plugin's sections, sources and engines are known to every command (they run
    # no conftest); one that fails to import is said once, before any work
    from lm_probes.registry import PluginLoadError, load_plugins

    try:
        load_plugins()
    except PluginLoadError as exc:
        print(f"lm-probes {args.command}: {exc}", file=sys.stderr)
        return BAD_INPUT
    module, _, function = args.run.partition(":")
    return getattr(importlib.import_module(module), function)(args)


if __name__ == "__main__":
    sys.exit(main())
