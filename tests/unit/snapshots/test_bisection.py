"""The search of ``lm-probes bisect`` on stand-in releases: recorded sets (tiny-mistral's
shipped snapshot) that differ at known points, a section that changes twice, and releases that
cannot be recorded. No environment is built: ``record`` hands back the stand-in folder."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots.bisection import EndNotRecorded, ReleaseSkipped, bisect
from lm_probes.snapshots.sets import compare_sets

CARD = "tiny-mistral"
RELEASES = [f"1.{i}.0" for i in range(9)]  # 1.0.0 good ... 1.8.0 bad


def stand_ins(tmp_path: Path, edits: dict[str, callable]) -> dict[str, Path]:
    """One recorded set per release: the shipped snapshot with ``edits[release]`` applied
    (each edit applies from its release on, as a change a release makes stays)."""
    shipped = json.loads((SNAPSHOT_DIR / CARD / "cpu.json").read_text(encoding="utf-8"))
    folders = {}
    current = copy.deepcopy(shipped)
    for release in RELEASES:
        if release in edits:
            edits[release](current["observed"])
        folder = tmp_path / release
        (folder / CARD).mkdir(parents=True)
        (folder / CARD / "cpu.json").write_text(json.dumps(current), encoding="utf-8")
        folders[release] = folder
    return folders


def bos_becomes(value):
    def edit(observed):
        observed["tokenizer"]["bos_token_id"] = value

    return edit


def greedy_top_k(value):
    def edit(observed):
        observed["generation"]["greedy"]["effective"]["top_k"] = value

    return edit


def recorder(folders, skipped=(), calls=None):
    def record(release):
        if calls is not None:
            calls.append(release)
        if release in skipped:
            raise ReleaseSkipped(f"{release} needs kernels>=0.19.1, which the index does not have")
        return folders[release]

    return record


@pytest.mark.parametrize("width", [1, 2, 3])
def test_each_transition_is_found_at_its_release_and_confirmed_by_the_one_before(tmp_path, width):
    """The tokenizer changes once (1.3.0), generate()'s settings twice (1.2.0, then 1.6.0):
    three transitions, each between two neighbours that compare different; the same three
    whether one release is recorded at a time or two or three (a 3- or 4-ary search)."""
    folders = stand_ins(tmp_path, {"1.3.0": bos_becomes(7), "1.2.0": greedy_top_k(40), "1.6.0": greedy_top_k(20)})
    calls = []
    found = bisect(RELEASES, recorder(folders, calls=calls), lambda a, b: compare_sets(a, b), width=width)
    lines = sorted(t.line() for t in found.transitions)
    assert [(t.section, t.before, t.release, t.exact) for t in found.transitions] == [
        ("generation", "1.1.0", "1.2.0", True),
        ("generation", "1.5.0", "1.6.0", True),
        ("tokenizer", "1.2.0", "1.3.0", True),
    ], lines
    assert "top_k" in found.transitions[0].change and "bos_token_id" in found.transitions[2].change, lines
    assert lines[0].startswith("tiny-mistral generation: 1.2.0 (1.1.0 → 1.2.0): ")
    # each release recorded once, whatever the number of searches that probe it
    assert len(calls) == len(set(calls)) < len(RELEASES) + 1 and found.skipped == {}


def test_a_skipped_release_is_named_and_probed_around(tmp_path):
    """1.4.0 and 1.5.0 cannot be installed: the search probes around them; the change at
    1.5.0 can only be placed between 1.3.0 and 1.6.0, naming the skipped ones, not guessed."""
    folders = stand_ins(tmp_path, {"1.5.0": bos_becomes(7), "1.2.0": greedy_top_k(40)})
    found = bisect(RELEASES, recorder(folders, skipped={"1.4.0", "1.5.0"}), compare_sets)
    by_section = {t.section: t for t in found.transitions}
    assert (by_section["generation"].release, by_section["generation"].exact) == ("1.2.0", True)
    tokenizer = by_section["tokenizer"]
    assert (tokenizer.before, tokenizer.release, tokenizer.among) == ("1.3.0", "1.6.0", ("1.4.0", "1.5.0"))
    assert not tokenizer.exact and "or one of the skipped 1.4.0, 1.5.0" in tokenizer.line()
    assert set(found.skipped) <= {"1.4.0", "1.5.0"} and "kernels>=0.19.1" in found.skipped["1.4.0"]


def test_no_change_between_the_ends_gives_no_transition_and_records_only_the_ends(tmp_path):
    folders = stand_ins(tmp_path, {})
    calls = []
    found = bisect(RELEASES, recorder(folders, calls=calls), compare_sets)
    assert found.transitions == [] and calls == ["1.0.0", "1.8.0"]


def test_a_change_that_goes_back_inside_an_interval_is_not_seen_and_a_drift_is_unconfirmed(tmp_path):
    """What the search assumes, shown: A, B, A between two equal ends is not looked for (the
    ends agree); a value moving within tolerance at each release but beyond it over the range
    is reported unconfirmed, naming the two releases that agree."""
    folders = stand_ins(tmp_path, {"1.3.0": bos_becomes(7), "1.5.0": bos_becomes(1)})
    assert bisect(RELEASES, recorder(folders), compare_sets).transitions == []

    def drifting(a: Path, b: Path):
        """A comparison whose tolerance lets two neighbours agree, but not releases 2 apart."""
        real = compare_sets(a, b)
        far = abs(RELEASES.index(a.name) - RELEASES.index(b.name)) >= 2
        return real if far else compare_sets(a, a)

    drift = {r: bos_becomes(i) for i, r in enumerate(RELEASES)}
    found = bisect(RELEASES, recorder(stand_ins(tmp_path / "drift", drift)), drifting)
    (transition,) = [t for t in found.transitions if t.section == "tokenizer"][:1]
    assert not transition.confirmed and "[unconfirmed:" in transition.line()


def test_an_end_that_cannot_be_recorded_stops_the_search_saying_why(tmp_path):
    folders = stand_ins(tmp_path, {})
    with pytest.raises(EndNotRecorded, match="1.8.0 could not be recorded: 1.8.0 needs kernels"):
        bisect(RELEASES, recorder(folders, skipped={"1.8.0"}), compare_sets)


# ----------------------------------------------------------------- the command


@pytest.fixture
def stand_in_index(tmp_path, monkeypatch):
    """lm-probes bisect with pip's index and the recording replaced by the stand-ins: the
    tokenizer changes at 1.3.0, and 1.5.0 cannot be installed."""
    from lm_probes.cli import bisect as command

    folders = stand_ins(tmp_path / "sets", {"1.3.0": bos_becomes(7)})
    monkeypatch.setattr(command, "index_versions", lambda package, pre: [*reversed(RELEASES), "2.0.0rc1", "0.9"])
    monkeypatch.setattr(command, "recorder", lambda package, cards, pin, log: recorder(folders, skipped={"1.5.0"}))
    return tmp_path


def test_bisect_prints_one_line_per_transition_and_writes_the_pages_and_json(stand_in_index, capsys):
    from lm_probes.cli.main import main

    out = stand_in_index / "report"
    code = main(
        ["bisect", "--package", "transformers", "--good", "1.0.0", "--bad", "1.8.0"]
        + ["--output", str(out), "--json", str(out / "bisect.json"), "--summary", str(out / "summary.md")]
    )
    printed = capsys.readouterr().out
    assert code == 1, printed
    summary = (out / "summary.md").read_text(encoding="utf-8")  # the CI summary: the transition's row
    assert "**lm-probes bisect** transformers 1.0.0 → 1.8.0: exit 1, 1 transition(s)" in summary
    assert "| tiny-mistral | tokenizer | 1.3.0 (after 1.2.0) | tokenizer.bos_token_id: 1 -> 7 |" in summary
    assert "tiny-mistral tokenizer: 1.3.0 (1.2.0 → 1.3.0): tokenizer.bos_token_id: 1 -> 7" in printed
    assert "https://github.com/huggingface/transformers/releases/tag/v1.3.0" in printed
    assert "9 releases (1.0.0, 1.1.0" in printed and "2.0.0rc1" not in printed  # the range, in order
    found = json.loads((out / "bisect.json").read_text(encoding="utf-8"))
    assert [t["release"] for t in found["transitions"]] == ["1.3.0"] and found["good"] == "1.0.0"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "transition-1.html" in page and "1.3.0" in page and (out / "transition-1.html").is_file()


def test_bisect_over_a_range_with_no_change_exits_0(stand_in_index, capsys):
    from lm_probes.cli.main import main

    code = main(
        ["bisect", "--package", "transformers", "--good", "1.0.0", "--bad", "1.2.0"]
        + ["--output", str(stand_in_index / "report")]
    )
    assert code == 0 and "exit 0: nothing changed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "good, bad, says",
    [
        ("1.0.0", "9.9.9", "--bad 9.9.9: the index has no transformers 9.9.9"),
        ("1.8.0", "1.0.0", "--good 1.8.0 is not older than --bad 1.0.0"),
    ],
)
def test_bisect_refuses_a_range_the_index_does_not_hold(stand_in_index, capsys, good, bad, says):
    from lm_probes.cli.main import main

    assert main(["bisect", "--package", "transformers", "--good", good, "--bad", bad]) == 4
    assert says in capsys.readouterr().err


def test_bisect_names_an_end_it_cannot_record_and_exits_2(stand_in_index, capsys):
    from lm_probes.cli.main import main

    code = main(
        ["bisect", "--package", "transformers", "--good", "1.0.0", "--bad", "1.5.0"]
        + ["--output", str(stand_in_index / "report")]
    )
    assert code == 2 and "1.5.0 could not be recorded: 1.5.0 needs kernels>=0.19.1" in capsys.readouterr().err


def test_a_failed_recording_is_said_in_one_line_with_pytests_own_error():
    from lm_probes.cli.release_sets import one_line

    failure = (
        "recording under transformers==4.57.6 failed (exit 1): /env/bin/python -m pytest tests/behaviour/...\n"
        "E   NotImplementedError: Unknown gguf model_type: <LlamaTensorProcessor object>\n"
        "ERROR tests/behaviour/test_snapshot.py::test_matches_snapshot[smollm2-135m-instruct]\n"
        "1 passed, 1 error in 19.48s"
    )
    assert one_line(failure) == (
        "recording under transformers==4.57.6 failed (exit 1): "
        "NotImplementedError: Unknown gguf model_type: <LlamaTensorProcessor object>"
    )
    assert one_line("the 'x' environment cannot be built: pip's dry run failed") == (
        "the 'x' environment cannot be built: pip's dry run failed"
    )


def test_a_set_recorded_for_more_cards_is_reused_for_fewer():
    from lm_probes.cli.release_sets import DEFAULT, covers

    assert covers(["mistral-tokenizer", "smollm2-135m-instruct"], ["mistral-tokenizer"])
    assert not covers(["mistral-tokenizer"], ["mistral-tokenizer", "tiny-mistral"])
    assert covers([DEFAULT], [DEFAULT]) and not covers(["tiny-mistral"], [DEFAULT])


def test_with_width_2_the_ends_and_each_rounds_points_are_recorded_at_once(tmp_path):
    """Two recordings meet at a barrier: it breaks (after 10 s) unless both run at the same time."""
    import threading

    folders = stand_ins(tmp_path, {"1.3.0": bos_becomes(7)})
    together = threading.Barrier(2, timeout=10)

    def record(release):
        together.wait()  # raises BrokenBarrierError if the other of its pair is not running
        return folders[release]

    found = bisect(RELEASES, record, compare_sets, width=2)
    assert [(t.before, t.release) for t in found.transitions] == [("1.2.0", "1.3.0")]
    # the ends together, then pairs of points: (1.3.0, 1.5.0), then (1.1.0, 1.2.0) around 1.3.0
    assert found.recorded == ["1.0.0", "1.8.0", "1.3.0", "1.5.0", "1.1.0", "1.2.0"]
