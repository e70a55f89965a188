"""Issue 36: the recorded snapshots nothing reads any more, reported as syrupy reports its
unused snapshots: a file whose card is gone, a section no spec knows, a section the card
leaves out. The shipped folder has none (so make test notices one left behind)."""

from __future__ import annotations

import json
import shutil

from lm_probes.cli.main import main
from lm_probes.paths import CARDS_DIR, SNAPSHOT_DIR


def test_the_shipped_snapshots_hold_nothing_unused(capsys):
    assert main(["unused-snapshots"]) == 0
    assert "nothing unused in" in capsys.readouterr().out


def test_a_removed_card_a_dropped_section_and_a_left_out_one_are_each_named(tmp_path, capsys):
    snapshots, cards = tmp_path / "snapshots", tmp_path / "cards"
    shutil.copytree(SNAPSHOT_DIR / "tiny-mistral", snapshots / "tiny-mistral")
    shutil.copytree(SNAPSHOT_DIR / "tiny-mistral", snapshots / "renamed-card")  # its card was renamed
    recorded = json.loads((snapshots / "tiny-mistral" / "cpu.json").read_text(encoding="utf-8"))
    recorded["observed"]["vocab_head"] = {"pieces": ["<unk>"]}  # a section this version dropped
    (snapshots / "tiny-mistral" / "cpu.json").write_text(json.dumps(recorded), encoding="utf-8")
    # the user's tiny-mistral (a user's card of a shipped name is the one used) now leaves greedy out
    card = (CARDS_DIR / "tiny-mistral.yaml").read_text(encoding="utf-8")
    cards.mkdir()
    (cards / "tiny-mistral.yaml").write_text(
        card.replace("leave_out: [first_tokens]", "leave_out: [first_tokens, greedy]")
    )
    argv = ["unused-snapshots", "--snapshot-dir", str(snapshots), "--cards-dir", str(cards)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"{snapshots / 'renamed-card' / 'cpu.json'}: the whole file (no card named 'renamed-card'" in out
    assert "tiny-mistral/cpu.json: sections vocab_head (no section of this version has these names)" in out
    assert "tiny-mistral/cpu.json: sections greedy (tiny-mistral leaves them out (snapshot.leave_out))" in out
    # --delete removes the whole unused file only; the sections stay reported
    assert main([*argv, "--delete"]) == 1
    assert not list((snapshots / "renamed-card").glob("*.json"))
    assert (snapshots / "tiny-mistral" / "cpu.json").is_file() and "2 unused in" in capsys.readouterr().out


def test_a_snapshot_folder_that_does_not_exist_is_bad_input(tmp_path, capsys):
    assert main(["unused-snapshots", "--snapshot-dir", str(tmp_path / "nowhere")]) == 4
    assert "is not a folder of snapshots" in capsys.readouterr().err
