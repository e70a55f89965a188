"""Fuzz the doors (issue 32): the shipped cards and snapshot files, mutated (types, ranges,
names, dropped and unknown fields, truncation, encodings), and the command line with
generated arguments. Every outcome is a valid result or one clear refusal: a Card or a
CardError, a snapshot or a SnapshotError, exit 0, 1 or 4; never another exception, never a
traceback, never a write outside the folders the test named (WriteAudit).

The command line's expensive work (loading a model or tokenizer, a subprocess such as pip,
the network) is stopped where it starts, by ``_Accepted``: reaching it means the input was
accepted. make test runs the bounded ``default`` profile; ``make fuzz`` the ``deep`` one
(tests/unit/fuzz_strategies.py)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from lm_probes.cards.card import Card, CardError, find_card, load_card
from lm_probes.cli import main as cli
from lm_probes.paths import REPO_ROOT
from lm_probes.snapshots.record import SnapshotError, load
from tests.unit import fuzz_strategies as fz
from tests.unit.snapshots.snapshot_helpers import known_break, names_another_card
from tests.unit.write_audit import WriteAudit

CARD_FILES = sorted((REPO_ROOT / "fixtures" / "cards").glob("*.yaml"))
CARD_NAMES = [p.stem for p in CARD_FILES]
SNAPSHOT_DIR = REPO_ROOT / "fixtures" / "snapshots"
SNAPSHOT_FILES = sorted(SNAPSHOT_DIR.glob("*/*.json"))
EXIT_CODES = {0, 1, 4}

pytestmark = pytest.mark.fuzz

# each shipped document parsed once, with the paths of its nodes (where a mutation can land)
_CARDS = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in CARD_FILES}
_CARD_PATHS = {name: fz.node_paths(doc) for name, doc in _CARDS.items()}
_SNAPSHOTS = {p: json.loads(p.read_text(encoding="utf-8")) for p in SNAPSHOT_FILES}
_SNAPSHOT_PATHS = {p: fz.node_paths(doc) for p, doc in _SNAPSHOTS.items()}
_KNOWN_BREAKS = {p: known_break(s) for p, s in _SNAPSHOTS.items()}  # the second oracle's


AUDIT = WriteAudit()
sys.addaudithook(AUDIT.hook)  # an audit hook stays for the process: it is idle unless watching


# ------------------------------------------------------------------------ helpers


def _yaml_bytes(document) -> bytes:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100).encode("utf-8")


def _one_component(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\x00")


def _file_stem(document, fallback: str, taken: tuple[str, ...] = ()) -> str:
    """The file name a mutated card is written under: its (mutated) name where that can be a
    file's name, so the name-matches-file rule does not hide what the name check does."""
    name = document.get("name") if isinstance(document, dict) else None
    usable = isinstance(name, str) and _one_component(name) and name.isprintable() and len(name.encode()) <= 200
    return name if usable and name not in taken else fallback


def _one_paragraph(message: str, what: str) -> None:
    assert message.strip() and "Traceback" not in message, f"{what}: empty, or a traceback:\n{message}"
    assert "\n\n" not in message.strip(), f"{what}: more than one paragraph:\n{message}"
    assert "errors.pydantic.dev" not in message, f"{what}: pydantic's own error text:\n{message}"


def _card_or_card_error(call, what: str) -> None:
    try:
        card = call()
    except CardError as exc:
        _one_paragraph(str(exc), what)
        return
    assert isinstance(card, Card), f"{what} returned {card!r}"
    assert _one_component(card.name), f"{what}: accepted the name {card.name!r}, not one path component"
    card.written_expect  # noqa: B018 (an accepted card's expect: reads back as written without error)


class _Accepted(BaseException):  # noqa: N818 (not an error: the input got through)
    """The expensive work started: the input was accepted. A BaseException, so that no
    ``except Exception`` on the way turns it into an exit code."""


def _stop(what: str):
    def stopped(*_args, **_kwargs):
        raise _Accepted(what)

    return stopped


# the version torch_pin() reads from torch, from its metadata: the command line's doors need no torch
_TORCH_PIN = f"torch=={importlib.metadata.version('torch').split('+', 1)[0]}"


@contextlib.contextmanager
def _expensive_work_stopped(folder: Path):
    """Loading a model or tokenizer, drafting, any subprocess (pip) and the network raise
    _Accepted; the cache is inside ``folder``; the working folder is ``folder``."""
    from lm_probes.cli import draft_card as draft_cli
    from lm_probes.cli import environments
    from lm_probes.draft import measure
    from lm_probes.subjects.subject import Subject

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Subject, "_load_tokenizer", _stop("loading a tokenizer"))
        patch.setattr(Subject, "_load_model", _stop("loading a model"))
        patch.setattr(measure, "draft_card", _stop("measuring the model"))
        if hasattr(draft_cli, "draft_card"):
            patch.setattr(draft_cli, "draft_card", _stop("measuring the model"))
        patch.setattr(environments, "torch_pin", lambda: _TORCH_PIN)
        patch.setattr(subprocess.Popen, "__init__", _stop("a subprocess"))
        patch.setattr(socket.socket, "connect", _stop("the network"))
        patch.setattr(socket, "getaddrinfo", _stop("the network"))
        patch.setenv("LM_PROBES_CACHE", str(folder / "cache"))
        patch.chdir(folder)
        yield


