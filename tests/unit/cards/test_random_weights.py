"""random-init's saved folder written shard by shard (lm_probes/cards/random_weights.py, issue 34):
the same weights, bit for bit, as the model built whole with the same seed; today's cards keep
their cache folders and values; the 7B-shape card is the published configuration, opt-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lm_probes.cards.card import find_card
from lm_probes.cards.random_weights import NotReplayable, write_random_model
from lm_probes.cards.sources import RandomInitSource


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def _direct(source: RandomInitSource, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The weights as build() draws them: the whole model constructed after the seed."""
    return {name: t.detach().clone() for name, t in source.build(dtype).state_dict().items()}


def _source(seed: int = 0, **config) -> RandomInitSource:
    """tiny-mistral's source, its seed and config changed where asked."""
    source = find_card("tiny-mistral").model
    return source.model_copy(update={"seed": seed, "config": {**source.config, **config}})


def _assert_same(folder: Path, direct: dict[str, torch.Tensor]) -> None:
    saved = _tensors(folder)
    assert saved.keys() == direct.keys()
    differ = [name for name in direct if not torch.equal(saved[name], direct[name])]
    assert not differ, f"tensors that differ from the direct build: {differ}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("seed", [0, 7])
def test_the_lean_folder_holds_the_direct_builds_weights_bit_for_bit(tmp_path, dtype, seed):
    """Shards of 1 MB (the tiny model is 16 MB in float32): several shards and their index,
    each tensor equal to the directly built model's, for two seeds and both dtypes."""
    source = _source(seed)
    model_class, config_class = source._classes()
    write_random_model(model_class, config_class(**source.config), seed, dtype, tmp_path, shard_bytes=1 << 20)
    assert (tmp_path / "model.safetensors.index.json").is_file() and len(list(tmp_path.glob("*.safetensors"))) > 2
    _assert_same(tmp_path, _direct(source, dtype))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dtype"] == str(dtype).removeprefix("torch.") and config["architectures"] == ["MistralForCausalLM"]


def test_the_sharded_folder_loads_through_from_pretrained_as_the_direct_build(tmp_path):
    from transformers import AutoModelForCausalLM

    source = _source()
    model_class, config_class = source._classes()
    write_random_model(model_class, config_class(**source.config), 0, torch.float32, tmp_path, shard_bytes=1 << 20)
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32)
    direct = _direct(source, torch.float32)
    assert all(torch.equal(t, direct[name]) for name, t in loaded.state_dict().items())


# the folder tiny-mistral-nf4-cuda's quantized load reads, as named before saved_dtype existed
TINY_KEY = "MistralForCausalLM-2a7efb04aeab43ac"


def test_todays_cards_keep_their_cache_folder_and_their_weights(tmp_path):
    """tiny-mistral-nf4-cuda (and tiny-mistral under --quantization nf4): the same cache key as
    before, and the folder written now holds what the whole-model save_pretrained wrote."""
    import transformers

    source = find_card("tiny-mistral-nf4-cuda").model
    assert source.saved_dtype == "float32" and find_card("tiny-mistral").model == source
    assert source.cache_folder().name == f"{TINY_KEY}-tf{transformers.__version__}"
    lean, whole = tmp_path / "lean", tmp_path / "whole"
    lean.mkdir()
    source._write_folder(lean)
    source.build(torch.float32).save_pretrained(str(whole))  # what saved_folder wrote before
    assert sorted(p.name for p in lean.iterdir()) == sorted(p.name for p in whole.iterdir())
    _assert_same(lean, _tensors(whole))
    for name in ("config.json", "generation_config.json"):
        assert json.loads((lean / name).read_text()) == json.loads((whole / name).read_text()), name


def test_saved_dtype_is_part_of_the_key_only_where_it_is_not_float32():
    source = find_card("tiny-mistral").model
    half = source.model_copy(update={"saved_dtype": "float16"})
    assert half.cache_folder() != source.cache_folder()
    assert source.model_copy(update={"saved_dtype": "float32"}).cache_folder() == source.cache_folder()


def test_what_the_replay_cannot_reproduce_is_built_whole(tmp_path, monkeypatch):
    """Tied embeddings share one tensor under two names: the replay says so before writing,
    and the folder is the whole model's save_pretrained, the same weights."""
    from lm_probes.cards.files import CACHE_ENV

    source = _source(tie_word_embeddings=True)
    model_class, config_class = source._classes()
    with pytest.raises(NotReplayable, match="tied weights"):
        write_random_model(model_class, config_class(**source.config), 0, torch.float32, tmp_path / "x")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    folder = source.saved_folder()
    saved = _tensors(folder)
    direct = _direct(source, torch.float32)
    assert all(torch.equal(saved[name], direct[name]) for name in saved)


# mistralai/Mistral-7B-v0.1's config.json, as published
MISTRAL_7B = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 32768,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def test_the_7b_shape_card_is_mistral_7b_loaded_as_the_article_loads_it_on_the_cpu():
    shape, real = find_card("mistral-7b-shape-nf4"), find_card("mistral-7b-v0.1")
    assert shape.marks == ["slow"]  # -m slow only: not in make test
    assert shape.model.config == MISTRAL_7B and shape.model.saved_dtype == "float16"
    assert (shape.load.device, real.load.device) == ("cpu", "cuda")
    assert shape.load.model_copy(update={"device": "cuda"}) == real.load
    assert shape.expected("model.embedding_shape") == [32000, 4096]
    model_class, config_class = shape.model._classes()
    with torch.device("meta"):  # nothing allocated: the parameter count of the published shape
        meta = model_class(config_class(**shape.model.config))
    assert sum(p.numel() for p in meta.parameters()) == 7_241_732_096
