"""Breaks recorded on one machine class and run on another: the unbroken model passes under
the cross-class rules naming both classes, and each break still fails naming its section
(split from test_cross_class.py, issue 36)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lm_probes.numerics import (
    linear_4bit_layers,
)
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots.check import SnapshotCheck, SnapshotOutcome
from lm_probes.subjects import results
from tests.unit.snapshots.test_cross_class import TINY_NF4, _load, _tiny_nf4

# ------------------------------------------------ breaks recorded on one class, run on another


@pytest.fixture(scope="module")
def other_class_dir(tmp_path_factory) -> tuple[Path, str]:
    """A snapshot folder holding only a committed tiny NF4 class that is *not* the one this
    machine runs in, so the snapshot check must compare across classes on any CPU."""
    subject = _tiny_nf4()
    own = subject.machine_class
    other = next(p for p in sorted((SNAPSHOT_DIR / TINY_NF4).glob("*.json")) if p.stem != own)
    folder = tmp_path_factory.mktemp("snapshots")
    (folder / TINY_NF4).mkdir()
    shutil.copy(other, folder / TINY_NF4 / other.name)
    return folder, other.stem


def _check(folder: Path) -> SnapshotOutcome:
    subject = _tiny_nf4()
    with results.RESULTS.set_aside(subject):  # every probe anew, on the model as it is now
        return SnapshotCheck(folder).check(subject)


def test_the_unbroken_model_on_another_class_passes_naming_both_classes(other_class_dir):
    folder, other = other_class_dir
    outcome = _check(folder)
    own = _tiny_nf4().machine_class
    assert outcome.verdict == "passed", outcome.message
    assert outcome.status == f"compared with {other}.json (cross-class rules: this run is {own})"
    assert outcome.summary.startswith(f"machine class {other} -> {own} (cross-class rules)")


def _scale_4bit(layers, factor: float):
    scales = [m.weight.quant_state.absmax.clone() for m in layers]
    for layer in layers:
        layer.weight.quant_state.absmax.mul_(factor)
    return lambda: [m.weight.quant_state.absmax.copy_(s) for m, s in zip(layers, scales)]


def _every_4bit_scale_25_percent_off(subject, monkeypatch):
    return _scale_4bit(linear_4bit_layers(subject.model), 1.25)


def _layer_1_moved(subject, monkeypatch):
    """model.layers[1] only: its 4-bit scales 10% off (a loader that got one layer wrong)."""
    return _scale_4bit(linear_4bit_layers(subject.model.model.layers[1]), 1.1)


def _chat_template_tokenized_with_special_tokens(subject, monkeypatch):
    from tests.unit.break_patches import chat_template_tokenized_with_special_tokens

    chat_template_tokenized_with_special_tokens(monkeypatch)
    return lambda: None


def _chat_template_edited(subject, monkeypatch):
    """A model release whose chat template lost a space: the rendered text and ids change."""
    template = subject.tokenizer.chat_template
    monkeypatch.setattr(subject.tokenizer, "chat_template", template.replace("'[INST] '", "'[INST]'"))
    return lambda: None


def _inherited_repetition_penalty(subject, monkeypatch):
    """generation_config gains repetition_penalty 1.3, as a model release that edits
    generation_config.json would give it."""
    monkeypatch.setattr(subject.model.generation_config, "repetition_penalty", 1.3)
    return lambda: None


def _first_greedy_token_pushed_down(subject, monkeypatch):
    first = _load(next((SNAPSHOT_DIR / TINY_NF4).glob("*.json")))["observed"]["greedy"]["bos"]["ids"][0]
    head = subject.model.lm_head.weight
    kept = head[first].detach().clone()
    with torch.no_grad():
        head[first] *= -3
    return lambda: head[first].copy_(kept)


CROSS_CLASS_BREAKS = {
    # (tiny-mistral's random weights give a near-flat next-token distribution, p ~ 3e-5 a
    # token: the scales move its states and its greedy choices, not a probability by 1e-4)
    "every 4-bit scale 25% off": (_every_4bit_scale_25_percent_off, ("hidden_states[", "greedy.bos")),
    "model.layers[1]'s 4-bit scales 10% off": (_layer_1_moved, ("hidden_states[",)),
    "apply_chat_template(tokenize=True) adds special tokens": (
        _chat_template_tokenized_with_special_tokens,
        ("tokenizer.chat.ids",),
    ),
    "the chat template edited (no space after [INST])": (_chat_template_edited, ("tokenizer.chat.text",)),
    "an inherited repetition_penalty": (_inherited_repetition_penalty, ("generation.no-arguments.processors",)),
    "a weight change pushes the first greedy token down": (_first_greedy_token_pushed_down, ("greedy.bos",)),
}


@pytest.mark.parametrize("name", list(CROSS_CLASS_BREAKS))
def test_a_break_run_on_another_class_than_the_recording_still_fails_naming_its_section(
    name, other_class_dir, monkeypatch
):
    folder, _ = other_class_dir
    subject = _tiny_nf4()
    breaking, sections = CROSS_CLASS_BREAKS[name]
    undo = breaking(subject, monkeypatch)
    try:
        outcome = _check(folder)
    finally:
        with torch.no_grad():
            undo()
        monkeypatch.undo()
    assert outcome.verdict == "failed", f"{name}: not caught across classes: {outcome.summary}"
    found = [d.where for d in outcome.errors]
    for section in sections:
        assert any(w.startswith(section) for w in found), (name, section, found)
    if name == "model.layers[1]'s 4-bit scales 10% off":  # named where it happened, not before
        assert all("first moved at hidden state 2" in d.message for d in outcome.errors if "hidden" in d.where)
    if name == "a weight change pushes the first greedy token down":
        greedy = next(d for d in outcome.errors if d.where == "greedy.bos")
        assert "diverged at new token 0" in greedy.message and "which rounding does not explain" in greedy.message
