"""How a model is loaded, as a card's ``load:`` says (device, dtype, quantization) and as the
command line overrides it: the settings, and the keyword arguments from_pretrained gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lm_probes.cards.choices import DEVICE_PATTERN, DTYPES, QUANTIZATIONS
from lm_probes.cards.files import SubjectLoadError

if TYPE_CHECKING:
    import torch


# The first bitsandbytes whose CPU backend runs NF4 (transformers 5 also refuses older
# ones for 4-bit loads). Measured: 0.45.5 and 0.46.0 are refused, 0.46.1 ... 0.50.2 load
# SmolLM2 in NF4 on CPU and answer " Tokyo".
MIN_BITSANDBYTES = "0.46.1"
INSTALL_BITSANDBYTES = f"pip install 'bitsandbytes>={MIN_BITSANDBYTES}'"


def bitsandbytes_problem() -> str | None:
    """Why bitsandbytes cannot do a 4/8-bit load here (missing, too old), or None."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return f"bitsandbytes is not installed: `{INSTALL_BITSANDBYTES}`"
    try:
        installed = version("bitsandbytes")
    except PackageNotFoundError:  # importable but without metadata (a source tree on sys.path)
        return None
    if Version(installed) < Version(MIN_BITSANDBYTES):
        return (
            f"bitsandbytes {installed} is older than {MIN_BITSANDBYTES}, the first whose CPU backend "
            f"runs NF4: `{INSTALL_BITSANDBYTES}`"
        )
    return None


def torch_dtype(name: str) -> torch.dtype | str:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SubjectLoadError("requires CUDA; none found (torch.cuda.is_available() is False)")
    return requested


class LoadSettings(BaseModel):
    """A card's ``load:`` section: where and how its model is loaded."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    device: Annotated[str, Field(pattern=DEVICE_PATTERN)] = Field("cpu", description="auto, cpu, cuda, cuda:N or mps")
    device_map: str | None = Field(None, description="accelerate's device_map (e.g. auto); wins over device")
    dtype: Literal[DTYPES] = Field("float32", description="the weights' dtype")  # type: ignore[valid-type]
    quantization: Literal[QUANTIZATIONS] = Field(  # type: ignore[valid-type]
        "none", description="bitsandbytes quantization on load"
    )


@dataclass(frozen=True)
class LoadOptions:
    """How one subject's model is loaded: the card's ``load:`` with --lm-probes-device, --lm-probes-dtype,
    --lm-probes-seed, --lm-probes-trust-remote-code and --lm-probes-allow-pickle applied. Frozen: a subject never
    changes how it loads; a different load is a different subject."""

    device: str = "cpu"  # as asked: auto, cpu, cuda, cuda:N, mps
    device_from_command_line: bool = False  # --lm-probes-device wins over the card's device_map
    device_map: str | None = None
    dtype: str = "float32"
    quantization: str = "none"
    seed: int = 0
    trust_remote_code: bool = False  # remote code is arbitrary Python: off unless asked
    allow_pickle: bool = False  # pickle checkpoints (.bin, .pt) can run code when read
    # bitsandbytes' packed AVX512-BF16 CPU kernel where the CPU has it (its default); False
    # keeps the dequantize-then-matmul path in the compute dtype (--lm-probes-no-bnb-packed-cpu):
    # another machine class on the same machine (lm_probes/numerics.py)
    bnb_cpu_packed: bool = True

    def placement_kwargs(self, device: str) -> dict[str, Any]:
        """from_pretrained arguments for the quantized load and the placement.

        A quantized model is placed by accelerate while loading (it cannot be moved after),
        so the device goes into device_map: the card's device_map, or the whole model on
        ``device`` when the card has none or --lm-probes-device overrides it."""
        kwargs: dict[str, Any] = {}
        if self.device_map and not self.device_from_command_line:
            kwargs["device_map"] = self.device_map
        if self.quantization == "none":
            return kwargs
        problem = bitsandbytes_problem()
        if problem:
            raise SubjectLoadError(f"quantization '{self.quantization}' needs bitsandbytes: {problem}")
        import torch
        from transformers import BitsAndBytesConfig

        if self.quantization == "nf4":
            # The article's setting: 4-bit NormalFloat weights, fp16 matmuls.
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16
            )
        elif self.quantization == "int8":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs.setdefault("device_map", {"": device})
        return kwargs
