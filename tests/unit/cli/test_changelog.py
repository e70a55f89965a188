"""``lm-probes changelog`` on stand-in releases: recorded sets (tiny-mistral's shipped snapshot)
that change at known releases, a release the card cannot load under, one that cannot be
installed, a second run that adds only what it has not recorded, and the pages re-rendered
from the changelog's folder alone. No environment is built: recording hands back the stand-ins."""

from __future__ import annotations

import copy
import json

import pytest

from lm_probes.cli import changelog as command
from lm_probes.cli.main import main
from lm_probes.cli.release_sets import ReleaseSet
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots.changelog import CHANGED, FIRST, NOT_INSTALLABLE, NOT_LOADABLE, RECORDED, UNCHANGED
from lm_probes.snapshots.changelog_store import Store

CARD = "tiny-mistral"
INDEX = ["1.0.0", "1.0.1", "1.1.0", "1.2.0", "1.3.0", "1.3.1", "1.4.0", "2.0.0rc1"]
CANNOT_LOAD = {"1.1.0": "not loadable: NotImplementedError: Unknown gguf model_type"}
CANNOT_INSTALL = {"1.4.0": "the 'transformers 1.4.0' environment cannot be built: the index has no kernels>=0.19.1"}


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """The card's BOS id becomes 7 at 1.3.0 and stays; 1.1.0 cannot load it; 1.4.0 cannot be
    installed. Returns the releases recorded, in the order asked."""
    shipped = json.loads((SNAPSHOT_DIR / CARD / "cpu.json").read_text(encoding="utf-8"))
    folders = {}
    for release in INDEX[:-1]:
        recorded = copy.deepcopy(shipped)
        if release >= "1.3.0":
            recorded["observed"]["tokenizer"]["bos_token_id"] = 7
        recorded["provenance"]["transformers"] = release
        folders[release] = tmp_path / "sets" / release
        (folders[release] / CARD).mkdir(parents=True)
        (folders[release] / CARD / "cpu.json").write_text(json.dumps(recorded), encoding="utf-8")
    asked: list[str] = []

    def record_release(package, release, cards, torch_pin, log):
        asked.append(release)
        if release in CANNOT_INSTALL:
            return ReleaseSet(release, folders[release], not_installable=CANNOT_INSTALL[release])
        return ReleaseSet(release, folders[release], {CARD: CANNOT_LOAD.get(release, RECORDED)})

    monkeypatch.setattr(command, "index_versions", lambda package, pre: list(reversed(INDEX)))
    monkeypatch.setattr(command, "record_release", record_release)
    return asked


def changelog(tmp_path, *extra: str) -> int:
    return main(["changelog", "--package", "transformers", "--output", str(tmp_path / "log"), "--jobs", "2", *extra])


def test_every_minor_takes_each_minors_newest_patch_and_every_patch_takes_all():
    assert command.select_releases(INDEX, "1.0.0", "1.4.0", "minor", "transformers") == [
        "1.0.1", "1.1.0", "1.2.0", "1.3.1", "1.4.0",
    ]  # fmt: skip
    assert command.select_releases(INDEX, "1.3", None, "patch", "transformers") == ["1.3.0", "1.3.1", "1.4.0"]


def test_each_cell_says_unchanged_changed_not_loadable_or_not_installable(stand_ins, tmp_path, capsys):
    assert changelog(tmp_path, "--from", "1.0.0", "--to", "1.4.0", "--every", "patch") == 1
    printed = capsys.readouterr().out
    assert "tiny-mistral tokenizer: 1.3.0 (1.2.0 → 1.3.0): [error] tokenizer.bos_token_id: 1 -> 7" in printed
    matrix = command.matrix_of(Store.open(tmp_path / "log", "transformers", []))
    cells = {row.release: matrix.cell(row, CARD, "tokenizer") for row in matrix.rows}
    assert [cells[r].state for r in ("1.0.0", "1.0.1", "1.1.0", "1.2.0", "1.3.0", "1.3.1", "1.4.0")] == [
        FIRST, UNCHANGED, NOT_LOADABLE, UNCHANGED, CHANGED, UNCHANGED, NOT_INSTALLABLE,
    ]  # fmt: skip
    assert cells["1.2.0"].since == "1.0.1"  # compared across the release that could not load the card
    assert "Unknown gguf model_type" in cells["1.1.0"].detail and "kernels>=0.19.1" in cells["1.4.0"].detail
    assert matrix.columns == [(CARD, "tokenizer")]  # only what changed gets a column
    page = (tmp_path / "log" / "changelog.md").read_text(encoding="utf-8")
    assert "| 1.3.0 | **changed** [" in page and "| 1.1.0 | not loadable [" in page
    assert "https://github.com/huggingface/transformers/releases/tag/v1.3.0" in page


