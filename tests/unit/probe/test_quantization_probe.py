"""The quantization probes against deliberate breaks and harmless changes.

Q1 (quantized as asked) is checked on the tiny random Mistral, quantized to NF4 on
load (a second; the same bitsandbytes path as any card). The drift checks (Q2-Q5) are
checked on the real SmolLM2 NF4 card: the break and the harmless change are applied
in place to the session's loaded model and undone after, so no second 4-bit load is
paid for (this test runs in the card's worker, beside its behaviour tests)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lm_probes import quantization as qz
from lm_probes.cards.card import find_card
from lm_probes.cards.files import SubjectLoadError
from lm_probes.cards.loading import LoadOptions, LoadSettings
from lm_probes.expect import ExpectationMismatch, check_at_least, check_at_most, check_equal
from lm_probes.maths import kl_divergence
from lm_probes.numerics import linear_4bit_layers
from lm_probes.subjects import drift as drifts
from lm_probes.subjects import results
from lm_probes.subjects.subject import Subject


def _tiny(quantization: str = "nf4", **load) -> Subject:
    card = find_card("tiny-mistral")
    return Subject(card.replace(load=LoadSettings(device="cpu", dtype="float16", quantization=quantization, **load)))


# ------------------------------------------------------------- Q1: loaded as asked


def test_tiny_mistral_in_nf4_has_4bit_layers_and_a_float16_embedding():
    info = _tiny().quantization
    assert (info.method, info.linear_4bit, info.linear_8bit, info.compute_dtype) == ("nf4", 14, 0, "float16")
    assert info.full_precision_linear == ("lm_head",)
    assert (info.embedding_class, info.embedding_dtype) == ("Embedding", "float16")


def test_a_card_asking_for_nf4_that_loads_in_full_precision_fails_with_a_clear_message(monkeypatch):
    """Imitates a transformers that stops applying quantization_config: the load fails,
    naming the card, what it asked for and what it got."""
    real = LoadOptions.placement_kwargs

    def ignoring_the_config(*args, **kwargs):
        found = real(*args, **kwargs)
        found.pop("quantization_config", None)
        return found

    monkeypatch.setattr(LoadOptions, "placement_kwargs", ignoring_the_config)
    with pytest.raises(
        SubjectLoadError,
        match=r"card 'tiny-mistral': the card asks for nf4 but the model loaded in full precision "
        r"\(0 4-bit and 0 8-bit Linear layers, 15 full-precision\): the quantization config was not applied",
    ):
        _tiny().model


def test_fp4_in_place_of_nf4_fails_at_load(monkeypatch):
    """BitsAndBytesConfig(load_in_4bit=True) without bnb_4bit_quant_type quantizes to
    fp4, not NF4: a config edit the load check catches."""
    from transformers import BitsAndBytesConfig

    real = LoadOptions.placement_kwargs

    def default_quant_type(*args, **kwargs):
        found = real(*args, **kwargs)
        found["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16)
        return found

    monkeypatch.setattr(LoadOptions, "placement_kwargs", default_quant_type)
    with pytest.raises(SubjectLoadError, match=r"the card asks for nf4 but the loaded layers are fp4 \(14 4-bit"):
        _tiny().model


def test_layer_expectations_catch_a_skipped_module_and_pass_double_quantization(monkeypatch):
    """Break: the MLP down-projections left unquantized (llm_int8_skip_modules, as a
    changed transformers default would) changes the 4-bit count. Harmless: double
    quantization of the scales keeps every layer NF4."""
    from transformers import BitsAndBytesConfig

    card = find_card("tiny-mistral").replace(
        expect={
            "quantization": {
                "method": "nf4",
                "linear_4bit": 14,
                "full_precision_linear": ["lm_head"],
                "compute_dtype": "float16",
            }
        },
    )
    real = LoadOptions.placement_kwargs

    def with_config(**extra):
        def patched(*args, **kwargs):
            found = real(*args, **kwargs)
            found["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16, **extra
            )
            return found

        return patched

    def check(info: qz.QuantizationInfo) -> None:
        for key in card.expected("quantization"):
            check_equal(card, f"quantization.{key}", info.as_dict()[key])

    monkeypatch.setattr(LoadOptions, "placement_kwargs", with_config(llm_int8_skip_modules=["lm_head", "down_proj"]))
    with pytest.raises(
        ExpectationMismatch, match=r"field expect\.quantization\.linear_4bit\n  expected: 14\n  obtained: 12"
    ):
        check(_tiny().quantization)
    monkeypatch.setattr(LoadOptions, "placement_kwargs", with_config(bnb_4bit_use_double_quant=True))
    check(_tiny().quantization)


def test_device_option_places_a_quantized_model(monkeypatch):
    """--lm-probes-device is honoured by quantized loads: it becomes the device_map (a 4-bit model
    cannot be moved after loading)."""
    card_options = LoadOptions(quantization="nf4", device_map="auto")
    from_command_line = dataclasses.replace(card_options, device="cuda:1", device_from_command_line=True)
    assert from_command_line.placement_kwargs("cuda:1")["device_map"] == {"": "cuda:1"}
    assert card_options.placement_kwargs("cpu")["device_map"] == "auto"  # the card's
    assert LoadOptions(quantization="nf4").placement_kwargs("cpu")["device_map"] == {"": "cpu"}
    lm_probes_subject = Subject(_tiny().card, device="cpu")
    assert lm_probes_subject.options.device_from_command_line
    assert str(lm_probes_subject.model.device) == "cpu" and lm_probes_subject.provenance.quantization == "nf4"
    assert lm_probes_subject.provenance.quantizer.startswith("bitsandbytes ")


def test_kl_divergence_of_known_distributions():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence(p, q) == pytest.approx(np.log(2))  # 0.5 ln2 + 0.5 ln2


# --------------------------------------------------- Q2-Q5 on the SmolLM2 NF4 card


def _drift_checks(card, d: qz.Drift) -> dict[str, str]:
    """The behaviour tests' bounds on one drift result: field -> 'passed' or the
    mismatch's "obtained: ..." line."""
    outcome = {}
    for key, obtained in qz.drift_figures(d).items():
        check = check_at_most if key.startswith("max_") else check_at_least
        try:
            check(card, f"drift.{key}", obtained)
            outcome[f"drift.{key}"] = "passed"
        except ExpectationMismatch as exc:
            outcome[f"drift.{key}"] = str(exc).splitlines()[2].strip()  # "obtained: ..."
    return outcome


