"""The numerics fingerprint: which kernels produced a subject's numbers, and its machine class.

Two machines with the same library versions can still compute different numbers, because
the libraries pick kernels by what the hardware offers (measured in
``docs/machine-classes.md``):

- bitsandbytes >= 0.49 on a CPU with AVX512-BF16 repacks every 4-bit weight at the first
  inference forward and from then on runs its fused CPU kernel, which computes in
  **bfloat16** whatever ``bnb_4bit_compute_dtype`` says;
- oneDNN's float16 (and bfloat16) GEMM is used where the CPU has the instructions for it
  (AVX512-FP16/AMX), with other, shape-dependent rounding;
- on CUDA, the kernels differ by compute capability.

``fingerprint`` reads all of that from the machine and the loaded model (after a forward,
so the bitsandbytes path is the one that ran). ``machine_class`` turns it into the name of
the class whose members give the same numbers *for that card*: built only from the features
that change that card's numbers, so float32 cards share one class across x86 CPUs (measured:
equal within 1.6e-7 relative on an AMD EPYC and an Intel Xeon with AMX) while half-precision
and 4-bit cards split by kernel path. Snapshots are kept per class
(``fixtures/snapshots/<card>/<class>.json``).
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# The torch.cpu.get_capabilities() entries that select kernels (ATen's vectorised paths,
# oneDNN's half-precision GEMMs, bitsandbytes' fused CPU kernel): recorded in every
# fingerprint, so two runs can say what differed between their CPUs.
CPU_KERNEL_FEATURES = (
    "avx2",
    "avx512_f",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_fp16",
    "amx_int8",
)

# bitsandbytes kernel paths, as fingerprint.bnb_kernel says them
BNB_CPU_PACKED = "cpu-packed-bf16"  # the fused AVX512-BF16 kernel (gemv_4bit on repacked weights)
BNB_CPU_DEQUANTIZE = "cpu-dequantize"  # dequantize the weight, then a matmul in the compute dtype
BNB_CUDA = "cuda"

_DESCRIBE_BNB = {
    BNB_CPU_PACKED: "bitsandbytes' AVX512-BF16 CPU kernel (weights repacked at the first forward)",
    BNB_CPU_DEQUANTIZE: "bitsandbytes' CPU dequantize-then-matmul path",
    BNB_CUDA: "bitsandbytes' CUDA kernels",
}

HALF_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class Numerics:
    """What decides a subject's rounding: the device, its kernel-selecting features and,
    for a model with bitsandbytes layers, the kernel path that ran."""

    device: str  # "cpu" or "cuda"
    device_name: str  # the CPU's model name, or the GPU's
    architecture: str  # x86_64, aarch64, ...
    cpu_features: tuple[str, ...] = ()  # the CPU_KERNEL_FEATURES this CPU has
    aten_capability: str = "-"  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...
    onednn: bool = False  # torch.backends.mkldnn enabled (and built in)
    onednn_bf16: bool = False  # the CPU runs oneDNN's bfloat16 kernels
    onednn_fp16: bool = False  # ... and its float16 kernels (AVX512-FP16 / AMX-FP16)
    cuda_capability: str | None = None  # "9.0"
    model_dtype: str = "-"  # the loaded model's dtype; "-" for a tokenizer-only card
    bnb_kernel: str | None = None  # BNB_*: the bitsandbytes path that ran; None without 4-bit layers
    compute_dtype_asked: str | None = None  # the 4-bit layers' compute_dtype (what the config asked)
    compute_dtype_ran: str | None = None  # what their kernels computed in

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_features"] = list(self.cpu_features)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Numerics:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["cpu_features"] = tuple(known.get("cpu_features", ()))
        return cls(**known)

    @classmethod
    def describe_recorded(cls, data: Any) -> str:
        """A recorded fingerprint as one line, or what is wrong with one edited by hand (a field
        missing or of another type): the pages that show it still render."""
        try:
            return cls.from_dict(data).describe()
        except (TypeError, ValueError, AttributeError) as exc:
            return f"a numerics fingerprint that cannot be read ({exc})"

    def compute_note(self) -> str:
        """'asked float16, computed bfloat16: bitsandbytes' AVX512-BF16 CPU kernel ...', or ''."""
        if self.bnb_kernel is None:
            return ""
        head = f"asked {self.compute_dtype_asked}, computed {self.compute_dtype_ran}"
        return f"{head}: {_DESCRIBE_BNB.get(self.bnb_kernel, self.bnb_kernel)}"

    def describe(self) -> str:
        """One line for the report and ``lm-probes diff``."""
        if self.device == "cuda":
            parts = [f"cuda {self.device_name} (sm {self.cuda_capability})"]
        else:
            parts = [f"cpu {self.device_name} ({self.architecture}, ATen {self.aten_capability})"]
            parts.append(", ".join(self.cpu_features) or "no AVX2")
            half = "+".join(h for h, ok in (("bf16", self.onednn_bf16), ("fp16", self.onednn_fp16)) if ok)
            parts.append(f"oneDNN {'on' if self.onednn else 'off'} (half-precision kernels here: {half or 'none'})")
        if self.model_dtype != "-":
            parts.append(f"model {self.model_dtype}")
        if self.bnb_kernel:
            parts.append(self.compute_note())
        return "; ".join(parts)


