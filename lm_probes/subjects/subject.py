"""Subjects: a card turned into a loaded tokenizer (and model), once per session.

Loading is lazy: a ``Subject`` reads nothing until a test asks for ``.tokenizer`` or
``.model``, and keeps what it loaded, so each model loads once however many tests use
it. Nothing here imports pytest: the plugin turns a ``SubjectLoadError`` into one
clear message for the whole session.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lm_probes import memory
from lm_probes.cards.card import Card, looks_like_local_path
from lm_probes.cards.files import FileDigests, SubjectLoadError
from lm_probes.cards.loading import LoadOptions, resolve_device
from lm_probes.environment import installed_version
from lm_probes.ledger import LEDGER
from lm_probes.numerics import Numerics, fingerprint, machine_class
from lm_probes.subjects.loaded import QuantizationInfo, inspect_quantization, loaded_as_asked, run_4bit_kernels

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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
    # the numerics fingerprint and the machine class it gives, once the model is loaded
    # (lm_probes/numerics.py); None before
    machine_class: str | None = None
    numerics: dict[str, Any] | None = None

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
            "machine_class": self.machine_class,
            "numerics": self.numerics,
        }


def _describe_missing(
    source_id: str, exc: BaseException | None = None, remote_code_allowed: bool = False, what: str = "model"
) -> str:
    """Why ``source_id`` did not load, as a clause (``'x' is ...``) after "cannot load the model: "."""
    if not remote_code_allowed and _needs_remote_code(source_id, exc, what):
        return (
            f"'{source_id}' holds a model with its own Python code (auto_map in its config): loading it runs that "
            "code. If you trust its source, pass --lm-probes-trust-remote-code (or set trust_remote_code: true "
            "in the card's "
            "model)"
        )
    if looks_like_local_path(source_id):
        path = os.path.expanduser(source_id)
        if os.path.isfile(path):
            return (
                f"'{source_id}' is a file, not a folder: give the folder holding it, or a .gguf file as "
                "`source: gguf-file` (lm-probes draft-card --gguf-file writes such a card)"
            )
        if os.path.exists(path):
            return f"'{source_id}' is a folder, but holds no model or tokenizer that transformers could read"
        return f"'{source_id}' is not an existing folder"
    offline = os.environ.get("HF_HUB_OFFLINE")
    hint = (
        "HF_HUB_OFFLINE is set, so only a copy already in the Hugging Face cache can be used"
        if offline
        else "check the id, your network and `huggingface-cli login` for gated models"
    )
    return f"'{source_id}' is neither a local folder nor a loadable hub id ({hint})"


# the auto_map entries (a folder's own classes) that loading a tokenizer or a model would run
_OWN_CODE_CLASSES = {"tokenizer": ("AutoTokenizer",), "model": ("AutoConfig", "AutoModelForCausalLM")}


def _needs_remote_code(source_id: str, exc: BaseException | None, what: str) -> bool:
    """transformers refused the source because it needs trust_remote_code: its error says so
    (a hub id), or the folder's config names its own classes for ``what`` (auto_map)."""
    if exc is not None and "trust_remote_code" in str(exc):
        return True
    folder = Path(os.path.expanduser(source_id))
    for name in ("config.json", "tokenizer_config.json"):
        try:
            auto_map = json.loads((folder / name).read_text(encoding="utf-8")).get("auto_map") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(auto_map, dict) and any(key in auto_map for key in _OWN_CODE_CLASSES[what]):
            return True
    return False


# ------------------------------------------------------------------------- subject