def _run_cli(argv: list[str]) -> tuple[int | str, str, str]:
    """lm-probes ARGV in this process: the exit code (or "accepted"), stdout, stderr. Any
    other exception goes up to Hypothesis, which reports each distinct one."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str = cli.main(argv)
        except _Accepted as exc:
            code = f"accepted ({exc})"
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code
    return code, out.getvalue(), err.getvalue()


def _check_run(argv: list[str], folder: Path) -> tuple[int | str, str, str]:
    note(f"lm-probes {' '.join(argv)!r}")
    with AUDIT.watching(folder) as outside, _expensive_work_stopped(folder):
        code, out, err = _run_cli(argv)
    command = argv[0] if argv and argv[0] in ("diff", "draft-card", "upgrade-check", "run-with") else "other"
    event(f"{command}: exit {code}")  # --hypothesis-show-statistics: what got where
    note(f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}")
    assert code in EXIT_CODES or str(code).startswith("accepted"), f"exit {code!r}: {err[-2000:]}"
    assert "Traceback" not in out + err, f"a traceback:\n{err[-4000:]}"
    if code == 4:
        assert err.strip(), "exit 4 without a word on stderr"
    assert not outside, f"wrote outside {folder}: {outside}"
    return code, out, err


# -------------------------------------------------------------------------- cards


@settings(max_examples=fz.budget(1.0))
@given(data=st.data())
def test_a_mutated_card_is_a_card_or_one_card_error(tmp_path_factory, data):
    stem = data.draw(st.sampled_from(CARD_NAMES), label="card")
    fields = {"name": fz.names, "reference": fz.names | st.sampled_from(CARD_NAMES)}
    mutated = data.draw(fz.mutated_document(_CARDS[stem], _CARD_PATHS[stem], fields), label="mapping").value
    raw = data.draw(fz.mutated_bytes(_yaml_bytes(mutated)), label="bytes").value
    folder = tmp_path_factory.mktemp("card")
    path = folder / f"{_file_stem(mutated, stem)}.yaml"
    path.write_bytes(raw)
    asked = data.draw(fz.names, label="a name asked for")
    with AUDIT.watching(folder) as outside:
        _card_or_card_error(lambda: load_card(path), f"load_card({path.name!r})")
        _card_or_card_error(lambda: find_card(str(path)), "find_card(path)")
        _card_or_card_error(lambda: find_card(path.stem, [folder]), f"find_card({path.stem!r}, [folder])")
        _card_or_card_error(lambda: find_card(asked, [folder]), f"find_card({asked!r}, [folder])")
    assert not outside, f"reading a card wrote {outside}"


@settings(max_examples=fz.budget(0.15))
@given(data=st.data())
def test_list_cards_lists_a_broken_card_as_invalid_and_every_other_card(tmp_path_factory, data):
    """One bad file is one bad card: --lm-probes-list-cards (the plugin's pytest_cmdline_main) names
    it, INVALID or not, and lists every shipped card, with exit 0."""
    stem = data.draw(st.sampled_from(CARD_NAMES), label="card")
    # a name of its own: a card of a shipped card's name is the duplicate door (test_cards.py)
    renamed = {**_CARDS[stem], "name": f"fuzzed-{stem}"}
    mutated = data.draw(fz.mutated_document(renamed, _CARD_PATHS[stem], {"name": fz.names}), label="mapping").value
    raw = data.draw(fz.mutated_bytes(_yaml_bytes(mutated)), label="bytes").value
    folder = tmp_path_factory.mktemp("cards")
    listed = _file_stem(mutated, f"fuzzed-{stem}", taken=tuple(CARD_NAMES))
    (folder / f"{listed}.yaml").write_bytes(raw)
    out, err = io.StringIO(), io.StringIO()
    with AUDIT.watching(folder) as outside, pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)  # the plugin and the ini options as a user's pytest sees them
        for name in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
            patch.delenv(name, raising=False)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = pytest.main(
                [
                    "-p",
                    "no:cacheprovider",
                    f"--html={folder / 'r.html'}",
                    "--lm-probes-list-cards",
                    "--lm-probes-cards-dir",
                    str(folder),
                ]
            )
    shown = out.getvalue() + err.getvalue()
    note(shown)
    assert "Traceback" not in shown and "INTERNALERROR" not in shown, shown
    assert code == 0, f"--lm-probes-list-cards exited {code}:\n{shown}"
    lines = out.getvalue().splitlines()
    for name in [listed, *CARD_NAMES]:
        assert any(line.startswith((f"{name}:", f"{name} [")) for line in lines), f"{name} not listed:\n{shown}"
    assert not outside, f"--lm-probes-list-cards wrote {outside}"


# ---------------------------------------------------------------------- snapshots


@settings(max_examples=fz.budget(0.75))
@given(data=st.data())
def test_a_mutated_snapshot_is_refused_or_compared_and_diff_exits_0_1_or_4(tmp_path_factory, data):
    committed = data.draw(st.sampled_from(SNAPSHOT_FILES), label="snapshot")
    card, machine_class = committed.parent.name, committed.stem
    fields = {"card": st.sampled_from(CARD_NAMES) | fz.names, "format": fz.odd_values}
    mutated = data.draw(
        fz.mutated_document(_SNAPSHOTS[committed], _SNAPSHOT_PATHS[committed], fields), label="json"
    ).value
    text = json.dumps(mutated, ensure_ascii=data.draw(st.booleans()), indent=data.draw(st.sampled_from([None, 1])))
    raw = data.draw(fz.mutated_bytes(text.encode("utf-8")), label="bytes").value
    folder = tmp_path_factory.mktemp("snapshots")
    mutated_file = folder / "a" / card / f"{machine_class}.json"
    mutated_file.parent.mkdir(parents=True)
    mutated_file.write_bytes(raw)
    mode = data.draw(st.sampled_from(["--card", "files", "files reversed", "folders"]), label="diff of")
    sides = {
        "--card": [str(folder / "a"), str(SNAPSHOT_DIR), "--card", card],
        "files": [str(mutated_file), str(committed)],
        "files reversed": [str(committed), str(mutated_file)],
        "folders": [str(folder / "a"), str(SNAPSHOT_DIR)],
    }[mode]
    report = data.draw(st.sampled_from(["diff.html", "out/diff.html"]), label="--html")
    argv = ["diff", *sides, "--html", str(folder / report), "--json", str(folder / "out" / "diff.json")]

    with AUDIT.watching(folder) as outside:
        try:
            loaded = load(mutated_file, "re-record it", card=card)
            assert isinstance(loaded, dict) and "observed" in loaded, f"load returned {type(loaded).__name__}"
        except SnapshotError as exc:
            _one_paragraph(str(exc), "record.load")
    assert not outside, f"loading a snapshot wrote {outside}"
    code, _, err = _check_run(argv, folder)
    if names_another_card(raw, card):
        assert code == 4, f"a snapshot of another card was compared as {card}'s (exit {code}): {err}"
    # The second oracle: a mutated baseline is refused, or still catches a known break of its card
    (broken := folder / "broken" / card / f"{machine_class}.json").parent.mkdir(parents=True)
    broken.write_text(json.dumps(_KNOWN_BREAKS[committed]), encoding="utf-8")
    caught, _, err = _check_run(["diff", str(mutated_file.parent.parent), str(broken.parent.parent), "--card", card,
                                 "--html", str(folder / "break.html")], folder)  # fmt: skip
    assert caught in (1, 4), f"the mutated baseline lets a known break of {card} pass (exit {caught}): {err[-1000:]}"


# -------------------------------------------------------------------- command line


@settings(max_examples=fz.budget(0.5))
@given(data=st.data())
def test_diff_with_generated_arguments_exits_0_1_or_4(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("diff")
    argv = fz.resolve(data.draw(fz.diff_argv(CARD_NAMES), label="argv"), fz.scene(folder, data.draw))
    _check_run(argv, folder)


@settings(max_examples=fz.budget(0.5))
@given(data=st.data())
def test_draft_card_with_generated_arguments_is_refused_or_reaches_the_measuring(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("draft")
    argv = fz.resolve(data.draw(fz.draft_argv(CARD_NAMES), label="argv"), fz.scene(folder, data.draw))
    _check_run(argv, folder)


def _parses(requirement: str) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(requirement)
    except InvalidRequirement:
        return False
    return True


@settings(max_examples=fz.budget(0.5))
@given(data=st.data())
def test_upgrade_check_and_run_with_refuse_a_bad_requirement_before_building(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("environments")
    drawn = data.draw(fz.environment_argv(CARD_NAMES), label="argv")
    code, _, err = _check_run(fz.resolve(drawn, fz.scene(folder, data.draw)), folder)
    invalid = [r for r in fz.requirements_of(drawn) if not _parses(r)]
    if invalid and "--dry-run" not in drawn and code != 4:
        pytest.fail(f"the invalid requirement(s) {invalid} were not refused (exit 4) before the build: {code}")


@st.composite
def _any_argv(draw: st.DrawFn, card_names: list[str]) -> list[str]:
    words = st.sampled_from(["diff", "draft-card", "upgrade-check", "run-with", "--help", "-h", "--", "--card"])
    return draw(st.lists(words | fz.argv_names | st.sampled_from(fz.PATHS), max_size=6))


@settings(max_examples=fz.budget(0.5))
@given(data=st.data())
def test_any_command_line_exits_0_1_or_4(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("argv")
    argv = fz.resolve(data.draw(_any_argv(CARD_NAMES), label="argv"), fz.scene(folder, data.draw))
    _check_run(argv, folder)