def _fresh_drift(lm_probes_subject: Subject, reference: Subject) -> qz.Drift:
    """The drift of the model as it is now, not the session's cached result."""
    with results.RESULTS.set_aside(lm_probes_subject):
        return drifts.drift(lm_probes_subject, reference)


@pytest.mark.observation("Q2", "Q3", "Q4", "Q5", expects="drift")
def test_drift_checks_catch_wrong_dequantization_scales_and_pass_float32_compute(
    lm_probes_model_subject, lm_probes_reference_subject
):
    """Break (a bitsandbytes whose dequantization is off): every 4-bit block's scale
    (absmax) 25% too large. Harmless: float32 in place of float16 compute, what a
    BitsAndBytesConfig without bnb_4bit_compute_dtype gives (bfloat16 passes too, docs/reliability.md,
    at twice the CPU time). Both are applied to the loaded layers in place and undone."""
    card, layers = lm_probes_model_subject.card, linear_4bit_layers(lm_probes_model_subject.model)
    scales = [m.weight.quant_state.absmax.clone() for m in layers]
    try:
        for layer, absmax in zip(layers, scales):
            layer.weight.quant_state.absmax.copy_(absmax * 1.25)
        broken = _drift_checks(card, _fresh_drift(lm_probes_model_subject, lm_probes_reference_subject))
    finally:
        for layer, absmax in zip(layers, scales):
            layer.weight.quant_state.absmax.copy_(absmax)
    assert [f for f, result in broken.items() if result != "passed"] == [
        "drift.max_kl",
        "drift.min_top1_agreement",
        "drift.min_top10_overlap",
        "drift.min_greedy_agreeing_tokens",
    ], broken  # the footprint does not change: Q5 is shown by the next test
    try:
        for layer in layers:
            layer.compute_dtype = torch.float32
        harmless = _drift_checks(card, _fresh_drift(lm_probes_model_subject, lm_probes_reference_subject))
    finally:
        for layer in layers:
            layer.compute_dtype = torch.float16
    assert set(harmless.values()) == {"passed"}, harmless


@pytest.mark.observation("Q5", expects="drift.max_footprint_ratio")
def test_footprint_check_catches_a_float32_embedding_and_head(lm_probes_model_subject, lm_probes_reference_subject):
    """Break: load.dtype float32 in place of float16 keeps the embedding and the output
    head (a fifth of the weights) in float32: measured 0.309 of the reference."""
    card, model = lm_probes_model_subject.card, lm_probes_model_subject.model
    d = drifts.drift(lm_probes_model_subject, lm_probes_reference_subject)
    assert _drift_checks(card, d)["drift.max_footprint_ratio"] == "passed"
    parts = [model.get_input_embeddings(), model.get_output_embeddings()]
    try:
        for part in parts:
            part.to(torch.float32)
        widened = dataclasses.replace(d, footprint_quantized=int(model.get_memory_footprint()))
    finally:
        for part in parts:
            part.to(torch.float16)  # float16 -> float32 -> float16 is exact
    assert _drift_checks(card, widened)["drift.max_footprint_ratio"] == f"obtained: {round(widened.footprint_ratio, 4)}"
    assert widened.footprint_ratio == pytest.approx(0.309, abs=0.005)