class Subject:
    """A card with its tokenizer and model, each loaded on first use and kept.

    How the model loads is one frozen ``LoadOptions`` (the card's ``load:`` with the
    command line's overrides); what a probe computed from a subject is kept by
    ``lm_probes.subjects.results``, not here."""

    def __init__(
        self,
        card: Card,
        device: str | None = None,
        dtype: str | None = None,
        seed: int = 0,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        bnb_cpu_packed: bool = True,
    ):
        self.card = card
        self.options = LoadOptions(
            device=device or card.load.device,
            device_from_command_line=device is not None,
            device_map=card.load.device_map,
            dtype=dtype or card.load.dtype,
            quantization=card.load.quantization,
            seed=seed,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle or bool(getattr(card.model, "allow_pickle", False)),
            bnb_cpu_packed=bnb_cpu_packed,
        )
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._model: PreTrainedModel | None = None
        self._files: FileDigests = {}  # what the loads read, for provenance
        self._revision: str | None = None
        self._quantization: QuantizationInfo | None = None
        self._numerics: Numerics | None = None
        self._failures: dict[str, SubjectLoadError] = {}  # a load that failed is not retried

    @classmethod
    def sharing_loaded(cls, loaded: Subject) -> Subject:
        """A subject of the same card with no probe results of its own that uses ``loaded``'s
        tokenizer and model (loading them first): for a test that patches a library, not
        the weights, and needs every probe run anew without loading the model again."""
        loaded.tokenizer  # noqa: B018
        if loaded.card.has_model:
            loaded.model  # noqa: B018
        fresh = cls(loaded.card, seed=loaded.seed)
        fresh.options = loaded.options
        fresh._tokenizer, fresh._model, fresh._files = loaded._tokenizer, loaded._model, dict(loaded._files)
        fresh._revision, fresh._quantization, fresh._numerics = (
            loaded._revision,
            loaded._quantization,
            loaded._numerics,
        )
        return fresh

    def load_model_anew(self) -> PreTrainedModel:
        """The model loaded again from the card, not kept by this subject (what a benchmark
        of the load times)."""
        return self._load_model()

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def seed(self) -> int:
        return self.options.seed

    def __repr__(self) -> str:
        return f"Subject({self.card.name!r})"

    # -- tokenizer
    def _once(self, what: str, load):
        if what in self._failures:
            raise self._failures[what]
        try:
            return load()
        except SubjectLoadError as exc:
            self._failures[what] = exc
            raise

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = self._once("tokenizer", self._load_tokenizer)
        return self._tokenizer

    def _load_tokenizer(self) -> PreTrainedTokenizerBase:
        source = self.card.tokenizer
        try:
            if source.source == "model":
                # the tokenizer that sits with the weights (their folder or converted GGUF)
                assert self.card.model is not None  # a card rule: source 'model' needs a model
                source = self._model_folder("tokenizer: {source: model}")
            return source.load_tokenizer(self.options, self._files)
        except SubjectLoadError as exc:
            raise SubjectLoadError(f"card '{self.card.name}': cannot load the tokenizer: {exc}") from None
        except (OSError, ValueError) as exc:
            raise SubjectLoadError(
                f"card '{self.card.name}': cannot load the tokenizer: "
                f"{_describe_missing(_location(source), exc, self._remote_code_allowed(source), 'tokenizer')}.\n"
                f"  transformers said: {_first_line(exc)}"
            ) from None

    def _remote_code_allowed(self, source: Any) -> bool:
        return self.options.trust_remote_code or bool(getattr(source, "trust_remote_code", False))

    def model_folder(self) -> str:
        """The folder from_pretrained reads this card's model from (a package GGUF is
        converted into the cache first)."""
        assert self.card.model is not None
        return self._model_folder("a server (--lm-probes-serve)").id

    def _model_folder(self, needed_by: str) -> Any:
        """The HubSource of the model's files; a plugin's source without ``folder()`` is said
        in one message rather than an AttributeError."""
        assert self.card.model is not None
        if not callable(getattr(self.card.model, "folder", None)):
            raise SubjectLoadError(
                f"{needed_by} needs the model's files, and source "
                f"'{self.card.model.source}' has no folder(): give the tokenizer a source of its own, or add folder()"
            )
        return self.card.model.folder(self._files)

    # -- model
    @property
    def model(self) -> PreTrainedModel:
        if self._model is None:
            if not self.card.has_model:
                raise SubjectLoadError(f"card '{self.card.name}' has no model (tokenizer only)")
            with memory.step(self.card.name, "load"):  # the Subjects table's peak RSS: load, then probes
                self._model = self._once("model", self._load_model)
            LEDGER.watch(self._model, self.card.name)  # each forward's work, for progress and the benchmark
        return self._model

    def _load_model(self) -> PreTrainedModel:
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        source = self.card.model
        assert source is not None
        options = self.options
        torch.manual_seed(options.seed)
        try:
            device = resolve_device(options.device)
            model = source.load_model(options, self._files, device)
        except SubjectLoadError as exc:
            raise SubjectLoadError(f"card '{self.card.name}': cannot load the model: {exc}") from None
        except torch.OutOfMemoryError:
            raise SubjectLoadError(
                f"card '{self.card.name}': out of memory while loading the model on {options.device}. "
                "Use a quantized load (load.quantization: nf4), a smaller card, or another --lm-probes-device."
            ) from None
        except (OSError, ValueError) as exc:
            location = _location(source)
            if _only_pickle_weights(location) and not options.allow_pickle:
                raise SubjectLoadError(
                    f"card '{self.card.name}': '{location}' holds only pickle weights (.bin/.pt), which can run "
                    "code when loaded; lm-probes reads safetensors or GGUF. Convert the checkpoint to safetensors, "
                    "or, if you trust its source, pass --lm-probes-allow-pickle (or set model.allow_pickle: true "
                    "in the card)."
                ) from None
            raise SubjectLoadError(
                f"card '{self.card.name}': cannot load the model: "
                f"{_describe_missing(location, exc, self._remote_code_allowed(source))}.\n"
                f"  transformers said: {_first_line(exc)}"
            ) from None
        self._revision = getattr(model.config, "_commit_hash", None)
        # With a device_map (always, for quantized loads) accelerate placed the weights;
        # moving them afterwards is an error for 4/8-bit models.
        if getattr(model, "hf_device_map", None) is None:
            model = model.to(device)
        # Read back what was loaded: a card that asks for NF4 and gets a full-precision
        # model would otherwise pass every test as the wrong subject.
        self._quantization = inspect_quantization(model)
        if self._quantization.linear_4bit:
            # one forward, so the numerics fingerprint reads the kernel path that runs
            # (bitsandbytes chooses it at the first forward), not the one asked for
            run_4bit_kernels(model, packed_cpu=options.bnb_cpu_packed)
        self._numerics = fingerprint(model)
        self._quantization = dataclasses.replace(
            self._quantization, kernel_path=self._numerics.bnb_kernel, computed_dtype=self._numerics.compute_dtype_ran
        )
        if options.quantization != "none":
            wrong = loaded_as_asked(options.quantization, self._quantization)
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
    def numerics(self) -> Numerics:
        """The numerics fingerprint: the machine's kernel-selecting features and, for a
        model, the kernels that ran (loads the model)."""
        if not self.card.has_model:
            if self._numerics is None:
                self._numerics = fingerprint(None)
            return self._numerics
        self.model  # noqa: B018
        assert self._numerics is not None
        return self._numerics

    @property
    def loaded_numerics(self) -> Numerics | None:
        """The fingerprint if the model is loaded (or there is none), else None: never loads."""
        if self.card.has_model and self._model is None:
            return None
        return self.numerics

    @property
    def machine_class(self) -> str:
        """The class of machines that give this card the same numbers (its snapshot's file name)."""
        return machine_class(self.numerics, self.card.has_model)

    @property
    def provenance(self) -> Provenance:
        card = self.card
        model_source = card.model_override or (card.model or card.tokenizer).describe()
        loaded = self._model
        numerics = self.loaded_numerics
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
                f"bitsandbytes {installed_version('bitsandbytes')}"
                if self._quantization and (self._quantization.linear_4bit or self._quantization.linear_8bit)
                else None
            ),
            machine_class=self.machine_class if numerics else None,
            numerics=numerics.as_dict() if numerics else None,
        )


def _location(source: Any) -> str:
    """Where a source reads from, for a message: the expanded path when it has one."""
    try:
        return getattr(source, "location", None) or getattr(source, "path", None) or getattr(source, "id", "?")
    except SubjectLoadError:
        return source.id


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