def test_a_later_run_records_only_the_releases_it_has_not(stand_ins, tmp_path):
    """--every minor first, then --every patch over part of the range: the second run adds the
    patches, and the matrix places the change at 1.3.0 instead of the minor's newest 1.3.1."""
    assert changelog(tmp_path, "--from", "1.0.0", "--to", "1.4.0") == 1
    assert stand_ins == ["1.0.1", "1.1.0", "1.2.0", "1.3.1", "1.4.0"]
    stand_ins.clear()
    assert changelog(tmp_path, "--from", "1.3.0", "--to", "1.4.0", "--every", "patch") == 1
    assert stand_ins == ["1.3.0"]
    matrix = command.matrix_of(Store.open(tmp_path / "log", "transformers", []))
    assert [(row.release, card) for row, card, _, _ in matrix.transitions()] == [("1.3.0", CARD)]
    store = json.loads((tmp_path / "log" / "changelog.json").read_text(encoding="utf-8"))
    assert [run["added"] for run in store["runs"]] == [["1.0.1", "1.1.0", "1.2.0", "1.3.1", "1.4.0"], ["1.3.0"]]
    # each distinct observation is kept once: two (BOS 1, BOS 7) for five recorded releases
    assert len(list((tmp_path / "log" / "sets" / CARD).glob("*.json"))) == 2


def test_the_pages_re_render_from_the_folder_alone(stand_ins, tmp_path):
    """What the committed docs/behaviour-changelog.md's test does: the same text, without the cache."""
    changelog(tmp_path, "--from", "1.0.0", "--to", "1.4.0")
    _, markdown, html = command.rendered(Store.open(tmp_path / "log", "transformers", []))
    assert markdown == (tmp_path / "log" / "changelog.md").read_text(encoding="utf-8")
    assert html == (tmp_path / "log" / "changelog.html").read_text(encoding="utf-8")


def test_a_range_with_no_change_exits_0(stand_ins, tmp_path, capsys):
    assert changelog(tmp_path, "--from", "1.3.0", "--to", "1.3.1", "--every", "patch") == 0
    assert "Nothing changed in this range." in (tmp_path / "log" / "changelog.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--from", "1.4.0", "--to", "1.0.0"], "--from 1.4.0 is newer than --to 1.0.0"),
        (["--from", "3.0.0"], "the index lists no transformers release from 3.0.0 to the newest"),
    ],
)
def test_a_range_that_holds_no_release_is_bad_input(stand_ins, tmp_path, capsys, extra, says):
    assert changelog(tmp_path, *extra) == 4
    assert says in capsys.readouterr().err and stand_ins == []


def test_a_folder_holding_another_selections_changelog_is_not_mixed_in(stand_ins, tmp_path, capsys):
    assert changelog(tmp_path, "--from", "1.3.0", "--to", "1.3.1") == 0
    assert changelog(tmp_path, "--from", "1.3.0", "--card", "mistral-tokenizer") == 4
    assert "holds a changelog of transformers for [], not of transformers for ['mistral-tokenizer']" in (
        capsys.readouterr().err
    )


