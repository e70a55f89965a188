"""lm-probes as a guest in its users' projects (issue 44): prefixed options and fixtures, the 0.1
spellings named when used, paths with ``~``, snapshots that cannot pass vacuously, a baseline
another model cannot replace, and the CI summary. The host projects themselves (syrupy, a conftest
with --device, a package named probes) run against the installed wheel in tests/install."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from lm_probes.cli import main as cli
from lm_probes.paths import REPO_ROOT, SNAPSHOT_DIR
from lm_probes.plugin import hooks, options
from lm_probes.snapshots import record
from lm_probes.snapshots.record import OtherModelsBaseline, SnapshotError, load, non_finite_field
from tests.unit.conftest import tokenizer_subject

TOKENIZER_CARD = "mistral-tokenizer"
SNAPSHOT_TEST = "tests/behaviour/test_snapshot.py"


# ------------------------------------------------------------------------- the names


def test_every_option_and_fixture_the_plugin_adds_carries_its_prefix(run_suite):
    """What the plugin adds to every session of the environment: options under --lm-probes-,
    fixtures under lm_probes_ (syrupy's `snapshot`, a host's `--device` stay theirs)."""
    shown = run_suite("--help").stdout
    group = shown.split("behavioural tests of language models:", 1)[1].split("\n\n", 1)[0]
    added = re.findall(r"^  (--[\w-]+)", group, flags=re.M)
    assert len(added) == 18 and all(o.startswith("--lm-probes-") for o in added), added
    assert all(name.startswith("lm_probes_") for name in hooks.__all__), hooks.__all__
    assert set(options.RENAMED) & set(added) == set()


def test_a_0_1_spelling_names_its_new_one_and_a_host_s_own_option_of_that_name_stays_theirs(run_suite, tmp_path):
    """The break: `--card` (0.1) is one sentence naming --lm-probes-card, exit 4. The twin: a host
    conftest that defines --device and --seed runs its own test with them, untouched."""
    old = run_suite("--card", TOKENIZER_CARD, "--collect-only")
    assert old.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--card is not an option of lm-probes any more: since lm-probes 0.2 it is --lm-probes-card" in old.stderr
    host = tmp_path / "host"
    host.mkdir()
    (host / "conftest.py").write_text(
        "def pytest_addoption(parser):\n"
        "    parser.addoption('--device', default='cpu')\n"
        "    parser.addoption('--seed', type=int, default=0)\n",
        encoding="utf-8",
    )
    (host / "test_host_options.py").write_text(
        "def test_device(pytestconfig):\n"
        "    assert pytestconfig.getoption('device') == 'cuda:3' and pytestconfig.getoption('seed') == 7\n",
        encoding="utf-8",
    )
    own = run_suite(str(host), "--device", "cuda:3", "--seed", "7", "-p", "no:randomly")
    assert own.returncode == 0, own.stdout[-2000:] + own.stderr


# ------------------------------------------------------------------------------ ~


def test_paths_with_a_tilde_are_read_and_written_under_home(run_suite, tmp_path, monkeypatch):
    """--lm-probes-snapshot-dir=~/x (as an ini file's addopts passes it: no shell), a card path
    with ~ and draft-card -o ~/x.yaml all land under $HOME; nothing under a folder named ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cards").mkdir()
    shutil.copy(REPO_ROOT / "fixtures" / "cards" / f"{TOKENIZER_CARD}.yaml", tmp_path / "cards")
    recorded = run_suite(
        SNAPSHOT_TEST,
        f"--lm-probes-card=~/cards/{TOKENIZER_CARD}.yaml",
        "--lm-probes-snapshot-update",
        "--lm-probes-snapshot-dir=~/x",
    )
    assert recorded.returncode == 0, recorded.stdout[-2000:]
    assert list((tmp_path / "x" / TOKENIZER_CARD).glob("*.json")), "the snapshot is not under $HOME/x"
    assert not (REPO_ROOT / "~").exists()
    args = cli.parser().parse_args(["draft-card", "--card", "tiny-mistral", "--name", "m", "-o", "~/m.yaml"])
    assert args.output == str(tmp_path / "m.yaml")
    args = cli.parser().parse_args(["diff", "~/a", "~/b", "--html", "~/d.html", "--summary", "~/s.md"])
    assert (args.a, args.html, args.summary) == (str(tmp_path / "a"), str(tmp_path / "d.html"), str(tmp_path / "s.md"))


# --------------------------------------------------------------- no vacuous snapshot


def _first_number(value, where=()):
    """The path (a tuple of keys) of the first recorded number of a snapshot, in file order."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return where
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in children:
        found = _first_number(item, (*where, key))
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_shipped_snapshot_with_one_number_not_finite_is_refused_naming_the_file_and_field(tmp_path, bad):
    """The break: every shipped snapshot with its first recorded float set to NaN (or ±inf):
    refused on reading, naming the file and the field (a NaN bound passes any value). The twin:
    the files as shipped load."""
    shipped = sorted(SNAPSHOT_DIR.glob("*/*.json"))
    assert len(shipped) >= 4
    for path in shipped:
        where = _first_number(load(path, "re-record")["observed"])
        edited = json.loads(path.read_text(encoding="utf-8"))
        node = edited["observed"]
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = bad
        copy = tmp_path / path.parent.name / path.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(json.dumps(edited), encoding="utf-8")
        with pytest.raises(SnapshotError, match=re.escape(f"snapshot {copy} records a number that is not finite at")):
            load(copy, "re-record")
        assert non_finite_field(edited)[0].startswith("observed.")


def test_diff_refuses_a_set_with_a_nan_with_exit_4(tmp_path, capsys):
    side = tmp_path / "b" / TOKENIZER_CARD
    side.mkdir(parents=True)
    text = (SNAPSHOT_DIR / TOKENIZER_CARD / "cpu.json").read_text(encoding="utf-8")
    snapshot = json.loads(text)
    snapshot["observed"]["tokenizer"]["bos_token_id"] = math.nan
    (side / "cpu.json").write_text(json.dumps(snapshot), encoding="utf-8")
    code = cli.main(
        ["diff", str(SNAPSHOT_DIR), str(side.parent), "--card", TOKENIZER_CARD, "--html", str(tmp_path / "d.html")]
    )
    assert code == 4
    assert "not finite at observed.tokenizer.bos_token_id" in capsys.readouterr().err


# ------------------------------------------------------------- another model's baseline


def test_another_models_baseline_is_never_replaced_whatever_the_folder(tmp_path):
    """The break: a user's folder holding the card's baseline recorded from another model
    (as --lm-probes-model OTHER --lm-probes-snapshot-update would now replace): refused, the file
    untouched. The twin: the same model's baseline is re-recorded."""
    subject = tokenizer_subject()
    written = record.record(subject, tmp_path)
    ours = json.loads(written.read_text(encoding="utf-8"))
    ours["provenance"]["model source"] = "someone/another-model"
    written.write_text(json.dumps(ours), encoding="utf-8")
    before = written.read_bytes()
    with pytest.raises(OtherModelsBaseline, match="recorded from someone/another-model; this session loads"):
        record.record(subject, tmp_path)
    assert written.read_bytes() == before
    ours["provenance"]["model source"] = subject.provenance.model_source
    written.write_text(json.dumps(ours), encoding="utf-8")
    assert record.record(subject, tmp_path) == written and written.read_bytes() != before


# ------------------------------------------------------------------------ CI summary


def test_the_ci_summary_names_the_failing_card_its_first_difference_and_the_report(run_suite, tmp_path):
    """The break: the tokenizer card against a snapshot whose recorded BOS id is changed: the
    summary names the card, the first difference and the HTML page, in the file named and in
    $GITHUB_STEP_SUMMARY. The twin: the snapshot as shipped: one line that says it passed."""
    snapshots = tmp_path / "snapshots"
    shutil.copytree(SNAPSHOT_DIR / TOKENIZER_CARD, snapshots / TOKENIZER_CARD)
    summary, github = tmp_path / "summary.md", tmp_path / "github-step-summary.md"
    common = [SNAPSHOT_TEST, "--lm-probes-card", TOKENIZER_CARD, "--lm-probes-snapshot-dir", str(snapshots)]
    passed = run_suite(*common, "--lm-probes-summary", str(summary), env={"GITHUB_STEP_SUMMARY": str(github)})
    assert passed.returncode == 0, passed.stdout[-2000:]
    line = summary.read_text(encoding="utf-8")
    assert line.startswith("**lm-probes: passed**: mistral-tokenizer, 1 tests, no change since the snapshots.")
    assert "report.html" in line and len(line.strip().splitlines()) == 3  # the verdict, a blank, the page
    for path in (snapshots / TOKENIZER_CARD).glob("*.json"):
        snapshot = json.loads(path.read_text(encoding="utf-8"))
        snapshot["observed"]["tokenizer"]["bos_token_id"] = 7
        path.write_text(json.dumps(snapshot), encoding="utf-8")
    failed = run_suite(*common, "--lm-probes-summary", str(summary), env={"GITHUB_STEP_SUMMARY": str(github)})
    assert failed.returncode == 1
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("**lm-probes: failed** (exit 1): 1 of 1 cards")
    assert "| mistral-tokenizer | failed (1 failed) | `test_matches_snapshot[mistral-tokenizer]`" in text
    assert "tokenizer.bos_token_id" in text and "report.html" in text
    both = github.read_text(encoding="utf-8")  # appended, as GitHub's steps do
    assert both.startswith(line) and both.endswith(text + "\n")


def test_a_session_that_does_not_use_lm_probes_writes_no_summary(run_suite, tmp_path):
    """A host's own session with the plugin installed: nothing in $GITHUB_STEP_SUMMARY from us."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "test_host_without_lm_probes.py").write_text("def test_ok():\n    pass\n", encoding="utf-8")
    github = tmp_path / "github-step-summary.md"
    assert run_suite(str(host), env={"GITHUB_STEP_SUMMARY": str(github)}).returncode == 0
    assert not github.exists()


def test_diff_writes_its_summary_with_the_first_difference(tmp_path):
    side = tmp_path / "b" / TOKENIZER_CARD
    side.mkdir(parents=True)
    snapshot = json.loads((SNAPSHOT_DIR / TOKENIZER_CARD / "cpu.json").read_text(encoding="utf-8"))
    snapshot["observed"]["tokenizer"]["bos_token_id"] = 7
    (side / "cpu.json").write_text(json.dumps(snapshot), encoding="utf-8")
    summary = tmp_path / "diff.md"
    argv = ["diff", str(SNAPSHOT_DIR), str(side.parent), "--card", TOKENIZER_CARD, "--html", str(tmp_path / "d.html")]
    assert cli.main([*argv, "--summary", str(summary)]) == 1
    text = summary.read_text(encoding="utf-8")
    assert "exit 1, 1 of 1 compared differ" in text and "| mistral-tokenizer | 1 | tokenizer.bos_token_id" in text
    assert (
        cli.main(["diff", str(SNAPSHOT_DIR), str(SNAPSHOT_DIR), "--card", TOKENIZER_CARD, "--summary", str(summary)])
        == 0
    )
    assert summary.read_text(encoding="utf-8").count(
        "\n"
    ) <= 3 and "no difference beyond tolerance" in summary.read_text(encoding="utf-8")


def test_a_non_finite_number_under_a_key_with_a_dot_is_named_not_a_traceback():
    """What the deep fuzz run found: a NaN under a token-id case keyed by a sentence ("… true .")
    was named by splitting its path on dots, which raised KeyError instead of the message."""
    field, number = non_finite_field({"observed": {"ids": {"it 's true .": [1, math.inf]}}})
    assert field == 'observed.ids["it \'s true ."][1]' and number == math.inf
    assert non_finite_field({"observed": {"ids": {"it 's true .": [1, 2]}}}) is None


def test_an_integer_no_float_holds_is_refused_as_not_finite_and_the_page_shows_an_odd_answer_end(tmp_path):
    """What the deep fuzz run found with the second oracle: a recorded cosine of 10**400 (an int no
    float holds) was an OverflowError in the embedding rule, and an answer end of null a TypeError
    while the diff page was written. Now the first is refused on reading (exit 4) and the second
    is shown as it is (exit 1: the break is still caught)."""
    assert non_finite_field({"observed": {"cosine": [[10**400]]}})[0] == "observed.cosine[0][0]"
    assert non_finite_field({"observed": {"cosine": [[10**300, 1]]}}) is None
    smollm2 = json.loads((SNAPSHOT_DIR / "smollm2-135m-instruct" / "cpu.json").read_text(encoding="utf-8"))
    request = next(iter(smollm2["observed"]["answer_ends"]))
    smollm2["observed"]["answer_ends"][request]["end"] = None
    side = tmp_path / "a" / "smollm2-135m-instruct"
    side.mkdir(parents=True)
    (side / "cpu.json").write_text(json.dumps(smollm2), encoding="utf-8")
    argv = ["diff", str(side.parent), str(SNAPSHOT_DIR), "--card", "smollm2-135m-instruct"]
    assert cli.main([*argv, "--html", str(tmp_path / "d.html")]) == 1
    assert "Answer end" in (tmp_path / "d.html").read_text(encoding="utf-8")


def test_a_numerics_fingerprint_missing_a_field_is_shown_as_unreadable_not_a_traceback(tmp_path, capsys):
    """The deep fuzz run's third finding: a snapshot whose provenance.numerics lacks `device`
    made `diff` raise TypeError while printing its summary lines."""
    snapshot = json.loads((SNAPSHOT_DIR / TOKENIZER_CARD / "cpu.json").read_text(encoding="utf-8"))
    del snapshot["provenance"]["numerics"]["device"]
    side = tmp_path / "a" / TOKENIZER_CARD
    side.mkdir(parents=True)
    (side / "cpu.json").write_text(json.dumps(snapshot), encoding="utf-8")
    argv = ["diff", str(side.parent), str(SNAPSHOT_DIR), "--card", TOKENIZER_CARD, "--html", str(tmp_path / "d.html")]
    assert cli.main(argv) == 0
    assert "a numerics fingerprint that cannot be read" in capsys.readouterr().out


def test_upgrade_check_writes_its_summary_and_appends_it_to_the_github_step_summary(tmp_path, monkeypatch):
    """upgrade-check with its environments stood in: the "to" side records a changed BOS id. The
    summary names the card and the first difference; $GITHUB_STEP_SUMMARY gets the same text."""
    from lm_probes.cli import environments

    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "github.md"))
    monkeypatch.setattr(environments, "resolve_sides", lambda *a, **k: {})
    monkeypatch.setattr(environments, "prepare", lambda side, *a, **k: tmp_path / "env" / side.label)

    def record_side(command, what):  # the recording run: the shipped snapshot, edited on the "to" side
        folder = Path(command[command.index("--lm-probes-snapshot-dir") + 1]) / TOKENIZER_CARD
        folder.mkdir(parents=True)
        snapshot = json.loads((SNAPSHOT_DIR / TOKENIZER_CARD / "cpu.json").read_text(encoding="utf-8"))
        if folder.parent.name == "to":
            snapshot["observed"]["tokenizer"]["bos_token_id"] = 7
        (folder / "cpu.json").write_text(json.dumps(snapshot), encoding="utf-8")

    monkeypatch.setattr(environments, "run", record_side)
    argv = ["upgrade-check", "--from", "transformers==5.22.0", "--to", "transformers==5.23.0", "--card", TOKENIZER_CARD]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main([*argv, "--output", str(tmp_path / "out"), "--summary", "~/summary.md"]) == 1
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("**lm-probes upgrade-check** transformers==5.22.0 → transformers==5.23.0: exit 1")
    assert "| mistral-tokenizer | 1 | tokenizer.bos_token_id" in text and "report.html" in text
    assert (tmp_path / "github.md").read_text(encoding="utf-8") == text + "\n"


def test_a_baseline_holding_none_of_the_encoded_texts_still_catches_a_changed_tokenizer(tmp_path):
    """The deep fuzz run's finding with the second oracle: a snapshot whose `ids` key was renamed
    (one byte) compared no token id at all, and a tokenizer that changed every id passed (exit 0)."""
    from tests.unit.snapshots.snapshot_helpers import known_break

    snapshot = json.loads((SNAPSHOT_DIR / TOKENIZER_CARD / "cpu.json").read_text(encoding="utf-8"))
    broken = known_break(snapshot)
    snapshot["observed"]["tokenizer"][" ds"] = snapshot["observed"]["tokenizer"].pop("ids")
    for side, data in (("a", snapshot), ("b", broken)):
        (tmp_path / side / TOKENIZER_CARD).mkdir(parents=True)
        (tmp_path / side / TOKENIZER_CARD / "cpu.json").write_text(json.dumps(data), encoding="utf-8")
    argv = [
        "diff",
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        "--card",
        TOKENIZER_CARD,
        "--html",
        str(tmp_path / "d.html"),
    ]
    assert cli.main(argv) == 1
    assert "records none of the 18 texts this run encodes" in (tmp_path / "d.html").read_text(encoding="utf-8")


def test_a_tilde_of_no_known_user_is_taken_as_written_not_a_traceback(run_suite):
    """The deep fuzz run's finding in the card door: a card named "~0" reached Path.expanduser,
    which raises for a user that does not exist; os.path's leaves it as written."""
    from lm_probes.cards.card import CardError, find_card

    with pytest.raises(CardError, match="Unknown card '~0'"):
        find_card("~0")
    shown = run_suite("--lm-probes-card", "~nosuchuser/x.yaml", "--collect-only")
    assert shown.returncode == pytest.ExitCode.USAGE_ERROR and "~nosuchuser/x.yaml does not exist" in shown.stderr
