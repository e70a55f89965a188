"""Checkpoints as users ship them (issue 45): the same weights saved another harmless way, and a
harmful neighbour of each. Each writer takes the card's model folder (the SmolLM2 conversion, the
tiny-mistral random init) and writes a variant folder beside it: files linked where unchanged,
never copied, so a variant costs milliseconds and no disk.

Harmless (every observation must stay the card's):
- ``cache off``: ``"use_cache": false`` in config.json and generation_config.json, as training
  with gradient checkpointing saves it;
- ``sharded``: the weights in two safetensors files with an index (what save_pretrained writes past
  its max_shard_size);
- ``template in tokenizer_config``: the chat template inside tokenizer_config.json instead of
  chat_template.jinja (older save_pretrained);
- ``no generation_config``: generation_config.json removed (generate() falls back to config.json);
- ``no pad token``: the tokenizer's pad token unset (the suite chooses one: the eos token).

A tokenizer saved without its slow files is each folder as it is: transformers 5 saves tokenizer.json
alone (SmolLM2's conversion and tiny-mistral's saved tokenizer hold no tokenizer.model, vocab.json or
merges.txt).

Harmful twins (the suite must fail, naming what changed):
- ``sampling on``: generation_config.json turns sampling on by default;
- ``turn end not a stop``: generation_config.json's eos_token_id loses the end-of-turn token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def linked_copy(source: Path, folder: Path) -> Path:
    """``folder`` holding a link to every file of ``source``: a variant edits only what it changes."""
    folder.mkdir(parents=True)
    for item in source.iterdir():
        (folder / item.name).symlink_to(item)
    return folder


def _edit_json(folder: Path, name: str, edit: Callable[[dict], dict]) -> None:
    path = folder / name
    data = json.loads(path.read_text(encoding="utf-8"))
    path.unlink()  # a link to the source's file: replaced, the source untouched
    path.write_text(json.dumps(edit(data), indent=2), encoding="utf-8")


def cache_off(folder: Path) -> None:
    for name in ("config.json", "generation_config.json"):
        _edit_json(folder, name, lambda d: d | {"use_cache": False})


def sharded(folder: Path) -> None:
    """The weights split in two files with model.safetensors.index.json, as save_pretrained shards them."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = folder / "model.safetensors"
    with safe_open(str(source), framework="pt") as weights:
        names = sorted(weights.keys())
        metadata = weights.metadata() or {}
        tensors = {name: weights.get_tensor(name) for name in names}
    source.unlink()
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2]}
    halves["model-00002-of-00002.safetensors"] = names[len(names) // 2 :]
    weight_map, total = {}, 0
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, str(folder / file), metadata={"format": "pt", **metadata})
        weight_map |= dict.fromkeys(part, file)
        total += sum(tensors[n].numel() * tensors[n].element_size() for n in part)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def template_in_tokenizer_config(folder: Path) -> None:
    template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    (folder / "chat_template.jinja").unlink()
    _edit_json(folder, "tokenizer_config.json", lambda d: d | {"chat_template": template})


def no_generation_config(folder: Path) -> None:
    (folder / "generation_config.json").unlink()


def no_pad_token(folder: Path) -> None:
    _edit_json(folder, "tokenizer_config.json", lambda d: {k: v for k, v in d.items() if k != "pad_token"})


def sampling_on(folder: Path) -> None:
    _edit_json(folder, "generation_config.json", lambda d: d | {"do_sample": True, "temperature": 0.7, "top_p": 0.9})


def turn_end_not_a_stop(folder: Path) -> None:
    _edit_json(folder, "generation_config.json", lambda d: d | {"eos_token_id": 0})


@dataclass(frozen=True)
class Variant:
    name: str
    write: Callable[[Path], None]
    cards: tuple[str, ...]  # the cards whose folder has what the variant changes
    harmful_twin: str | None = None  # the twin that must fail, for a harmless variant


SMOLLM2, TINY = "smollm2-135m-instruct", "tiny-mistral"
HARMLESS = {
    v.name: v
    for v in (
        Variant("cache off", cache_off, (SMOLLM2, TINY), harmful_twin="sampling on"),
        Variant("sharded", sharded, (SMOLLM2, TINY), harmful_twin="sampling on"),
        Variant("template in tokenizer_config", template_in_tokenizer_config, (SMOLLM2, TINY), "turn end not a stop"),
        Variant("no generation_config", no_generation_config, (SMOLLM2, TINY), harmful_twin="turn end not a stop"),
        Variant("no pad token", no_pad_token, (SMOLLM2, TINY), harmful_twin="turn end not a stop"),
    )
}
HARMFUL = {
    v.name: v
    for v in (
        Variant("sampling on", sampling_on, (SMOLLM2, TINY)),
        Variant("turn end not a stop", turn_end_not_a_stop, (SMOLLM2,)),
    )
}


def write_variant(source: Path, folder: Path, variant: Variant) -> Path:
    linked_copy(source, folder)
    variant.write(folder)
    return folder
