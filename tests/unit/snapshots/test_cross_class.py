"""One verdict on every machine (issue 24): numerics fingerprints, machine classes, and the
cross-class comparison that still catches regressions.

Three kinds of proof:
- the fingerprint gives each recorded machine its class (the Intel Xeon's recorded
  capabilities give the name its committed file has; this machine's NF4 load reads the
  bitsandbytes path that ran);
- the recorded classes compared with each other: strict comparison fails between them
  (they really differ), the cross-class rules pass (the differences are rounding), and the
  float32 and tokenizer cards agree strictly across the two CPUs (so they share one class);
- breaks recorded on one class and run on another still fail, naming the right section,
  while the unbroken model run on another class passes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
import torch

from lm_probes.cards.card import find_card
from lm_probes.numerics import (
    BNB_CPU_DEQUANTIZE,
    BNB_CPU_PACKED,
    Numerics,
    class_parts,
    machine_class,
    machine_numerics_from_record,
    nearest_class,
)
from lm_probes.paths import FIXTURES_DIR, SNAPSHOT_DIR
from lm_probes.snapshots import cross_class
from lm_probes.snapshots.compare import compare
from lm_probes.snapshots.differences import Difference
from lm_probes.subjects.subject import Subject

XEON = FIXTURES_DIR / "machines" / "xeon-avx512bf16-amx"
# Sections added after the Xeon's sets were recorded (issue 33): not compared against them,
# with a warning. Safe: U8's own tests (tests/behaviour/test_stopping.py) judge where answers
# end on every class with no baseline (the property and the cards' ends_within bounds), and
# each class this project records holds the section.
SINCE_THE_XEON = ("answer_ends",)
NF4 = "smollm2-135m-instruct-nf4"
TINY_NF4 = "tiny-mistral-nf4-cuda"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _nf4(numerics: Numerics, packed: bool) -> Numerics:
    return dataclasses.replace(
        numerics,
        model_dtype="float16",
        bnb_kernel=BNB_CPU_PACKED if packed else BNB_CPU_DEQUANTIZE,
        compute_dtype_asked="float16",
        compute_dtype_ran="bfloat16" if packed else "float16",
    )


_SUBJECT: list[Subject] = []


def _tiny_nf4() -> Subject:
    """One tiny-mistral NF4 subject on CPU for these tests and test_cross_class_breaks.py
    (loaded once, edited in place and put back by each break)."""
    if not _SUBJECT:
        _SUBJECT.append(Subject(find_card(TINY_NF4), device="cpu"))
    return _SUBJECT[0]


# ---------------------------------------------------------------- fingerprint -> class

AMD_EPYC = Numerics(
    device="cpu",
    device_name="AMD EPYC",
    architecture="x86_64",
    cpu_features=("avx2", "avx512_f", "avx512_bf16", "avx512_vnni", "avx_vnni"),
    aten_capability="AVX512",
    onednn=True,
    onednn_bf16=True,
    onednn_fp16=False,
)


def test_the_xeons_recorded_capabilities_give_the_class_its_committed_file_is_named_by():
    xeon = machine_numerics_from_record(_load(XEON / "machine.json"))
    assert "avx512_fp16" in xeon.cpu_features and "amx_bf16" in xeon.cpu_features and xeon.onednn_fp16
    nf4_class = machine_class(_nf4(xeon, packed=True))
    assert nf4_class == "cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16"
    assert (SNAPSHOT_DIR / NF4 / f"{nf4_class}.json").is_file()
    recorded = _load(SNAPSHOT_DIR / NF4 / f"{nf4_class}.json")["provenance"]
    assert recorded["class"] == nf4_class and Numerics.from_dict(recorded["numerics"]) == _nf4(xeon, packed=True)
    # its variants: what each switch takes away from the name
    assert machine_class(_nf4(xeon, packed=False)) == "cpu-avx512fp16-bnb-float16-onednn-float16"
    assert machine_class(_nf4(dataclasses.replace(xeon, onednn=False), packed=False)) == "cpu-avx512fp16-bnb-float16"
    # float32 and tokenizer cards: one class on both CPUs (measured below)
    assert machine_class(dataclasses.replace(xeon, model_dtype="float32")) == "cpu"
    assert machine_class(dataclasses.replace(AMD_EPYC, model_dtype="float32")) == "cpu"
    assert machine_class(xeon, has_model=False) == machine_class(AMD_EPYC, has_model=False) == "cpu"


def test_classes_name_only_what_changes_a_cards_numbers():
    assert machine_class(_nf4(AMD_EPYC, packed=True)) == "cpu-bnb-packed-bfloat16"
    assert machine_class(_nf4(AMD_EPYC, packed=False)) == "cpu-bnb-float16"
    # a float16 model without 4-bit layers: oneDNN's float16 GEMM only where the CPU runs it
    half = dataclasses.replace(AMD_EPYC, model_dtype="float16")
    assert machine_class(half) == "cpu"
    assert machine_class(dataclasses.replace(half, onednn_fp16=True)) == "cpu-onednn-float16"
    assert machine_class(dataclasses.replace(half, model_dtype="bfloat16")) == "cpu-onednn-bfloat16"
    assert machine_class(dataclasses.replace(AMD_EPYC, architecture="aarch64", model_dtype="float32")) == "cpu-aarch64"
    cuda = Numerics(device="cuda", device_name="NVIDIA H100", architecture="x86_64", cuda_capability="9.0")
    assert machine_class(cuda) == "cuda-sm90"


def test_the_nearest_recorded_class_is_the_same_family_then_the_most_alike():
    recorded = ["cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16", "cpu-bnb-float16", "cpu-bnb-packed-bfloat16"]
    assert nearest_class("cpu-bnb-packed-bfloat16", recorded) == "cpu-bnb-packed-bfloat16"
    assert nearest_class("cpu-avx512fp16-bnb-float16", recorded) == "cpu-bnb-float16"
    assert nearest_class("cuda-sm90", recorded + ["cuda-sm80", "cuda-sm89"]) == "cuda-sm89"
    assert nearest_class("cuda-sm90", recorded) in recorded  # a first GPU run: the CPU's
    assert nearest_class("cuda-sm90", []) is None


def test_the_fingerprint_reads_the_bitsandbytes_path_that_ran():
    """tiny-mistral in NF4 on this CPU: with the packed path switched off the kernels
    compute in the asked float16 on any CPU; left to bitsandbytes, they compute in bfloat16
    exactly where its AVX512-BF16 check says so (this CPU's answer is part of the verdict)."""
    import bitsandbytes.functional as bnb_functional

    off = Subject(find_card(TINY_NF4), device="cpu", bnb_cpu_packed=False)
    assert (off.numerics.bnb_kernel, off.numerics.compute_dtype_ran) == (BNB_CPU_DEQUANTIZE, "float16")
    # a part of the class, not its end: on a CPU with AVX512-FP16 (a Sapphire Rapids Xeon) oneDNN's
    # half-precision GEMM adds "-onednn-float16" after it (cpu-avx512fp16-bnb-float16-onednn-float16)
    assert "bnb-float16" in class_parts(off.machine_class) and off.quantization.computed_dtype == "float16"
    chosen = _tiny_nf4()
    packed = bool(bnb_functional.has_avx512bf16())
    assert chosen.numerics.compute_dtype_ran == ("bfloat16" if packed else "float16")
    assert ("bnb-packed-bfloat16" in chosen.machine_class) == packed
    assert chosen.numerics.compute_dtype_asked == "float16"  # what the config asked, unchanged
    if packed:
        assert chosen.numerics.compute_note().startswith("asked float16, computed bfloat16: bitsandbytes' AVX512-BF16")


# --------------------------------------------------------- the recorded classes compared


def _nf4_sets() -> dict[str, dict]:
    """Every recorded class of the NF4 card: the committed ones and the Xeon's variants."""
    sets = {path.stem: _load(path) for path in sorted((SNAPSHOT_DIR / NF4).glob("*.json"))}
    for variant in ("bnb_packed_off", "bnb_packed_off_onednn_off"):
        sets[f"xeon {variant}"] = _load(XEON / "variants" / variant / NF4 / "cpu.json")
    return sets


def _compare(a: dict, b: dict, classes: tuple[str, str], card: str = NF4) -> list[Difference]:
    return compare(
        a["observed"],
        b["observed"],
        tolerances=find_card(card).tolerance_overrides,
        recorded_provenance=a["provenance"],
        current_provenance=b["provenance"],
        classes=classes,
    )


def test_recorded_nf4_classes_differ_strictly_and_agree_under_the_cross_class_rules():
    sets = _nf4_sets()
    assert len(sets) == 5
    for (name_a, a), (name_b, b) in itertools.permutations(sets.items(), 2):
        strict = [d.where for d in _compare(a, b, (name_a, name_a)) if d.severity == "error"]
        assert "next_token.probs" in strict, (name_a, name_b, strict)  # not one class
        across = [str(d) for d in _compare(a, b, (name_a, name_b)) if d.severity == "error"]
        assert across == [], (name_a, name_b, across)


def test_the_cards_cross_class_bounds_are_above_every_measured_difference_and_not_far_above():
    """The NF4 card's tolerances.cross_class were set at about twice the largest figure
    measured between its recorded classes: a bound below a measured figure would fail a
    machine, one far above it would stop catching."""
    sets = list(_nf4_sets().values())
    worst: dict[str, float] = {}
    for a, b in itertools.combinations(sets, 2):
        for key, value in cross_class.statistics(a["observed"], b["observed"]).items():
            worst[key] = max(worst.get(key, 0.0), value)
    bounds = find_card(NF4).tolerance_overrides["cross_class"]
    for figure, bound in (
        ("max_prob_diff", "prob_atol"),
        ("kl", "kl_max"),
        ("entropy_diff", "entropy_atol"),
        ("hidden_norm_rel", "hidden_norm_rtol"),
        ("hidden_one_minus_cosine", "hidden_cosine_atol"),
    ):
        assert worst[figure] < bounds[bound] <= 3 * worst[figure], (figure, worst[figure], bound, bounds[bound])


@pytest.mark.parametrize("card", ["mistral-tokenizer", "smollm2-135m-instruct", "tiny-mistral"])
def test_float32_and_tokenizer_cards_agree_strictly_across_the_two_cpus(card):
    """The measurement behind one class for them on x86: the Xeon's recording against this
    project's, compared strictly (same-class rules), with no error, and no warning but one per
    section added since the Xeon recorded (SINCE_THE_XEON), which names it as not compared."""
    ours, xeon = _load(SNAPSHOT_DIR / card / "cpu.json"), _load(XEON / "snapshots" / card / "cpu.json")
    found = _compare(ours, xeon, ("cpu", "cpu"), card)
    expected = [s for s in SINCE_THE_XEON if s in ours["observed"]]
    assert [d.where for d in found] == expected, found
    assert all(d.severity == "warning" and "did not observe" in d.message for d in found), found


def test_a_broken_snapshot_of_another_class_fails_across_classes():
    """The Xeon's NF4 snapshot with 0.02 of its top token's probability moved to the second
    (4x the largest difference between recorded classes), and with one layer's norm moved
    by 2%: each still fails against this project's classes, naming that section."""
    xeon_class = "cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16"
    xeon = _load(SNAPSHOT_DIR / NF4 / f"{xeon_class}.json")
    ours = _load(SNAPSHOT_DIR / NF4 / "cpu-bnb-packed-bfloat16.json")
    surer = json.loads(json.dumps(xeon))
    probs = surer["observed"]["next_token"]["top_probs"]
    probs[0], probs[1] = probs[0] - 0.02, probs[1] + 0.02
    moved = json.loads(json.dumps(xeon))
    moved["observed"]["hidden_states"][0]["norms"][5] *= 1.02
    for broken, section in ((surer, "next_token.probs"), (moved, "hidden_states['The capital of Japan is']")):
        errors = [d for d in _compare(ours, broken, ("cpu-bnb-packed-bfloat16", xeon_class)) if d.severity == "error"]
        assert section in [d.where for d in errors], errors
    assert "hidden state 5" in str(_compare(ours, moved, ("cpu-bnb-packed-bfloat16", xeon_class))[0])


# ------------------------------------------------------------ dtype-scaled tolerances


def test_the_head_check_allows_the_dtypes_rounding_and_catches_a_pre_norm_last_state():
    """U3's premise on tiny-mistral: the last hidden state is what the head decodes. Rounding
    of a few float16 units at the logits' scale is allowed (oneDNN's shape-dependent GEMM on
    AVX512-FP16); a last state returned before the final norm is not."""
    from lm_probes.hidden_states import fingerprint, head_tolerance

    logits = torch.linspace(-30, 30, 1000)
    rounded = (logits.half() + torch.tensor(4 * 2.0**-10 * 30).half()).float()  # 4 units at the scale
    assert (rounded - logits).abs().max() <= head_tolerance(logits, torch.float16, 576)
    assert not (rounded - logits).abs().max() <= head_tolerance(logits, torch.float32, 576)

    from tests.unit.conftest import tiny

    subject = tiny()
    assert fingerprint(subject.tokenizer, subject.model, "The capital of Japan is").final_matches_logits
    base, captured = subject.model.model, {}

    def last_state_before_the_norm(module, inputs, out):
        if out.hidden_states:
            out.hidden_states = (*out.hidden_states[:-1], captured["pre_norm"])
        return out

    handles = [
        base.norm.register_forward_hook(lambda m, i, out: captured.__setitem__("pre_norm", i[0])),
        base.register_forward_hook(last_state_before_the_norm),
    ]
    try:
        assert not fingerprint(subject.tokenizer, subject.model, "The capital of Japan is").final_matches_logits
    finally:
        for handle in handles:
            handle.remove()


# ------------------------------------------------------------- docs/machine-classes.md

DOCS_FIGURES = ("max_prob_diff", "kl", "entropy_diff", "hidden_norm_rel", "hidden_one_minus_cosine")


def _measured_row(card: str, ours: Path, theirs: Path) -> str:
    found = cross_class.statistics(_load(ours)["observed"], _load(theirs)["observed"])
    return " / ".join(f"{found[k]:.3g}" for k in DOCS_FIGURES)


def test_the_docs_list_the_measured_cross_class_figures():
    """docs/machine-classes.md's per-card table of cross-class figures is what the recorded sets give."""
    from lm_probes.paths import REPO_ROOT

    page = REPO_ROOT / "docs" / "machine-classes.md"
    readme = page.read_text(encoding="utf-8").split("Per default card, the same-class", 1)[1]
    nf4 = SNAPSHOT_DIR / NF4
    rows = {
        "| `smollm2-135m-instruct` |": ("smollm2-135m-instruct", None),
        "| `tiny-mistral` |": ("tiny-mistral", None),
        "| `smollm2-135m-instruct-nf4` vs the Xeon |": (NF4, "cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16"),
        "| `smollm2-135m-instruct-nf4` vs `cpu-bnb-float16` |": (NF4, "cpu-bnb-float16"),
    }
    for start, (card, other) in rows.items():
        line = next(line for line in readme.splitlines() if line.startswith(start))
        if other is None:
            measured = _measured_row(card, SNAPSHOT_DIR / card / "cpu.json", XEON / "snapshots" / card / "cpu.json")
        else:
            measured = _measured_row(card, nf4 / "cpu-bnb-packed-bfloat16.json", nf4 / f"{other}.json")
        assert line.rstrip(" |").endswith(measured), (line, measured)
    # "ids equal", on every text both recorded (the decode-spacing texts came after the Xeon's set)
    ours = _load(SNAPSHOT_DIR / "mistral-tokenizer" / "cpu.json")["observed"]["tokenizer"]
    xeon = _load(XEON / "snapshots" / "mistral-tokenizer" / "cpu.json")["observed"]["tokenizer"]
    assert {k: v for k, v in ours.items() if k != "ids"} == {k: v for k, v in xeon.items() if k != "ids"}
    assert set(xeon["ids"]) < set(ours["ids"]) and all(ours["ids"][t] == ids for t, ids in xeon["ids"].items())


def test_a_drafted_card_states_the_computed_dtype_of_the_class_it_was_measured_on():
    """draft-card writes expect.quantization.computed_dtype: the asked dtype as the default,
    and this class's own where its kernels computed another (valid against the card schema)."""
    from lm_probes.cards.expect_schema import QuantizationExpect
    from lm_probes.draft.measure import draft_quantization

    subject = _tiny_nf4()
    drafted = draft_quantization(subject)
    QuantizationExpect(**drafted)  # a field the schema refuses would make the drafted card unreadable
    expected = {"default": "float16"}
    if subject.quantization.computed_dtype != "float16":
        expected[subject.machine_class] = subject.quantization.computed_dtype
    assert drafted["computed_dtype"] == expected
    off = draft_quantization(Subject(find_card(TINY_NF4), device="cpu", bnb_cpu_packed=False))
    assert off["computed_dtype"] == {"default": "float16"}


def test_a_subjects_provenance_carries_its_fingerprint_once_loaded():
    subject = Subject(find_card("tiny-mistral"))
    assert subject.provenance.machine_class is None and subject.loaded_numerics is None  # reading loads nothing
    subject.model  # noqa: B018
    provenance = subject.provenance
    assert provenance.machine_class == "cpu" and provenance.numerics["model_dtype"] == "float32"
    assert Numerics.from_dict(provenance.numerics) == subject.numerics


def test_q1_fails_a_computed_dtype_the_card_does_not_expect_for_the_class_and_passes_the_stated_one():
    """Q1 on tiny-mistral in NF4 with the packed path off (float16 compute on any CPU).
    Break: a card expecting bfloat16 for this class fails, saying what ran and what to add.
    Harmless: the card's own mapping (float16 by default) passes."""
    from tests.behaviour.test_quantization import test_layers_are_quantized_as_the_card_says
    from tests.unit.break_running import _NoAttachments

    card = find_card(TINY_NF4)
    subject = Subject(card, device="cpu", bnb_cpu_packed=False)
    test_layers_are_quantized_as_the_card_says(subject, _NoAttachments())  # passes as the card says
    expect = json.loads(json.dumps(card.written_expect))
    expect["quantization"]["computed_dtype"] = {"default": "float16", subject.machine_class: "bfloat16"}
    wrong = Subject(card.replace(expect=expect), device="cpu", bnb_cpu_packed=False)
    with pytest.raises(AssertionError) as failure:
        test_layers_are_quantized_as_the_card_says(wrong, _NoAttachments())
    message = str(failure.value)
    assert f"expected: 'bfloat16 on machine class {subject.machine_class}'" in message
    assert 'obtained: "asked float16, computed float16: bitsandbytes\' CPU dequantize-then-matmul path"' in message
    assert f"add '{subject.machine_class}: float16' under expect.quantization.computed_dtype" in message
