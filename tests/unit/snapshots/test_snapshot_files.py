"""A snapshot file as the snapshot test reads and writes it (issue 32): a file of another
card is refused, and writers running at once each end with a whole file and no stray
temporary one. No model loads here: the card checked is the tokenizer-only one, and the
writers record stand-in observations."""

from __future__ import annotations

import json
import os
import threading
from types import SimpleNamespace

import pytest

from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots.check import SnapshotCheck
from lm_probes.snapshots.record import SnapshotError, dumps, load, record
from tests.unit.conftest import tokenizer_subject

CARD = "mistral-tokenizer"


def _folder_with(tmp_path, card_field):
    """A snapshot folder holding the committed mistral-tokenizer snapshot, its ``card``
    field set to ``card_field`` (left as recorded for None)."""
    folder = tmp_path / "snapshots" / CARD
    folder.mkdir(parents=True)
    snapshot = json.loads((SNAPSHOT_DIR / CARD / "cpu.json").read_text(encoding="utf-8"))
    if card_field is not None:
        snapshot["card"] = card_field
    (folder / "cpu.json").write_text(dumps(snapshot), encoding="utf-8")
    return folder.parent


def test_the_snapshot_test_refuses_a_file_of_another_card_naming_both_the_file_and_the_command(tmp_path):
    """The break: mistral-tokenizer's own observations filed as card tiny-mistral's (its
    shape matches, so it used to pass). The harmless twin: the same file as recorded."""
    root = _folder_with(tmp_path, "tiny-mistral")
    check = SnapshotCheck(root, dir_option=f" --lm-probes-snapshot-dir {root}")
    outcome = check.check(tokenizer_subject())
    assert outcome.verdict == "failed", outcome
    assert f"snapshot {root / CARD / 'cpu.json'} is of card 'tiny-mistral', not of '{CARD}'" in outcome.message
    assert (
        f"Re-record it with: pytest tests/behaviour/test_snapshot.py --lm-probes-card {CARD} "
        "--lm-probes-snapshot-update "
        f"--lm-probes-snapshot-dir {root}" in outcome.message
    )

    own = _folder_with(tmp_path / "own", None)
    assert SnapshotCheck(own).check(tokenizer_subject()).verdict == "passed"


@pytest.mark.parametrize("card", ["my.card", "card-2.5"])
def test_a_card_name_with_a_dot_is_its_own_card(tmp_path, card):
    """The check compares the name exactly: a dot is no part of a path or suffix there."""
    path = tmp_path / card / "cpu.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"format": 1, "card": card, "observed": {}}), encoding="utf-8")
    assert load(path, "hint", card=card)["card"] == card
    with pytest.raises(SnapshotError, match=rf"is of card '{card}', not of 'my'"):
        load(path, "hint", card="my")  # the name before the dot is another card


def test_a_file_without_a_card_field_is_taken_at_its_folders_word(tmp_path):
    """A hand-written file of the right format names no card: nothing says it is another's."""
    path = tmp_path / "s.json"
    path.write_text('{"format": 1, "observed": {}}', encoding="utf-8")
    assert load(path, "hint", card=CARD) == {"format": 1, "observed": {}}


# ------------------------------------------------------------ writers at the same time


def _stand_in(monkeypatch, card="my.card"):
    """A subject that record() can write without a model: provenance and observations stand-ins
    (large enough that a write takes a while, so writers overlap)."""
    monkeypatch.setattr("lm_probes.snapshots.record.provenance", lambda subject: {"writer": threading.get_ident()})
    monkeypatch.setattr(
        "lm_probes.snapshots.record.observe", lambda subject: {"tokenizer": {"ids": list(range(20_000))}}
    )
    return SimpleNamespace(card=SimpleNamespace(name=card), machine_class="cpu")


def test_writers_recording_one_card_at_once_each_end_with_a_whole_file(tmp_path, monkeypatch):
    """The break: four writers recording the same card at the same moment (as three processes
    did in the issue). With one shared ``cpu.json.tmp``, the first rename took the others'
    file away (FileNotFoundError). Each writer now renames its own temporary file."""
    subject = _stand_in(monkeypatch)
    start, failures = threading.Barrier(4), []

    def write():
        start.wait()
        try:
            for _ in range(30):
                record(subject, tmp_path)
        except Exception as exc:  # collected: the assertion below names it
            failures.append(repr(exc))

    writers = [threading.Thread(target=write) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert failures == []
    path = tmp_path / "my.card" / "cpu.json"
    assert load(path, "hint", card="my.card")["observed"]["tokenizer"]["ids"][-1] == 19_999
    assert [p.name for p in path.parent.iterdir()] == ["cpu.json"]  # no temporary file left


def test_a_write_that_fails_leaves_the_old_snapshot_and_no_temporary_file(tmp_path, monkeypatch):
    """The harmless twin of the unique temporary file: it is removed when the write fails,
    and the snapshot there before is untouched; a write that succeeds is readable as a file
    open() would have made (mkstemp's own files are private)."""
    subject = _stand_in(monkeypatch)
    path = record(subject, tmp_path)
    before = path.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask

    def failing_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    monkeypatch.setattr("lm_probes.snapshots.record.observe", lambda subject: {"tokenizer": {"ids": [1, 2, 3]}})
    with pytest.raises(OSError, match="No space left"):
        record(subject, tmp_path)
    assert [p.name for p in path.parent.iterdir()] == ["cpu.json"] and path.read_bytes() == before


def test_the_snapshot_test_fails_a_section_of_another_shape_with_the_command_that_re_records_it(tmp_path):
    """A hand-edited file whose tokenizer ids are a list instead of a mapping: the rules used
    to raise a TypeError/AttributeError from inside the test. Now the test fails in one
    sentence naming the file, the section and the command; the twin, an edited value of the
    same shape (another id), is compared and fails as a difference, not as a broken file."""
    root = _folder_with(tmp_path, None)
    path = root / CARD / "cpu.json"
    snapshot = json.loads(path.read_text(encoding="utf-8"))
    snapshot["observed"]["tokenizer"]["ids"] = list(snapshot["observed"]["tokenizer"]["ids"].values())
    path.write_text(dumps(snapshot), encoding="utf-8")
    outcome = SnapshotCheck(root, dir_option=f" --lm-probes-snapshot-dir {root}").check(tokenizer_subject())
    assert outcome.verdict == "failed" and outcome.status == "no usable snapshot", outcome
    assert f"snapshot {path}: section 'tokenizer' does not hold what lm-probes records there" in outcome.message
    assert (
        f"Re-record it with: pytest tests/behaviour/test_snapshot.py --lm-probes-card {CARD} "
        "--lm-probes-snapshot-update" in outcome.message
    )

    same_shape = _folder_with(tmp_path / "same", None)
    path = same_shape / CARD / "cpu.json"
    snapshot = json.loads(path.read_text(encoding="utf-8"))
    modes = next(iter(snapshot["observed"]["tokenizer"]["ids"].values()))  # {plain: [...], special: [...]}
    modes["special"] = [*modes["special"], 7]
    path.write_text(dumps(snapshot), encoding="utf-8")
    outcome = SnapshotCheck(same_shape).check(tokenizer_subject())
    assert outcome.verdict == "failed" and outcome.differences, outcome
