"""``lm-probes draft-card``: measure a model and write a card for it, every bound with the margin
it was set with (lm_probes/draft)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lm_probes import progress
from lm_probes.draft.measure import draft_card
from lm_probes.draft.settings import Draft, DraftSettings
from lm_probes.draft.turn_end import TurnEndNotAStop, refusal, turn_end_before_measuring
from lm_probes.draft.writer import card_text, kept_entries
from lm_probes.ledger import LEDGER
from lm_probes.paths import write_blocker
from lm_probes.snapshots import sets

if TYPE_CHECKING:
    from lm_probes.cards.card import Card
    from lm_probes.subjects.subject import Subject

# The command line was right, the model is not: its stop ids miss its own turn end. 1 as
# pytest's "tests failed" (a check every model must pass fails), not 4 (BAD_INPUT: nothing
# the user typed is wrong, and changing the arguments does not help; fixing the model's files does).
MODEL_DEFECT = 1


def run_draft_card(args: argparse.Namespace) -> int:
    """Load the model once, run every probe, write the card (and its snapshot)."""
    from lm_probes.cards.card import CardError, find_card
    from lm_probes.cards.files import SubjectLoadError
    from lm_probes.subjects.subject import Subject

    output = Path(args.output) if args.output else None
    if output is not None and output.is_file() and not args.force:
        return _bad_input(f"{output} exists; pass --force to overwrite it, or choose another --output")
    try:
        base = draft_base(args)
        reference = Subject(find_card(args.reference, args.cards_dir)) if args.reference else None
    except (CardError, ValueError) as exc:
        return _bad_input(str(exc))
    name = args.name or base.name
    # where the card and its snapshot go is checked before anything is measured (minutes)
    if problem := output_problem(output, name, args.snapshot_dir):
        return _bad_input(problem)
    card = base.replace(name=name, expect={}, xfail=[], skip=[])
    subject = Subject(card, seed=0)  # seed 0: the suite's default, so its sampled calls are the first draw
    settings = DraftSettings(
        draws=args.draws,
        prompt_format=args.prompt_format,
        reference=reference,
        accept_turn_end_not_a_stop_id=args.accept_turn_end_not_a_stop_id,
    )
    started = time.monotonic()
    with progress_bar(args) as bar:
        try:
            # U7 first: it needs the tokenizer and the stop ids only, measuring takes minutes
            problem = turn_end_before_measuring(subject).problem()
            if problem is not None and not settings.accept_turn_end_not_a_stop_id:
                return _model_defect(refusal(problem))
            with LEDGER.probe(progress.OTHER_PROBES, subject.name):
                draft = draft_card(subject, settings)
        except SubjectLoadError as exc:
            return _bad_input(f"the model could not be loaded: {exc}")
        except TurnEndNotAStop as exc:  # the loaded model's own generation_config disagrees with the file's
            return _model_defect(str(exc))
        written = _write(args, base, output, subject, settings, draft, bar)
    print(f"measured in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return written


def progress_bar(args: argparse.Namespace) -> progress.DraftBar:
    """The bar over the draft's phases, on standard error where wanted (a terminal, no CI, or
    LM_PROBES_PROGRESS=on). Where not, transformers' own bars (the GGUF conversion's) are
    silenced too: tqdm draws them on any stream, and a log keeps every redraw as a line."""
    show = progress.wanted(progress.mode_from_env(), sys.stderr)
    if not show:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return progress.DraftBar(progress.draft_plan(args.draws, snapshot=bool(args.snapshot_dir)), sys.stderr, show)


def _write(
    args: argparse.Namespace,
    base: Card,
    output: Path | None,
    subject: Subject,
    settings: DraftSettings,
    draft: Draft,
    bar: progress.DraftBar,
) -> int:
    """The drafted card written (checked to read back first), and its snapshot recorded."""
    from lm_probes.cards.card import load_card
    from lm_probes.environment import environment_info
    from lm_probes.snapshots.record import record

    card, name, sources = subject.card, subject.card.name, sources_yaml(base)
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
        kept_skip=kept_entries(base.skip),
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
        bar.note(f"wrote {output} ({len(draft.xfail)} known failures, {len(draft.left_out)} fields not drafted)")
    if args.snapshot_dir:
        # the snapshot records what the drafted expectations name (encode cases, back-ends)
        subject.card = drafted.replace(path=output or drafted.path)
        written = record(subject, Path(args.snapshot_dir))
        bar.note(f"recorded its snapshot: {written}")
    bar.finish()
    return 0


def output_problem(output: Path | None, name: str, snapshot_dir: str | None) -> str | None:
    """Why the card (``-o``) or its snapshot (``--snapshot-dir``) could not be written where
    asked, in one sentence, or None: checked up front, nothing created yet."""
    if output is not None:
        if output.is_dir():
            return f"--output {output} is a folder: give the card's file in it, e.g. {output / (name + '.yaml')}"
        if output.exists() and not output.is_file():
            return f"--output {output} is not a regular file: give a path for the card's .yaml file"
        if output.stem != name or output.suffix != ".yaml":
            return f"a card named {name} must be written to {name}.yaml, not {output.name}"
        if problem := folder_problem(output.parent, "--output's folder"):
            return problem
    if snapshot_dir is not None:
        folder = Path(snapshot_dir)
        if folder.exists() and not folder.is_dir():
            return f"--snapshot-dir {folder} is a file, not a folder: give a folder for the card's snapshot"
        if problem := folder_problem(folder, "--snapshot-dir"):
            return problem
    return None


def folder_problem(folder: Path, what: str) -> str | None:
    """Why ``folder`` cannot be written in, or created (its nearest existing parent is a
    file, or not writable), or None."""
    blocker = write_blocker(folder)
    if blocker is None:
        return None
    existing, kind = blocker
    if kind == "file":
        return f"{what} {folder} cannot be created: {existing} is a file, not a folder"
    created = "written in" if existing == folder else f"created ({existing} is not writable)"
    return f"{what} {folder} cannot be {created}: choose a folder you can write to"


def _bad_input(message: str) -> int:
    print(f"lm-probes draft-card: {message}", file=sys.stderr)
    return sets.BAD_INPUT


def _model_defect(message: str) -> int:
    print(f"lm-probes draft-card: {message}", file=sys.stderr)
    return MODEL_DEFECT


def draft_base(args: argparse.Namespace) -> Card:
    """The card whose sources the draft loads and writes: --card as it is, or one built
    from --model / --gguf-file with the tokenizer from the model; --device, --dtype and
    --quantization change its load section (what is measured is what the card says)."""
    from lm_probes.cards.card import Card, find_card
    from lm_probes.cards.gguf_header import gguf_problem
    from lm_probes.cards.loading import LoadSettings
    from lm_probes.cards.sources import FollowModel, GgufFileSource, HubSource

    given = [x for x in (args.card, args.model, args.gguf_file) if x]
    if len(given) != 1:
        raise ValueError("give exactly one of --card NAME|PATH, --model ID|FOLDER, --gguf-file PATH")
    asked = {
        k: v for k, v in (("device", args.device), ("dtype", args.dtype), ("quantization", args.quantization)) if v
    }
    if args.card:
        base = find_card(args.card, args.cards_dir)
        return base.replace(load=LoadSettings.model_validate({**base.load.model_dump(), **asked}))
    if not args.name:
        raise ValueError("--name is required with --model or --gguf-file: the card's file name")
    if args.model:
        if args.model.endswith(".gguf") and Path(args.model).expanduser().is_file():
            raise ValueError(f"--model {args.model} is a GGUF file: pass it as --gguf-file {args.model}")
        model = HubSource(source="hf", id=_home_relative(args.model))
    else:
        gguf = Path(args.gguf_file).expanduser()
        if not gguf.is_file():
            raise ValueError(f"--gguf-file {args.gguf_file}: no such file")
        if problem := gguf_problem(gguf):
            raise ValueError(f"--gguf-file {problem}: download it again")
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


def sources_yaml(card: Card) -> dict:
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
