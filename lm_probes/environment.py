"""The library versions and the machine a run had: read from package metadata (nothing
heavy imported) and, for torch's own figures, from an imported torch."""

from __future__ import annotations

import functools
import platform


@functools.cache  # installed versions do not change within a process; each lookup scans sys.path
def installed_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


# what environment_info() reads from an imported torch (the rest comes from package metadata)
TORCH_RUNTIME_KEYS = ("torch", "cpu threads", "cuda", "gpu")


def environment_info(runtime: dict[str, str] | None = None) -> dict[str, str]:
    """Library versions and the machine: the first thing to compare across runs.

    Versions come from package metadata, so nothing heavy is imported for them.
    ``runtime``: the TORCH_RUNTIME_KEYS as another process read them (the report of a
    pytest-xdist run, whose controller runs no test: it need not load torch for them)."""
    runtime = torch_runtime_info() if runtime is None else runtime
    info = {
        "python": platform.python_version(),
        "torch": runtime["torch"],
        "transformers": installed_version("transformers"),
        "tokenizers": installed_version("tokenizers"),
        "platform": platform.platform(),
        **{key: runtime[key] for key in TORCH_RUNTIME_KEYS[1:]},
    }
    for extra in ("bitsandbytes", "gguf", "mistral-common", "sentencepiece", "accelerate"):
        info[extra] = installed_version(extra)
    return info


def torch_runtime_info() -> dict[str, str]:
    """This process's torch version, threads, CUDA build and GPUs (imports torch)."""
    import torch

    gpus = "none"
    if torch.cuda.is_available():
        gpus = ", ".join(
            f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())
        )
    return {
        "torch": str(torch.__version__),  # a str subclass that pickle-free transports (xdist) refuse
        "cpu threads": str(torch.get_num_threads()),
        "cuda": torch.version.cuda or "none",
        "gpu": gpus,
    }