# pytest's JUnit XML of a recording under an old release (its own wording, trimmed)
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest">
<testcase classname="tests.behaviour.test_snapshot" name="test_matches_snapshot[mistral-tokenizer]" time="1.5" />
<testcase classname="tests.behaviour.test_snapshot" name="test_matches_snapshot[smollm2-135m-instruct]" time="0.1">
<error message="failed on setup with &quot;NotImplementedError: Unknown gguf model_type: llama&quot;">trace</error>
</testcase>
<testcase classname="tests.behaviour.test_snapshot" name="test_matches_snapshot[tiny-mistral]" time="0.1">
<failure message="AssertionError: recorded 3 sections, expected 11&#10;second line">trace</failure></testcase>
<testcase classname="tests.behaviour.test_snapshot" name="test_matches_snapshot[smollm2-135m-instruct-nf4]">
<skipped type="pytest.skip" message="bitsandbytes has no CPU backend in this release">skip</skipped></testcase>
</testsuite></testsuites>"""


def test_each_cards_outcome_is_read_from_the_recordings_junit_xml(tmp_path):
    from lm_probes.cli.release_sets import card_outcomes

    (tmp_path / "recording.xml").write_text(JUNIT, encoding="utf-8")
    assert card_outcomes(tmp_path / "recording.xml") == {
        "mistral-tokenizer": RECORDED,
        "smollm2-135m-instruct": "not loadable: NotImplementedError: Unknown gguf model_type: llama",
        "tiny-mistral": "not recorded: AssertionError: recorded 3 sections, expected 11",
        "smollm2-135m-instruct-nf4": "skipped: bitsandbytes has no CPU backend in this release",
    }
    assert card_outcomes(tmp_path / "absent.xml") == {}  # the run died before pytest wrote it


def test_a_release_is_recorded_once_with_each_cards_outcome_and_an_uninstallable_one_is_remembered(
    tmp_path, monkeypatch
):
    """record_release with the environment and the recording run replaced: a card that cannot
    load keeps the others recorded, and a second call (bisect's or changelog's) reuses the set;
    a release that cannot be installed is cached as such, not resolved again."""
    import subprocess

    from lm_probes.cli import environments, release_sets

    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path / "cache"))
    runs, builds, scratches = [], [], []

    def prepare(side, torch_pin):
        builds.append(side.requirements)
        if side.requirements == ("transformers==1.4.0",):
            raise environments.SideFailed(CANNOT_INSTALL["1.4.0"])
        return tmp_path / "env"

    def recording(command, **kwargs):
        runs.append(command)
        scratch = release_sets.Path(kwargs["env"]["LM_PROBES_CACHE"])
        assert scratch.is_dir() and scratch != tmp_path / "cache"  # conversions go to a scratch cache
        scratches.append(scratch)
        junit = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--junitxml="))
        release_sets.Path(junit).write_text(JUNIT, encoding="utf-8")
        return subprocess.CompletedProcess(command, 1, "", "")

    monkeypatch.setattr(environments, "prepare", prepare)
    monkeypatch.setattr(release_sets.subprocess, "run", recording)
    found = release_sets.record_release("transformers", "1.3.0", [], "torch==2.13.0", [])
    assert found.recorded_cards == ["mistral-tokenizer"] and "Unknown gguf model_type" in found.problem()
    again = release_sets.record_release("transformers", "1.3.0", [], "torch==2.13.0", [])
    assert again.outcomes == found.outcomes and len(runs) == 1
    assert not scratches[0].exists()  # removed after the recording: 517 MB a release for SmolLM2's GGUF
    for _ in range(2):
        cannot = release_sets.record_release("transformers", "1.4.0", [], "torch==2.13.0", [])
        assert cannot.not_installable == CANNOT_INSTALL["1.4.0"] and cannot.problem() == CANNOT_INSTALL["1.4.0"]
    assert builds.count(("transformers==1.4.0",)) == 1


def test_a_setup_error_cut_by_its_line_end_loses_pytests_wrapper_too(tmp_path):
    """bitsandbytes' message spans lines: the first line has no closing quote."""
    from lm_probes.cli.release_sets import card_outcomes

    junit = JUNIT.replace(
        "failed on setup with &quot;NotImplementedError: Unknown gguf model_type: llama&quot;",
        "failed on setup with &quot;RuntimeError: None of the available devices are supported&#10;more",
    )
    (tmp_path / "recording.xml").write_text(junit, encoding="utf-8")
    outcome = card_outcomes(tmp_path / "recording.xml")["smollm2-135m-instruct"]
    assert outcome == "not loadable: RuntimeError: None of the available devices are supported"


def test_pre_releases_are_selected_only_with_pre(stand_ins, tmp_path, capsys):
    """--pre reaches the selection, not only pip's listing (before: the index listed the
    release candidate and the selection dropped it again)."""
    assert changelog(tmp_path, "--from", "1.4.0", "--every", "patch", "--dry-run", "--pre") == 0
    assert "2 releases selected (1.4.0, 2.0.0rc1)" in capsys.readouterr().out
    assert changelog(tmp_path, "--from", "1.4.0", "--every", "patch", "--dry-run") == 0
    assert "1 releases selected (1.4.0)" in capsys.readouterr().out
