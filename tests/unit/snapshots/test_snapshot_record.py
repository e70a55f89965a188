"""Snapshot files and what they hold: recording writes stable, readable JSON that loads back,
a missing or foreign file says how to fix it, and observe() and provenance() hold every probe
and version (split from test_snapshots.py, issue 36)."""

from __future__ import annotations

import json

import pytest

from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots import sections, token_rules
from lm_probes.snapshots.check import SnapshotCheck, SnapshotOutcome
from lm_probes.snapshots.compare import compare, summary_line
from lm_probes.snapshots.differences import Difference
from lm_probes.snapshots.entries import TOP_N
from lm_probes.snapshots.record import (
    FORMAT,
    SnapshotError,
    dumps,
    load,
    observe,
    provenance,
    record,
    recorded_classes,
    snapshot_path,
    unrecorded_device_class,
)
from tests.unit.conftest import tiny, tokenizer_subject
from tests.unit.snapshots.snapshot_helpers import diffs_of, observed

# ------------------------------------------------------------------- snapshot files


def test_record_writes_stable_readable_json(tmp_path):
    subject = tokenizer_subject()
    path = record(subject, tmp_path)
    assert path == tmp_path / "mistral-tokenizer" / "cpu.json"
    first = path.read_text(encoding="utf-8")
    record(subject, tmp_path)
    second = path.read_text(encoding="utf-8")
    strip = lambda text: [line for line in text.splitlines() if '"recorded"' not in line]  # noqa: E731
    assert strip(first) == strip(second)  # same content, same order: a clean diff
    assert '"日本の首都は"' in first  # readable, not \\u-escaped
    assert "[1, 415, 5565, 302, 4720, 349]" in first  # short number lists on one line