def machine_class(numerics: Numerics, has_model: bool = True) -> str:
    """The class of machines on which this card's numbers are the same.

    - a tokenizer-only card: ``cpu`` (no kernels are involved);
    - CUDA: ``cuda-sm<major><minor>``;
    - a float32 model on an x86 CPU: ``cpu`` (other architectures: ``cpu-<arch>``);
    - a half-precision or 4-bit model on CPU: ``cpu`` plus what changes its numbers:
      float16 in hardware (``avx512fp16``), the bitsandbytes path with the dtype it
      computed in (``bnb-float16``, ``bnb-packed-bfloat16``) and oneDNN's half-precision
      GEMM where it runs (``onednn-float16``), e.g.
      ``cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16``.
    """
    if not has_model:
        return "cpu"
    if numerics.device == "cuda":
        return f"cuda-sm{(numerics.cuda_capability or '0.0').replace('.', '')}"
    parts = [numerics.device]
    if numerics.architecture not in ("x86_64", "AMD64"):
        parts.append(numerics.architecture)
    half = numerics.model_dtype if numerics.model_dtype in HALF_DTYPES else None
    if (half or numerics.bnb_kernel) and "avx512_fp16" in numerics.cpu_features:
        # float16 arithmetic in hardware: measured on an Intel Xeon, a float16 card moves
        # (max |dp| 2.05e-4) even with oneDNN and bitsandbytes' packed path both off
        parts.append("avx512fp16")
    if numerics.bnb_kernel == BNB_CPU_PACKED:
        parts.append(f"bnb-packed-{numerics.compute_dtype_ran}")
    elif numerics.bnb_kernel is not None:
        parts.append(f"bnb-{numerics.compute_dtype_ran}")
    if half and numerics.onednn and getattr(numerics, "onednn_" + ("fp16" if half == "float16" else "bf16")):
        parts.append(f"onednn-{half}")
    return "-".join(parts)


# ------------------------------------------------------------------------- reading


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what platform says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_numerics() -> Numerics:
    """The machine's part of the fingerprint (no model): its CPU and oneDNN."""
    import torch

    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    onednn = bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
    return Numerics(
        device="cpu",
        device_name=cpu_name(),
        architecture=platform.machine(),
        cpu_features=tuple(f for f in CPU_KERNEL_FEATURES if capabilities.get(f)),
        aten_capability=str(torch.backends.cpu.get_cpu_capability()),
        onednn=onednn,
        onednn_bf16=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        onednn_fp16=bool(torch.ops.mkldnn._is_mkldnn_fp16_supported()),
    )


def is_bitsandbytes(module: Any, kind: str) -> bool:
    """Whether ``module`` is bitsandbytes' ``kind`` layer (Linear4bit, Linear8bitLt), told by
    its class, so nothing imports bitsandbytes to ask."""
    return type(module).__name__ == kind and type(module).__module__.startswith("bitsandbytes")


def linear_4bit_layers(model: Any) -> list[Any]:
    """The model's bitsandbytes Linear4bit layers, in module order."""
    return [m for m in model.modules() if is_bitsandbytes(m, "Linear4bit")]


def bnb_kernel_path(model: PreTrainedModel) -> tuple[str, str | None, str] | None:
    """(path, compute dtype asked, dtype it computed in) of the model's 4-bit layers, as they
    ran: read after a forward (bitsandbytes repacks for its CPU kernel on the first one).
    None without bitsandbytes 4-bit layers."""
    layers = linear_4bit_layers(model)
    if not layers:
        return None
    layer = layers[0]
    asked = _dtype_name(layer.compute_dtype)
    state = getattr(layer.weight, "quant_state", None)
    if layer.weight.device.type == "cuda":
        return BNB_CUDA, asked, asked or "float32"
    if getattr(state, "packing_format_for_cpu", False):
        # gemv_4bit's CPU kernel casts its input and scales to bfloat16 ("cpu fused op only
        # support bf16 for now", bitsandbytes/backends/cpu/ops.py)
        return BNB_CPU_PACKED, asked, "bfloat16"
    return BNB_CPU_DEQUANTIZE, asked, asked or _dtype_name(model.dtype)


