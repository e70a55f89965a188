"""Checkpoints as users ship them (issue 45): each harmless variant of a card's model folder
(tests/unit/cards/checkpoint_variants.py) passes the shipped card with --lm-probes-model, its
snapshot included; each harmful twin fails it, naming what changed.

make test runs the cheapest pairs (``BOUNDED``); ``make variants`` (marker ``variants``, run by
.ci/run) runs every pair on the whole card."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lm_probes.cards.card import find_card
from lm_probes.subjects.subject import Subject
from tests.unit.cards.checkpoint_variants import HARMFUL, HARMLESS, SMOLLM2, TINY, write_variant

SUITE = "tests/behaviour"
# the test that caught the cache-off checkpoint's doubled prompt (issue 45: agreement 0.0), in
# seconds; make variants runs the whole card and its snapshot (about a minute: without a cache
# every step runs the whole sequence)
SAMPLING = "low_top_p_low_temperature_behaves_like_greedy"
BOUNDED = {(TINY, "cache off"): None, (SMOLLM2, "cache off"): SAMPLING}
# what each harmful twin must fail, at least
CAUGHT_BY = {
    "sampling on": "test_generate_runs_with_the_settings_the_card_expects",
    "turn end not a stop": "test_generation_stops_where_the_chat_template_ends_a_turn",
}


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> dict[str, Path]:
    """Each card's model folder: SmolLM2's conversion (cached); tiny-mistral's random init and its
    tokenizer saved (--lm-probes-model reads both from the folder)."""
    tiny, subject = tmp_path_factory.mktemp("tiny-mistral-saved"), Subject(find_card(TINY))
    subject.model.save_pretrained(tiny)
    subject.tokenizer.save_pretrained(tiny)
    return {SMOLLM2: Path(Subject(find_card(SMOLLM2)).model_folder()), TINY: tiny}


def _run(run_suite, card: str, folder: Path, selection: str | None, *extra: str):
    args = [SUITE, "--lm-probes-card", card, "--lm-probes-model", str(folder), "-p", "no:randomly", "-rfE", *extra]
    return run_suite(*args, *(["-k", selection] if selection else []))


def _pairs(variants: dict) -> list:
    """Every (card, variant, test selection) on the whole card (marker variants), and the bounded
    pairs again with their selection, in make test."""
    pairs = []
    for name, variant in variants.items():
        for card in variant.cards:
            slug = f"{card}-{name.replace(' ', '-')}"
            pairs.append(pytest.param(card, name, None, id=slug, marks=pytest.mark.variants))
            if (card, name) in BOUNDED:
                pairs.append(pytest.param(card, name, BOUNDED[(card, name)], id=f"{slug}-bounded"))
    return pairs


@pytest.mark.parametrize(("card", "variant", "selection"), _pairs(HARMLESS))
def test_a_harmless_checkpoint_variant_passes_the_card_and_its_snapshot(
    run_suite, model_folders, tmp_path, card, variant, selection
):
    folder = write_variant(model_folders[card], tmp_path / "variant", HARMLESS[variant])
    done = _run(run_suite, card, folder, selection)
    assert done.returncode == 0, f"{variant} ({card}):\n{done.stdout[-3000:]}"
    assert re.search(r"\b\d+ passed\b", done.stdout) and "test_matches_snapshot" not in _failed(done.stdout)


@pytest.mark.parametrize(("card", "variant", "selection"), _pairs(HARMFUL))
def test_a_harmful_twin_fails_the_card_naming_what_changed(
    run_suite, model_folders, tmp_path, card, variant, selection
):
    folder = write_variant(model_folders[card], tmp_path / "variant", HARMFUL[variant])
    done = _run(run_suite, card, folder, None, "--lm-probes-summary", str(tmp_path / "summary.md"))
    assert done.returncode == 1, f"{variant} ({card}) was not caught:\n{done.stdout[-3000:]}"
    assert CAUGHT_BY[variant] in _failed(done.stdout), _failed(done.stdout)
    # the CI summary of the failing run (issue 44): the card, its first failure, the report
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("**lm-probes: failed** (exit 1): 1 of 1 cards") and f"| {card} | failed (" in summary
    assert "report.html" in summary, summary


def _failed(stdout: str) -> str:
    return "\n".join(line for line in stdout.splitlines() if line.startswith(("FAILED", "ERROR")))


# ---------------------------------------------------------------------- draft-card


def _drafted(folder: Path, where: Path) -> tuple[dict, list[str]]:
    """draft-card's card for the model folder (2 draws): its data with the folder's path taken out
    (the only thing that names the folder), and its comments (the measured values they state)."""
    import yaml

    from lm_probes.cli import main as cli

    where.mkdir()
    out = where / "drafted.yaml"  # (a card's file is named after it)
    assert cli.main(["draft-card", "--model", str(folder), "--name", "drafted", "--draws", "2", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert data["model"]["id"] == str(folder)
    data["model"]["id"] = "FOLDER"
    comments = [line.split("#", 1)[1].replace(str(folder), "FOLDER") for line in text.splitlines() if "#" in line]
    return data, comments


@pytest.mark.variants
def test_draft_card_writes_the_same_card_on_each_harmless_variant_and_shows_the_harmful_twin(model_folders, tmp_path):
    """Issue 45, item 4, on tiny-mistral (a draft takes seconds there; SmolLM2's minutes): the card
    drafted from each harmless variant is the one drafted from the saved folder, but for the
    folder's name; the sampling-on twin's differs in the settings and the default decoding, and is
    flagged on top of the card for the reviewer."""
    original = _drafted(model_folders[TINY], tmp_path / "original")
    for name, variant in HARMLESS.items():
        if TINY in variant.cards:
            folder = write_variant(model_folders[TINY], tmp_path / name.replace(" ", "-"), variant)
            assert _drafted(folder, tmp_path / f"{folder.name}-card") == original, name
    twin = write_variant(model_folders[TINY], tmp_path / "sampling-on", HARMFUL["sampling on"])
    data, comments = _drafted(twin, tmp_path / "sampling-on-card")
    changed = {k for k in data["expect"] if data["expect"][k] != original[0]["expect"].get(k)}
    assert changed == {"generation", "greedy"}, changed  # the settings, and default_generate_is_greedy
    assert data["expect"]["greedy"]["default_generate_is_greedy"] is False
    assert any("generate() with no arguments samples" in c for c in comments), comments[:12]  # flagged on top