def test_missing_corrupt_and_foreign_snapshots_say_how_to_fix(tmp_path):
    hint = "pytest tests/behaviour/test_snapshot.py --lm-probes-card x --lm-probes-snapshot-update"
    with pytest.raises(SnapshotError, match="no snapshot at .*Record one with: pytest"):
        load(tmp_path / "none.json", hint)
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"format": 1, "observed": {"tok', encoding="utf-8")
    with pytest.raises(SnapshotError, match="corrupt or truncated .*Re-record it with"):
        load(truncated, hint)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(SnapshotError, match="not a format-1 lm-probes snapshot"):
        load(foreign, hint)


def test_summary_line_names_what_changed():
    diffs = [Difference("warning", "greedy.bos", "x"), Difference("error", "next_token.probs", "y")]
    line = summary_line(
        {"transformers": "4.57.6", "torch": "2.13.0"}, {"transformers": "5.23.0", "torch": "2.13.0"}, diffs
    )
    assert line == "transformers 4.57.6 -> 5.23.0: 1 error(s) in next_token.probs; 1 warning(s) in greedy.bos"


# ------------------------------------ mutation testing survivors (docs/reliability.md, "Mutation score")


def test_dumps_is_sorted_indented_unicode_with_number_lists_inline():
    text = dumps({"b": [1e-05, -2.5, 3], "a": {"テキスト": [[1, 2], ["x"]]}})
    assert text == (
        '{\n "a": {\n  "テキスト": [\n   [1, 2],\n   [\n    "x"\n   ]\n  ]\n },\n "b": [1e-05, -2.5, 3]\n}\n'
    )


def test_dumps_never_rewrites_a_string_that_holds_a_number_list():
    """A generated text holding code or JSON ("ids [1,2,3]") is written as the model said it;
    the regular expression over the JSON text that dumps used to be wrote "ids [1, 2, 3]"."""
    observed = {"texts": ["ids [1,2,3]", "[ 4 ,5 ]"], "ids": [1, 2, 3]}
    text = dumps(observed)
    assert json.loads(text) == observed
    assert '"ids [1,2,3]"' in text and '"[ 4 ,5 ]"' in text and '"ids": [1, 2, 3]' in text


@pytest.mark.parametrize("path", sorted(p.relative_to(SNAPSHOT_DIR).as_posix() for p in SNAPSHOT_DIR.glob("*/*.json")))
def test_dumps_writes_every_committed_snapshot_back_byte_for_byte(path):
    text = (SNAPSHOT_DIR / path).read_text(encoding="utf-8")
    assert dumps(json.loads(text)) == text


def test_record_creates_missing_folders_and_writes_a_loadable_snapshot(tmp_path):
    root = tmp_path / "new" / "snapshots"  # neither folder exists yet
    path = record(tokenizer_subject(), root)
    snapshot = load(path, "hint")
    assert sorted(snapshot) == ["card", "format", "observed", "provenance"]
    assert snapshot["card"] == "mistral-tokenizer" and snapshot["format"] == FORMAT
    assert snapshot["provenance"]["device"] == "cpu" and "vocab_size" in snapshot["observed"]["tokenizer"]
    assert [p.name for p in path.parent.iterdir()] == ["cpu.json"]  # no temporary file left


@pytest.mark.parametrize(
    "content",
    ["[1, 2]", '{"format": 1}', '{"format": 2, "observed": {}}', '{"observed": {}}'],
    ids=["a-list", "no-observed", "other-format", "no-format"],
)
def test_a_snapshot_of_another_shape_is_refused(tmp_path, content):
    path = tmp_path / "s.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SnapshotError, match="not a format-1 lm-probes snapshot"):
        load(path, "hint")
    path.write_text('{"format": 1, "observed": {}}', encoding="utf-8")
    assert load(path, "hint") == {"format": 1, "observed": {}}


@pytest.mark.parametrize("key", ["torch", "transformers", "tokenizers", "device", "dtype", "cpu threads"])
def test_summary_line_names_each_provenance_change(key):
    before = {k: "1" for k in ("torch", "transformers", "tokenizers", "device", "dtype", "cpu threads")}
    after = before | {key: "2"}
    assert summary_line(before, after, []) == f"{key} 1 -> 2: no change beyond tolerance"
    assert summary_line(before, before, []) == "same versions and machine class: no change beyond tolerance"
    two = after | {"torch": "3"} if key != "torch" else after | {"dtype": "3"}
    assert ", " in summary_line(before, two, [])


# ====================================================================== model-backed
# The tests below build tiny-mistral subjects and observe them (about 1.5 s each); the
# ones above take milliseconds. Mutation testing runs every test that reaches a mutated
# function in file order and stops at the first failure, so the quick ones come first.


# ------------------------------------------------------- what observe() and provenance() hold


def test_provenance_reads_versions_device_and_files_from_the_run():
    import re

    from lm_probes.environment import environment_info

    env = environment_info()
    prov = provenance(tokenizer_subject())
    assert sorted(prov) == sorted(
        [
            "python",
            "torch",
            "transformers",
            "tokenizers",
            "device",
            "class",
            "numerics",
            "gpu",
            "cpu threads",
            "dtype",
            "quantization",
            "model source",
            "files",
            "revision",
            "recorded",
            "sections",
        ]
    )
    assert prov["sections"] == [section.name for section in sections.all_sections()]
    for key in ("python", "torch", "transformers", "tokenizers", "gpu", "cpu threads"):
        assert prov[key] == env[key], key
    assert (prov["device"], prov["dtype"], prov["quantization"], prov["revision"]) == ("cpu", "-", "none", None)
    assert prov["class"] == "cpu" and prov["numerics"]["model_dtype"] == "-"  # no kernels: one class
    assert prov["model source"] == "mistral_common/data/tokenizer.model.v1"
    assert list(prov["files"]) == ["tokenizer.model.v1"] and len(prov["files"]["tokenizer.model.v1"]) == 16
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", prov["recorded"])
    model_prov = provenance(tiny())
    assert (model_prov["device"], model_prov["dtype"], model_prov["class"]) == ("cpu", "float32", "cpu")
    assert model_prov["numerics"]["model_dtype"] == "float32" and model_prov["numerics"]["bnb_kernel"] is None
    assert model_prov["model source"] == "random MistralForCausalLM (seed 0)"


def test_observe_holds_every_probe_of_a_model_subject(tiny_recorded):
    recorded, _ = tiny_recorded
    assert sorted(recorded) == [
        "answer_ends",
        "attention",
        "embedding",
        "generation",
        "greedy",
        "hidden_states",
        "next_token",
        "sampled",
        "temperature",
        "tokenizer",
    ]
    # U1-U4 (issue 13)
    assert recorded["tokenizer"]["chat"]["has_template"] and recorded["tokenizer"]["chat"]["ids"][:2] == [1, 733]
    assert sorted(recorded["generation"]) == ["greedy", "hot", "no-arguments"]
    assert recorded["generation"]["hot"]["processors"] == [
        "TemperatureLogitsWarper",
        "TopKLogitsWarper",
        "TopPLogitsWarper",
    ]
    assert [len(h["norms"]) for h in recorded["hidden_states"]] == [3, 3]
    assert all(len(row) == 16 for h in recorded["hidden_states"] for row in h["projections"])
    assert recorded["attention"]["backends"] == ["eager", "sdpa"] and recorded["attention"]["greedy_agrees"]
    tok = recorded["tokenizer"]
    assert (tok["vocab_size"], tok["bos_token_id"]) == (32000, 1)
    assert tok["ids"]["The capital of Japan is"] == {
        "special": [1, 415, 5565, 302, 4720, 349],
        "plain": [415, 5565, 302, 4720, 349],
    }
    nt = recorded["next_token"]
    assert nt["prompt"] == "The capital of Japan is" and nt["prompt_ids"] == [1, 415, 5565, 302, 4720, 349]
    assert len(nt["top_ids"]) == len(set(nt["top_ids"])) == len(nt["top_probs"]) == TOP_N
    assert nt["top_probs"] == sorted(nt["top_probs"], reverse=True) and 0 < nt["top_probs"][0] < 1
    assert all(p == round(p, 7) for p in nt["top_probs"])
    assert sorted(recorded["temperature"]["entropy"]) == ["0.4", "1.0", "1.6"]
    entropies = [recorded["temperature"]["entropy"][t] for t in ("0.4", "1.0", "1.6")]
    assert entropies == sorted(entropies) and all(e == round(e, 6) for e in entropies)
    for label, first in (("bos", [1]), ("no-bos", [])):
        g = recorded["greedy"][label]
        assert g["prompt_ids"] == first + [415, 5565, 302, 4720, 349]
        assert len(g["ids"]) == len(g["margins"]) == 20 and all(m >= 0 for m in g["margins"])
        assert isinstance(g["text"], str) and g["text"]
    emb = recorded["embedding"]
    assert len(emb["words"]) == 20 and emb["words"][:2] == ["king", "queen"]
    assert [len(emb["row_norms"][w]) for w in emb["words"]] == [len(emb["sub_ids"][w]) for w in emb["words"]]
    assert len(emb["cosine"]) == 20 and all(
        len(row) == 20 and row[i] == pytest.approx(1.0) for i, row in enumerate(emb["cosine"])
    )
    assert recorded["sampled"]["seed"] == 0
    assert sorted(k for k in recorded["sampled"] if k != "seed") == ["hot", "near-greedy", "warm"]
    assert all(
        len(recorded["sampled"][r]["ids"]) == len(recorded["sampled"][r]["texts"]) == 5
        for r in ("hot", "near-greedy", "warm")
    )


def test_a_tokenizer_only_subject_has_the_cpu_class_and_only_tokenizer_observations(tmp_path):
    subject = tokenizer_subject()
    assert subject.machine_class == "cpu"
    assert snapshot_path(subject, tmp_path) == tmp_path / "mistral-tokenizer" / "cpu.json"
    assert list(observe(subject)) == ["tokenizer"]


def test_sections_a_card_leaves_out_are_not_compared_but_a_changed_leave_out_is_an_error():
    lean = {k: v for k, v in observed().items() if k not in ("greedy", "sampled")}
    assert diffs_of(lean, recorded=lean) == []  # both leave greedy and sampled out
    changed_embedding = {**lean, "embedding": {**lean["embedding"], "cosine": [[1.0, 0.6], [0.6, 1.0]]}}
    assert diffs_of(changed_embedding, recorded=lean) != []  # what is kept is still compared
    assert diffs_of(lean) == [
        "[error] greedy: the snapshot has it, this run leaves it out (the card's snapshot.leave_out changed?)",
        "[error] sampled: the snapshot has it, this run leaves it out (the card's snapshot.leave_out changed?)",
    ]
    assert diffs_of(observed(), recorded=lean)[0] == (
        "[error] greedy: the snapshot leaves it out, this run has it (the card's snapshot.leave_out changed?)"
    )


def test_a_bitsandbytes_upgrade_is_named_in_the_summary_and_stops_sampled_comparison():
    rec = {"torch": "2.13.0", "transformers": "5.23.0", "bitsandbytes": "0.49.2", "quantization": "nf4"}
    cur = {**rec, "bitsandbytes": "0.50.2"}
    assert summary_line(rec, cur, []) == "bitsandbytes 0.49.2 -> 0.50.2: no change beyond tolerance"
    assert token_rules.why_samples_not_comparable(rec, cur) == ["bitsandbytes 0.49.2 -> 0.50.2"]


def test_a_first_gpu_run_skips_only_where_no_class_is_recorded_and_a_missing_cpu_snapshot_is_not_excused(tmp_path):
    card_dir = tmp_path / "mistral-7b-v0.1"
    card_dir.mkdir()
    assert unrecorded_device_class(card_dir / "cuda-sm90.json") == (
        "no snapshot for machine class cuda-sm90 yet (recorded: none)"
    )
    (card_dir / "cpu-bnb-float16.json").write_text("{}", encoding="utf-8")
    # another class recorded: compared with it under the cross-class rules, not skipped
    assert unrecorded_device_class(card_dir / "cuda-sm90.json") is None
    assert recorded_classes(card_dir) == ["cpu-bnb-float16"]
    assert unrecorded_device_class(tmp_path / "other" / "cpu.json") is None  # load() fails it
    assert unrecorded_device_class(tmp_path / "other" / "cpu-bnb-float16.json") is None


def test_snapshot_warning_is_importable_from_the_package_and_compare_takes_keywords():
    """Issue 12: `lm_probes.SnapshotWarning` (to filter it, or `-W error::lm_probes.SnapshotWarning`
    to fail on near-ties), and compare()'s options by name only, so a call cannot mix up
    the two provenances."""
    import lm_probes

    assert lm_probes.SnapshotWarning.__module__ == "lm_probes"  # defined there: naming it imports nothing else
    assert issubclass(lm_probes.SnapshotWarning, UserWarning)
    with pytest.raises(TypeError):
        compare({}, {}, {})  # tolerances positionally


def test_the_snapshot_fixture_records_then_compares_and_keeps_typed_outcomes(tmp_path):
    """SnapshotCheck (the `snapshot` fixture) on the tokenizer card in an empty folder:
    missing -> failed with the record command; --lm-probes-snapshot-update -> recorded; then a
    compare -> passed. Each outcome survives the JSON trip from an xdist worker."""
    subject = tokenizer_subject()
    check = SnapshotCheck(tmp_path, dir_option=f" --lm-probes-snapshot-dir {tmp_path}")
    missing = check.check(subject)
    assert missing.verdict == "failed" and "--lm-probes-snapshot-update --lm-probes-snapshot-dir" in missing.message
    assert SnapshotCheck(tmp_path, update=True).check(subject).verdict == "recorded"
    compared = check.check(subject)
    assert (compared.verdict, compared.status, compared.errors) == ("passed", "compared with cpu.json", ())
    assert check.outcomes == {"mistral-tokenizer": compared}
    for outcome in (missing, compared):
        assert SnapshotOutcome.from_json(json.loads(json.dumps(outcome.as_json()))) == outcome
