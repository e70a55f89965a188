"""The snapshot's section list (lm_probes/snapshots/sections.py): each entry holds everything
about its section, the card schema and the diff follow it, and adding a section is adding
an entry (docs/development.md walks through it)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from lm_probes import section_specs
from lm_probes.cards.schema import CrossClassTolerances, SnapshotSettings, Tolerances
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.report import section_changes as renderers
from lm_probes.report.diff import render
from lm_probes.snapshots import sections
from lm_probes.snapshots.compare import compare
from lm_probes.snapshots.differences import Difference
from lm_probes.snapshots.record import FORMAT, dumps, observe
from lm_probes.snapshots.sets import SetComparison, compare_sets
from tests.unit.conftest import tokenizer_subject

# a recording that holds every section (SmolLM2 float32 records them all)
FULL = json.loads((SNAPSHOT_DIR / "smollm2-135m-instruct" / "cpu.json").read_text(encoding="utf-8"))


def _bump_first_prob(o):
    o["next_token"]["top_probs"][0] -= 0.05


def _bump_entropy(o):
    first = next(iter(o["temperature"]["entropy"]))
    o["temperature"]["entropy"][first] += 0.1


def _change_greedy(o):
    run = o["greedy"]["bos"]
    run["ids"][0] = run["top_ids"][0][-1] + 1  # a token outside its own top-k: no near-tie


def _change_cosine(o):
    o["embedding"]["cosine"][0][1] += 0.01


def _change_sample(o):
    regime = next(k for k in o["sampled"] if k != "seed")
    o["sampled"][regime]["ids"][0][0] += 1


def _skew_first_tokens(o):
    ids = o["first_tokens"]["ids"]
    o["first_tokens"]["ids"] = [ids[0]] * len(ids)  # one token drawn every time


def _add_processor(o):
    call = next(iter(o["generation"]))
    o["generation"][call]["processors"].append("RepetitionPenaltyLogitsProcessor")


def _grow_norm(o):
    o["hidden_states"][0]["norms"][1] *= 1.01


def _widen_backends(o):
    o["attention"]["max_prob_diff"] = 0.5
    o["attention"]["greedy_agrees"] = False


def _end_at_the_budget(o):
    answer = next(iter(o["answer_ends"].values()))
    answer.update(
        ids=answer["ids"][:-1] + [answer["ids"][0]] * (answer["budget"] - len(answer["ids"]) + 1), end="budget"
    )
    answer.update(stop_id=None, new_tokens=answer["budget"])


def _change_ids(o):
    text = next(iter(o["tokenizer"]["ids"]))
    o["tokenizer"]["ids"][text]["special"].insert(0, 1)


# One break per section, each a change the section's rule must report. A new section
# without one fails test_every_section_catches_its_own_break: add its break here.
BREAKS = {
    "tokenizer": _change_ids,
    "next_token": _bump_first_prob,
    "temperature": _bump_entropy,
    "greedy": _change_greedy,
    "embedding": _change_cosine,
    "sampled": _change_sample,
    "first_tokens": _skew_first_tokens,
    "answer_ends": _end_at_the_budget,
    "generation": _add_processor,
    "hidden_states": _grow_norm,
    "attention": _widen_backends,
}


def missing_parts(section: sections.Section) -> list[str]:
    """What an entry lacks: a meaning, a callable observe/compare/render, or a tolerance
    that says what it bounds and has a bound."""
    missing = [] if section.meaning.strip() else ["meaning"]
    missing += [part for part in ("observe", "compare", "render") if not callable(getattr(section, part))]
    for name, t in section.tolerances.items():
        if not t.meaning.strip() or (t.default is None and t.cross_class_units is None):
            missing.append(f"tolerance {name}")
    return missing


def test_every_section_has_all_its_parts():
    names = [s.name for s in sections.all_sections()]
    assert len(names) == len(set(names)), f"a section is listed twice: {names}"
    assert {s.name: missing_parts(s) for s in sections.all_sections() if missing_parts(s)} == {}
    assert set(names) == set(FULL["observed"]), "every entry is one a real card records, and every recorded one has one"
    assert set(BREAKS) == set(names), f"sections without a break below: {set(names) - set(BREAKS)}"


def test_the_card_schema_follows_the_section_list():
    """leave_out takes exactly the leavable sections, and `tolerances:` exactly the sections'
    tolerances (nothing restated in the schema)."""
    leave_out = SnapshotSettings.model_json_schema()["properties"]["leave_out"]["items"]["enum"]
    assert leave_out == [s.name for s in sections.all_sections() if s.leavable]
    assert set(Tolerances.model_fields) - {"cross_class"} == set(section_specs.default_tolerances())
    assert set(CrossClassTolerances.model_fields) == set(section_specs.cross_class_units())


@pytest.mark.parametrize("name", list(BREAKS))
def test_every_section_catches_its_own_break_and_passes_its_own_recording(name):
    assert compare(FULL["observed"], FULL["observed"]) == []
    broken = copy.deepcopy(FULL["observed"])
    BREAKS[name](broken)
    same = FULL["provenance"]
    found = compare(FULL["observed"], broken, recorded_provenance=same, current_provenance=same)
    assert [d for d in found if d.severity == "error"], f"{name}: the break was not reported"
    assert {d.where.split(".")[0].split("[")[0] for d in found} == {name}, found
    details = sections.find(name).render(name, FULL["observed"][name], broken[name], ("A", "B"))
    assert details and all(d.title and d.html for d in details), f"{name}: the diff shows nothing of the change"


def _vocab_head(subject):
    # the first ten ids' pieces: a section a newcomer might add (docs/development.md)
    return {"pieces": subject.tokenizer.convert_ids_to_tokens(list(range(10)))}


def _compare_vocab_head(rec, cur, ctx):
    return [] if rec == cur else [Difference("error", "vocab_head", f"{rec['pieces']} -> {cur['pieces']}")]


def test_a_new_section_is_one_entry(tmp_path):
    """One Section registered is recorded, compared, summarised by the diff and shown on its
    page, with nothing else edited (test_extension_points.py registers one from a plugin)."""
    entry = sections.Section(
        "vocab_head",
        "the first ten vocabulary pieces",
        _vocab_head,
        _compare_vocab_head,
        renderers.changed_values,
        needs_model=False,
    )
    sections.register(entry)
    try:
        _record_compare_and_show(entry, tmp_path)
    finally:
        sections.unregister("vocab_head")
    assert sections.find("vocab_head") is None and "vocab_head" not in section_specs.REGISTRY


def _record_compare_and_show(entry: sections.Section, tmp_path) -> None:
    subject = tokenizer_subject()
    observed = observe(subject)
    assert observed["vocab_head"]["pieces"][:3] == ["<unk>", "<s>", "</s>"]  # the Mistral tokenizer's
    broken = copy.deepcopy(observed)
    broken["vocab_head"]["pieces"][3] = "<edited>"
    assert [d.where for d in compare(observed, broken)] == ["vocab_head"]
    for side, data in (("a", observed), ("b", broken)):
        folder = tmp_path / side / subject.name
        folder.mkdir(parents=True)
        snapshot = {"format": FORMAT, "card": subject.name, "provenance": {}, "observed": data}
        (folder / "cpu.json").write_text(dumps(snapshot), encoding="utf-8")
    (comparison,) = compare_sets(tmp_path / "a", tmp_path / "b")
    assert "vocab_head" in comparison.sections and list(comparison.by_section()) == ["vocab_head"]
    page = render(SetComparison((comparison,)), "before", "after")
    assert "vocab_head: 1 recorded value(s) changed" in page and "&lt;edited&gt;" in page


def test_an_entry_without_its_parts_is_refused():
    """What test_every_section_has_all_its_parts catches: an entry without a renderer, or
    with a tolerance that bounds nothing."""
    assert missing_parts(replace(sections.all_sections()[0], render=None)) == ["render"]
    empty = section_specs.Tolerance("max |dp|", None, None)
    assert missing_parts(replace(sections.all_sections()[1], tolerances={"prob_atol": empty})) == [
        "tolerance prob_atol"
    ]


def test_every_spec_has_its_behaviour_and_every_behaviour_its_spec():
    """lm_probes/section_specs.py (what the card schema reads) and snapshots/sections.py's
    BEHAVIOUR (how the snapshot stage observes, compares and shows each) name the same
    sections, in the same order as all_sections(): a spec without behaviour would be a card key
    nothing records."""
    assert (
        [s.name for s in section_specs.SPECS] == list(sections.BEHAVIOUR) == [s.name for s in sections.all_sections()]
    )


def test_reading_a_card_imports_no_snapshot_module_and_no_numpy():
    """Before: cards/schema.py imported the snapshot stage for its section names, and with it
    eight snapshot and probe modules and numpy."""
    import subprocess
    import sys

    code = (
        "import sys, lm_probes.cards.card; "
        "print(sorted(m for m in sys.modules if m.startswith('lm_probes.snapshots') or m in ('numpy', 'torch')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