def fingerprint(model: PreTrainedModel | None) -> Numerics:
    """The numerics fingerprint of a subject: the machine's, and the loaded model's kernels."""
    machine = machine_numerics()
    if model is None:
        return machine
    import torch

    device = model.device
    fields: dict[str, Any] = {"model_dtype": _dtype_name(model.dtype) or "-"}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        fields |= {
            "device": "cuda",
            "device_name": torch.cuda.get_device_name(device),
            "cuda_capability": f"{major}.{minor}",
        }
    path = bnb_kernel_path(model)
    if path is not None:
        fields |= dict(zip(("bnb_kernel", "compute_dtype_asked", "compute_dtype_ran"), path))
    return replace(machine, **fields)


def _dtype_name(dtype: Any) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


# ------------------------------------------------------------------- resolution


# The spacing of a dtype's numbers just above 1 (torch.finfo(dtype).eps): the unit in which
# two computations of the same quantity in that dtype are compared.
RESOLUTION = {"float64": 2.0**-52, "float32": 2.0**-23, "bfloat16": 2.0**-7, "float16": 2.0**-10}


def resolution(dtype: Any) -> float:
    """torch.finfo(dtype).eps by name ("float16") or torch dtype, without importing torch."""
    name = _dtype_name(dtype) or "float32"
    if name not in RESOLUTION:
        raise ValueError(f"no resolution known for dtype {name}; known: {', '.join(RESOLUTION)}")
    return RESOLUTION[name]


def coarsest(*dtypes: str | None) -> str:
    """The dtype of lowest resolution among those given (None and '-' ignored; float32 if none)."""
    known = [d for d in dtypes if d in RESOLUTION]
    return max(known, key=RESOLUTION.__getitem__) if known else "float32"


def class_parts(name: str) -> list[str]:
    """A class name's parts as machine_class builds them: cpu-bnb-packed-bfloat16-onednn-float16
    -> [cpu, bnb-packed-bfloat16, onednn-float16]."""
    import re

    return re.findall(r"bnb-packed-[a-z0-9]+|bnb-[a-z0-9]+|onednn-[a-z0-9]+|[^-]+", name)


def class_distance(wanted: str, other: str) -> tuple[int, float, int, str]:
    """How far machine class ``other`` is from ``wanted`` (smaller is nearer): the same device
    family first (cuda-sm89 for cuda-sm90, before any cpu), then the most shared parts of
    the name (cpu-bnb-packed-bfloat16 is nearer cpu-avx512fp16-bnb-packed-bfloat16-onednn-float16
    than cpu-bnb-float16), then the nearest compute capability, then the name."""
    parts, theirs = set(class_parts(wanted)), set(class_parts(other))
    same_family = other.split("-")[0] == wanted.split("-")[0]
    shared = len(parts & theirs) / len(parts | theirs)
    digits = [int("".join(c for c in d if c.isdigit()) or 0) for d in (wanted, other)]
    gap = abs(digits[0] - digits[1]) if wanted.startswith("cuda") and other.startswith("cuda") else 0
    return (0 if same_family else 1, -shared, gap, other)


def nearest_class(wanted: str, recorded: list[str]) -> str | None:
    """The recorded class to compare a run of class ``wanted`` with where its own is not
    recorded (``class_distance``); None when nothing is recorded."""
    return min(recorded, key=lambda other: class_distance(wanted, other)) if recorded else None


def machine_numerics_from_record(record: dict[str, Any]) -> Numerics:
    """The machine part of a fingerprint from a machine's recorded ``machine.json`` (what
    ``torch.cpu.get_capabilities()`` and the oneDNN switches read there): for a snapshot
    set recorded before snapshots carried their fingerprint."""
    capabilities = record["torch.cpu.get_capabilities()"]
    return Numerics(
        device="cpu",
        device_name=str(record.get("lscpu", {}).get("model name", capabilities.get("cpu_name", "?"))),
        architecture=str(capabilities.get("architecture", "x86_64")),
        cpu_features=tuple(f for f in CPU_KERNEL_FEATURES if capabilities.get(f)),
        aten_capability=str(record.get("torch.backends.cpu.get_cpu_capability()", "-")),
        onednn=True,  # torch's default; the recorded runs did not switch it off
        onednn_bf16=bool(record.get("torch.ops.mkldnn._is_mkldnn_bf16_supported()")),
        onednn_fp16=bool(record.get("torch.ops.mkldnn._is_mkldnn_fp16_supported()")),
    )
