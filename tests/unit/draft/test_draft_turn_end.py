"""draft-card and where generation stops: a model whose stop ids miss its turn end is refused
before measuring, or drafted with the defect as a strict xfail; drafted answer ends (split
from test_draft.py, issue 36)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_probes.cards.card import find_card, load_card
from lm_probes.cli import draft_card
from lm_probes.cli import main as cli
from lm_probes.draft import measure
from lm_probes.draft.settings import Draft
from lm_probes.draft.turn_end import ACCEPT_FLAG, TURN_END_TEST, TurnEndNotAStop, draft_turn_end
from lm_probes.draft.writer import DRAFTED_TESTS
from lm_probes.subjects.subject import Subject

# ------------------------------------------------------- U7: where generation stops


def smollm2_folder_stopping_at(folder, eos_token_id: int):
    """SmolLM2's converted folder (files linked, not copied) whose generation_config.json
    stops at ``eos_token_id``: 2 is '<|im_end|>', the end of its template's turns, as shipped;
    0 is '<|endoftext|>' (the Llama-3-Instruct shape: the model ends its turn and goes on)."""
    source = Path(Subject(find_card("smollm2-135m-instruct")).model_folder())
    folder.mkdir()
    for item in source.iterdir():
        if item.name != "generation_config.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((source / "generation_config.json").read_text(encoding="utf-8"))
    (folder / "generation_config.json").write_text(json.dumps(config | {"eos_token_id": eos_token_id}))
    return folder


@pytest.fixture
def model_sections_stubbed(monkeypatch):
    """draft-card with the model's sections (minutes on a real model) left out: the
    tokenizer's sections and the turn end are measured for real. Returns the calls made."""
    calls = []
    monkeypatch.setattr(measure, "draft_model_sections", lambda subject, settings, draft: calls.append(subject))
    return calls


def test_draft_card_refuses_a_model_whose_stop_ids_miss_its_turn_end_before_measuring(tmp_path, monkeypatch, capsys):
    """Issue 33: a card drafted from it would record answers that run into the next turn as
    the baseline. Refused, exit 1 (the model's defect, not bad input), with the problem's
    sentence, before the weights load or anything is measured; nothing written."""
    folder = smollm2_folder_stopping_at(tmp_path / "smollm2-eos0", 0)

    def not_reached(*args):
        raise AssertionError("measured or loaded the weights before the turn-end check")

    monkeypatch.setattr(draft_card, "draft_card", not_reached)
    monkeypatch.setattr(Subject, "_load_model", not_reached)
    card_file = tmp_path / "cards" / "eos0.yaml"
    code = cli.main(["draft-card", "--model", str(folder), "--name", "eos0", "-o", str(card_file)])
    err = capsys.readouterr().err
    assert code == draft_card.MODEL_DEFECT == 1, err
    assert (
        "the template ends an assistant turn with '<|im_end|>' (id 2); generation_config.eos_token_id = [0]: "
        "'<|im_end|>' is not among them" in err
    ), err
    assert "Add 2 to generation_config.json's eos_token_id" in err and ACCEPT_FLAG in err
    assert "Traceback" not in err and not card_file.parent.exists()


def test_draft_card_with_the_flag_records_the_turn_end_defect_as_a_strict_xfail(
    tmp_path, model_sections_stubbed, run_suite, capsys
):
    """--accept-turn-end-not-a-stop-id: the card is written, its turn_end as measured, and
    the check a strict xfail whose reason is the problem: the suite reports it every run
    (xfailed), and a fixed generation_config.json would XPASS and fail the run."""
    folder = smollm2_folder_stopping_at(tmp_path / "smollm2-eos0", 0)
    card_file = tmp_path / "eos0.yaml"
    argv = ["draft-card", "--model", str(folder), "--name", "eos0", "-o", str(card_file), ACCEPT_FLAG]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert len(model_sections_stubbed) == 1
    card = load_card(card_file)
    assert card.expected("tokenizer.chat.turn_end") == "<|im_end|>"
    assert "# U7, measured: id 2, generation_config.eos_token_id [0]" in card_file.read_text(encoding="utf-8")
    [entry] = card.xfail
    assert entry.test == TURN_END_TEST and entry.case is None
    assert entry.reason.startswith("the template ends an assistant turn with '<|im_end|>' (id 2)")
    assert ACCEPT_FLAG in entry.reason
    reported = run_suite("tests/behaviour", "--lm-probes-card", str(card_file), "-k", TURN_END_TEST)
    assert reported.returncode == 0 and "1 xfailed" in reported.stdout, reported.stdout[-2000:]


def test_draft_card_of_a_model_that_stops_at_its_turn_end_writes_it_and_no_xfail(
    tmp_path, model_sections_stubbed, capsys
):
    """The harmless twin: the same folder as shipped (eos_token_id 2) drafts without the flag."""
    folder = smollm2_folder_stopping_at(tmp_path / "smollm2", 2)
    card_file = tmp_path / "smollm2.yaml"
    assert cli.main(["draft-card", "--model", str(folder), "--name", "smollm2", "-o", str(card_file)]) == 0, (
        capsys.readouterr().err
    )
    card = load_card(card_file)
    assert card.expected("tokenizer.chat.turn_end") == "<|im_end|>" and card.xfail == []
    assert "# U7, measured: id 2, generation_config.eos_token_id [2]" in card_file.read_text(encoding="utf-8")


def test_the_drafts_turn_end_check_on_the_loaded_model_refuses_too(tmp_path):
    """The draft itself reads the loaded model's generation_config (what the suite reads):
    a stop set the file check passed but the model does not have is still refused."""
    folder = smollm2_folder_stopping_at(tmp_path / "smollm2-eos0", 0)
    subject = Subject(
        draft_card.draft_base(cli.parser().parse_args(["draft-card", "--model", str(folder), "--name", "x"]))
    )
    draft = Draft()
    draft.expect["tokenizer"] = {"chat": {"has_template": True}}
    with pytest.raises(TurnEndNotAStop, match=r"\(id 2\); generation_config.eos_token_id = \[0\]"):
        draft_turn_end(subject, draft, accept=False)
    assert TURN_END_TEST in DRAFTED_TESTS  # a re-measured card's entry is measured anew, not kept


def test_drafted_answer_ends_bound_each_answer_that_stopped_at_twice_its_length():
    """U8 in a drafted card: SmolLM2's three answers stop at <|im_end|> after 12, 8 and 16 new
    tokens (measured, float32), so the draft bounds them at 24, 16 and 32. tiny-mistral's
    random weights never reach a stop id within the budget: no section, nothing to bound."""
    drafted = measure.draft_answer_ends(Subject(find_card("smollm2-135m-instruct")))
    assert drafted.value == {
        "prompts": [
            {"id": "united-states", "ends_within": 24},
            {"id": "japan", "ends_within": 16},
            {"id": "cat", "ends_within": 32},
        ]
    }
    assert "united-states 12, japan 8, cat 16" in drafted.comment
    assert measure.draft_answer_ends(Subject(find_card("tiny-mistral"))) is None
