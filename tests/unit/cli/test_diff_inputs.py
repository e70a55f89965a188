"""`lm-probes diff` of sets that do not hold the same things (issue 32): every card, machine
class and section that only one side holds is named on the terminal, the page and in the
JSON, and a green never covers what was not compared. Its report's paths are checked before
anything is read. Only recorded sets: no model loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lm_probes.cli import main as cli
from lm_probes.paths import REPO_ROOT
from lm_probes.snapshots import sets
from lm_probes.snapshots.record import dumps

COMMITTED = REPO_ROOT / "fixtures" / "snapshots"
OTHERS = sorted(p.name for p in COMMITTED.iterdir() if p.is_dir() and p.name != "tiny-mistral")
NF4 = "smollm2-135m-instruct-nf4"


def _set(tmp_path: Path, name: str, card: str, *classes: str) -> Path:
    """A set holding the committed snapshots of ``card`` in ``classes`` (all of them if none)."""
    folder = tmp_path / name / card
    folder.mkdir(parents=True)
    for path in sorted((COMMITTED / card).glob("*.json")):
        if not classes or path.stem in classes:
            shutil.copy(path, folder / path.name)
    return folder.parent


def _diff(capsys, *arguments: str) -> tuple[int, str, str]:
    code = cli.main(["diff", *arguments])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ cards on one side


def test_a_card_on_one_side_only_is_named_everywhere_and_exits_4(tmp_path, capsys):
    """The break from the issue: A holds one card, B the committed five. It said "no
    difference" and exit 0. Now the card both hold is still compared and shown, and each of
    the four others is named on the terminal, the page and in the JSON, with exit 4."""
    a, page, data = _set(tmp_path, "a", "tiny-mistral"), tmp_path / "d.html", tmp_path / "d.json"
    code, out, _ = _diff(capsys, str(a), str(COMMITTED), "--html", str(page), "--json", str(data))
    assert code == sets.BAD_INPUT
    assert out.startswith("tiny-mistral: same versions and machine class: no change beyond tolerance")
    for card in OTHERS:
        assert f"{card}: only B holds this card (class " in out
    assert "exit 4: not every card was compared: " + ", ".join(f"{c} (only in B)" for c in OTHERS) in out
    assert "name the cards to compare with --card" in out
    html = page.read_text(encoding="utf-8")
    assert "Not every card was compared (a card on one side only): exit code 4." in html
    assert all(f"<tr><td>{card}</td><td>B: {COMMITTED}</td>" in html for card in OTHERS)
    entries = json.loads(data.read_text(encoding="utf-8"))
    assert [(e["card"], e["compared"]) for e in entries] == [("tiny-mistral", True)] + [(c, False) for c in OTHERS]
    assert all(e["only_in"] == "B" and e["differences"][0]["severity"] == "error" for e in entries[1:])


def test_naming_the_card_compares_it_alone_and_exits_0(tmp_path, capsys):
    """The harmless twin: the same two partial sets with ``--card tiny-mistral``: the user
    said what to compare, so the cards not asked for are neither compared nor missing."""
    a, page = _set(tmp_path, "a", "tiny-mistral"), tmp_path / "d.html"
    code, out, _ = _diff(capsys, str(a), str(COMMITTED), "--card", "tiny-mistral", "--html", str(page))
    assert code == sets.SAME and "only B holds" not in out
    assert "No difference beyond tolerance: exit code 0." in page.read_text(encoding="utf-8")


def test_two_files_of_different_cards_are_refused_naming_both(tmp_path, capsys):
    """The break: two files of different cards were compared anyway, under the first one's
    name. The harmless twin: two files of one card, whatever their folders are called (a
    file's card is its ``card`` field), and a card name with a dot in it."""
    tiny, tokenizer = COMMITTED / "tiny-mistral" / "cpu.json", COMMITTED / "mistral-tokenizer" / "cpu.json"
    page = tmp_path / "d.html"
    code, _, err = _diff(capsys, str(tiny), str(tokenizer), "--html", str(page))
    assert code == sets.BAD_INPUT and not page.exists()
    assert f"{tiny} is a snapshot of card tiny-mistral and {tokenizer} of card mistral-tokenizer" in err
    assert len(err.strip().splitlines()) == 1

    copies = []
    for folder in ("before", "after.v2"):
        (tmp_path / folder).mkdir()
        snapshot = json.loads(tokenizer.read_text(encoding="utf-8")) | {"card": "mistral.tokenizer-v0.1"}
        copies.append(tmp_path / folder / "cpu.json")
        copies[-1].write_text(dumps(snapshot), encoding="utf-8")
    code, out, _ = _diff(capsys, *map(str, copies), "--html", str(page))
    assert code == sets.SAME and out.startswith("mistral.tokenizer-v0.1: same versions")


def test_a_file_against_a_folder_compares_the_files_card(tmp_path, capsys):
    """A side given as one file names its card, as --card would: the folder's other cards
    are not missing. A file of a card the folder lacks is refused."""
    tiny = COMMITTED / "tiny-mistral" / "cpu.json"
    code, out, _ = _diff(capsys, str(tiny), str(COMMITTED), "--html", str(tmp_path / "d.html"))
    assert code == sets.SAME and "only B holds" not in out
    other = _set(tmp_path, "other", "mistral-tokenizer")
    code, _, err = _diff(capsys, str(tiny), str(other), "--html", str(tmp_path / "d.html"))
    assert code == sets.BAD_INPUT and "card(s) tiny-mistral not on both sides" in err


def test_a_folder_sets_file_of_another_card_is_refused(tmp_path, capsys):
    """A file filed under mistral-tokenizer/ whose card field says tiny-mistral."""
    a = _set(tmp_path, "a", "mistral-tokenizer")
    path = a / "mistral-tokenizer" / "cpu.json"
    path.write_text(dumps(json.loads(path.read_text(encoding="utf-8")) | {"card": "tiny-mistral"}))
    code, _, err = _diff(capsys, str(a), str(a), "--html", str(tmp_path / "d.html"))
    assert code == sets.BAD_INPUT and f"{path} is of card 'tiny-mistral', not of 'mistral-tokenizer'" in err


# ----------------------------------------------------------- classes and sections


def test_every_class_both_sides_hold_is_compared_and_one_a_side_lacks_is_named(tmp_path, capsys):
    """The NF4 card's three classes on both sides, the third one changed: only the first
    (cpu first, then by name) used to be compared, so this was exit 0. The harmless twin: A
    recorded in one class only (as one machine records) is compared in that class, exit 0,
    with B's two other classes named as not compared."""
    a, b = _set(tmp_path, "a", NF4), _set(tmp_path, "b", NF4)
    changed = b / NF4 / "cpu-bnb-packed-bfloat16.json"
    snapshot = json.loads(changed.read_text(encoding="utf-8"))
    snapshot["observed"]["tokenizer"]["vocab_size"] += 1
    changed.write_text(dumps(snapshot), encoding="utf-8")
    code, out, _ = _diff(capsys, str(a), str(b), "--html", str(tmp_path / "d.html"))
    assert code == sets.DIFFERENT
    assert f"{NF4} [cpu-bnb-packed-bfloat16]: same versions and machine class: 1 error(s) in tokenizer" in out
    assert f"{NF4} [cpu-bnb-float16]: same versions and machine class: no change beyond tolerance" in out

    one = _set(tmp_path, "one", NF4, "cpu-bnb-float16")
    page, data = tmp_path / "one.html", tmp_path / "one.json"
    code, out, _ = _diff(capsys, str(one), str(a), "--html", str(page), "--json", str(data))
    assert code == sets.SAME
    others = "cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16, cpu-bnb-packed-bfloat16"
    assert f"{NF4}: only B holds class {others} of this card: not compared" in out
    assert f"class {others} of this card: not compared" in page.read_text(encoding="utf-8")
    entries = json.loads(data.read_text(encoding="utf-8"))
    assert [(e["compared"], e["differences"][0]["severity"]) for e in entries[1:]] == [(False, "warning")]


def test_a_section_on_one_side_only_is_an_error_named_as_not_compared(tmp_path, capsys):
    """The break: tiny-mistral's attention section (not one a card may leave out) missing
    from B, as a set recorded by an older lm-probes or from an edited card would be: it was
    silently skipped, exit 0. The harmless twin: the NF4 card leaves greedy, sampled and
    first_tokens out on both sides, and that is no difference."""
    a, b = _set(tmp_path, "a", "tiny-mistral"), _set(tmp_path, "b", "tiny-mistral")
    path = b / "tiny-mistral" / "cpu.json"
    snapshot = json.loads(path.read_text(encoding="utf-8"))
    del snapshot["observed"]["attention"]
    path.write_text(dumps(snapshot), encoding="utf-8")
    page, data = tmp_path / "d.html", tmp_path / "d.json"
    code, out, _ = _diff(capsys, str(a), str(b), "--html", str(page), "--json", str(data))
    assert code == sets.DIFFERENT
    assert "1 error(s) in attention" in out and "section(s) only in A, not compared: attention" in out
    assert "Sections on one side only, not compared: only in" in page.read_text(encoding="utf-8")
    [entry] = json.loads(data.read_text(encoding="utf-8"))
    assert entry["sections_only_in_a"] == ["attention"] and entry["sections_only_in_b"] == []
    assert "only A holds this section, so it was not compared" in entry["differences"][0]["message"]

    nf4 = _set(tmp_path, "nf4", NF4, "cpu-bnb-float16")
    code, out, _ = _diff(capsys, str(nf4), str(nf4), "--html", str(page))
    assert code == sets.SAME and "only in" not in out


# ----------------------------------------------------------------------- messages


def test_a_corrupt_snapshot_in_a_set_names_the_command_that_re_records_it(tmp_path, capsys):
    """The break: "Re-record it with: re-record it with --lm-probes-snapshot-update"."""
    a = _set(tmp_path, "a", "tiny-mistral")
    (a / "tiny-mistral" / "cpu.json").write_text('{"format": 1, "obs', encoding="utf-8")
    code, _, err = _diff(capsys, str(a), str(COMMITTED), "--html", str(tmp_path / "d.html"))
    assert code == sets.BAD_INPUT and "re-record it with --lm-probes-snapshot-update" not in err
    assert (
        "Re-record it with: pytest tests/behaviour/test_snapshot.py --lm-probes-card tiny-mistral "
        "--lm-probes-snapshot-update "
        f"--lm-probes-snapshot-dir {a}" in err
    )


# ------------------------------------------------------------------ the report's paths


@pytest.mark.parametrize(
    "option, target, says",
    [
        ("--html", "folder", "is a folder; give a file path, e.g. --html {folder}/diff.html"),
        ("--json", "folder", "is a folder; give a file path, e.g. --json {folder}/diff.json"),
        ("--html", "file/r.html", "cannot be written: {folder}/file is a file, not a folder"),
        ("--json", "file/deeper/r.json", "cannot be written: {folder}/file is a file, not a folder"),
    ],
)
def test_a_report_path_that_cannot_be_written_exits_4_before_anything_is_read(tmp_path, capsys, option, target, says):
    """The break: a traceback after the comparison. Now one sentence, before the sets are
    read (A does not even exist here, and that is not what is reported)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "file").write_text("x", encoding="utf-8")
    other = {"--html": str(tmp_path / "ok.html"), "--json": str(tmp_path / "ok.json")}
    other[option] = str(folder / target) if target != "folder" else str(folder)
    code, out, err = _diff(capsys, "/no/such/set", str(COMMITTED), "--html", other["--html"], "--json", other["--json"])
    assert code == sets.BAD_INPUT and out == ""
    assert err.startswith(f"lm-probes diff: {option} ") and says.format(folder=folder) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "ok.html").exists() and not (tmp_path / "ok.json").exists()


def test_a_read_only_report_folder_exits_4_before_anything_is_read(tmp_path, capsys, monkeypatch):
    """A read-only folder (root may write anywhere, so the permission is what the check
    is told): the harmless twin is the same path in a folder that may be written, made
    with its missing parents when the report is written."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    code, _, err = _diff(capsys, "/no/such/set", str(COMMITTED), "--html", str(locked / "sub" / "r.html"))
    assert code == sets.BAD_INPUT
    assert f"--html {locked / 'sub' / 'r.html'} cannot be written: the folder {locked} is read-only" in err
    monkeypatch.undo()

    page = tmp_path / "new" / "deeper" / "r.html"
    code, _, _ = _diff(
        capsys, str(COMMITTED), str(COMMITTED), "--html", str(page), "--json", str(page.with_suffix(".json"))
    )
    assert code == sets.SAME and page.is_file() and json.loads(page.with_suffix(".json").read_text(encoding="utf-8"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_truly_read_only_report_folder_exits_4(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = _diff(capsys, str(COMMITTED), str(COMMITTED), "--json", str(locked / "r.json"))
    assert code == sets.BAD_INPUT and "is read-only" in err


def test_html_and_json_naming_one_file_is_refused(tmp_path, capsys):
    same = str(tmp_path / "r.out")
    code, _, err = _diff(capsys, str(COMMITTED), str(COMMITTED), "--html", same, "--json", same)
    assert code == sets.BAD_INPUT and f"--html and --json both name {same}" in err


# ------------------------------------------------------------- a section of another shape


def test_a_section_of_another_shape_is_named_with_its_file_and_exits_4(tmp_path, capsys):
    """Found by the fuzz test: a recorded section whose values are not what lm-probes records
    (a hand edit: a call's settings replaced by null) gave AttributeError from the comparison
    rules. Now it is one sentence naming the file and the section, with the command that
    re-records it, and exit 4; the twin, the same edit to a value of the same shape (another
    setting's value), is compared and reported as a difference (exit 1)."""
    edited = _set(tmp_path, "edited", "tiny-mistral")
    path = edited / "tiny-mistral" / "cpu.json"
    snapshot = json.loads(path.read_text(encoding="utf-8"))
    call = next(iter(snapshot["observed"]["generation"].values()))
    key = next(k for k, v in call.items() if isinstance(v, dict) and v)
    call[key] = None
    path.write_text(json.dumps(snapshot), encoding="utf-8")
    code, out, err = _diff(
        capsys, str(COMMITTED), str(edited), "--card", "tiny-mistral", "--html", str(tmp_path / "d.html")
    )
    assert code == sets.BAD_INPUT, out + err
    assert "Traceback" not in err and str(path) in err
    assert "section 'generation' does not hold what lm-probes records there" in err
    assert (
        "Re-record it with: pytest tests/behaviour/test_snapshot.py --lm-probes-card tiny-mistral "
        "--lm-probes-snapshot-update" in err
    )

    same_shape = _set(tmp_path, "same-shape", "tiny-mistral")
    path = same_shape / "tiny-mistral" / "cpu.json"
    snapshot = json.loads(path.read_text(encoding="utf-8"))
    call = next(iter(snapshot["observed"]["generation"].values()))
    setting = next(iter(call[key]))
    call[key][setting] = "changed"
    path.write_text(json.dumps(snapshot), encoding="utf-8")
    code, out, err = _diff(
        capsys, str(COMMITTED), str(same_shape), "--card", "tiny-mistral", "--html", str(tmp_path / "e.html")
    )
    assert code == sets.DIFFERENT, out + err
    assert "generation" in out


def test_the_deep_fuzz_run_s_findings_are_one_sentence_on_stderr_and_exit_4(tmp_path, capsys):
    """What `make fuzz` found: `--html ''` wrote to '.' (IsADirectoryError); a file whose
    `observed` is a list reached the rules; a card on one side only said so on stdout alone.
    The twin of each is in this file's other tests (a real path, a real file, --card)."""
    code, _, err = _diff(capsys, str(COMMITTED), str(COMMITTED), "--html", "")
    assert code == sets.BAD_INPUT and "--html is empty; give a file path" in err

    odd = _set(tmp_path, "odd", "mistral-tokenizer")
    path = odd / "mistral-tokenizer" / "cpu.json"
    path.write_text(json.dumps({**json.loads(path.read_text("utf-8")), "observed": []}), encoding="utf-8")
    code, _, err = _diff(
        capsys, str(odd), str(COMMITTED), "--card", "mistral-tokenizer", "--html", str(tmp_path / "r.html")
    )
    assert code == sets.BAD_INPUT and f"snapshot {path} is not a format-" in err and "Traceback" not in err

    one = _set(tmp_path, "one", "tiny-mistral")
    code, _, err = _diff(capsys, str(one), str(COMMITTED), "--html", str(tmp_path / "s.html"))
    assert code == sets.BAD_INPUT and "lm-probes: not every card was compared: " in err
