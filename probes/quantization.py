"""Quantization probes: what a loaded model really is, and how far it drifted.

Two questions, both answered from the loaded model, never from the card:

- ``inspect_quantization``: which Linear layers are 4-bit (bitsandbytes ``Linear4bit``),
  8-bit or full precision, with which quant type and compute dtype, and what the input
  embedding is. A card that asks for NF4 and gets a full-precision model (a
  transformers upgrade that ignores ``quantization_config``, a bitsandbytes that
  silently falls back) is caught here at load time (``loaded_as_asked``).
- ``drift``: the quantized model against a full-precision reference of the same
  weights, on the article's prompts: KL divergence of the next-token distributions,
  top-1 agreement, top-10 overlap, greedy tokens until the first divergence, and the
  memory footprint ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from probes.maths import kl_divergence, softmax64

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from probes.generation import Generation

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


# --------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class QuantizationInfo:
    """What the loaded model's layers are (read from the modules themselves)."""

    method: str  # "nf4", "fp4", "int8" or "none": the quant type of the 4/8-bit layers
    linear_4bit: int
    linear_8bit: int
    full_precision_linear: tuple[str, ...]  # names of nn.Linear layers left unquantized
    compute_dtype: str | None  # of the 4-bit layers' matmuls (None: no 4-bit layers)
    embedding_class: str
    embedding_dtype: str
    footprint_bytes: int  # model.get_memory_footprint(): parameters and buffers
    # the numerics fingerprint's, read after a forward (run_4bit_kernels): the bitsandbytes
    # path that ran (probes/numerics.py BNB_*) and the dtype its matmuls computed in, which on
    # a CPU with AVX512-BF16 is bfloat16 whatever compute_dtype asked
    kernel_path: str | None = None
    computed_dtype: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "linear_4bit": self.linear_4bit,
            "linear_8bit": self.linear_8bit,
            "full_precision_linear": list(self.full_precision_linear),
            "compute_dtype": self.compute_dtype,
            "computed_dtype": self.computed_dtype,
            "kernel_path": self.kernel_path,
            "embedding_class": self.embedding_class,
            "embedding_dtype": self.embedding_dtype,
        }


def _dtype_name(dtype: Any) -> str | None:
    return None if dtype is None else str(dtype).removeprefix("torch.")


def inspect_quantization(model: PreTrainedModel) -> QuantizationInfo:
    import torch

    from probes.numerics import is_bitsandbytes

    four_bit, eight_bit, full = [], [], []
    for name, module in model.named_modules():
        if is_bitsandbytes(module, "Linear4bit"):
            four_bit.append(module)
        elif is_bitsandbytes(module, "Linear8bitLt"):
            eight_bit.append(module)
        elif isinstance(module, torch.nn.Linear):
            full.append(name)
    quant_types = sorted({str(getattr(m.weight, "quant_type", "?")) for m in four_bit})
    if four_bit:
        method = "+".join(quant_types)
    elif eight_bit:
        method = "int8"
    else:
        method = "none"
    compute = sorted({_dtype_name(m.compute_dtype) or "unset" for m in four_bit})
    embedding = model.get_input_embeddings()
    return QuantizationInfo(
        method=method,
        linear_4bit=len(four_bit),
        linear_8bit=len(eight_bit),
        full_precision_linear=tuple(full),
        compute_dtype="+".join(compute) if compute else None,
        embedding_class=type(embedding).__name__,
        embedding_dtype=_dtype_name(embedding.weight.dtype) or "-",
        footprint_bytes=int(model.get_memory_footprint()),
    )


def run_4bit_kernels(model: PreTrainedModel, packed_cpu: bool = True) -> None:
    """Run one forward of one token, so bitsandbytes picks its kernel path (on a CPU with
    AVX512-BF16 it repacks every 4-bit weight for its fused bfloat16 kernel at the first
    inference forward) before the numerics fingerprint reads it. ``packed_cpu=False`` keeps
    the dequantize-then-matmul path in the compute dtype (another machine class here)."""
    import torch

    from probes.numerics import linear_4bit_layers

    if not packed_cpu:
        for layer in linear_4bit_layers(model):
            layer.support_avx512bf16_for_cpu = False
    model.eval()  # the packed path is taken for inference only
    token = model.config.bos_token_id if model.config.bos_token_id is not None else 0
    with torch.no_grad():
        model(input_ids=torch.tensor([[token]], device=model.device), use_cache=False)


def loaded_as_asked(asked: str, info: QuantizationInfo) -> str | None:
    """Why a model loaded for quantization ``asked`` is not what was asked, or None."""
    if asked == info.method:
        return None
    layers = (
        f"{info.linear_4bit} 4-bit and {info.linear_8bit} 8-bit Linear layers, "
        f"{len(info.full_precision_linear)} full-precision"
    )
    if info.method == "none":
        return (
            f"the card asks for {asked} but the model loaded in full precision ({layers}): the quantization "
            "config was not applied. Check that transformers and bitsandbytes are the versions in constraints.txt "
            "and that the model folder is not already quantized another way."
        )
    return f"the card asks for {asked} but the loaded layers are {info.method} ({layers})"


# -------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class PromptDrift:
    """One prompt's next-token distributions, reference against quantized."""

    prompt: str
    kl: float  # KL(reference || quantized) in nats, computed in float64
    top1_reference: int
    top1_quantized: int
    top10_overlap: float  # |top-10 reference ∩ top-10 quantized| / 10
    top_reference: tuple[tuple[int, str, float], ...]  # (id, decoded, p), the 10 most likely
    top_quantized: tuple[tuple[int, str, float], ...]

    @property
    def top1_agrees(self) -> bool:
        return self.top1_reference == self.top1_quantized


@dataclass(frozen=True)
class Drift:
    reference: str  # card names
    quantized: str
    prompts: tuple[PromptDrift, ...]
    greedy_reference: Generation = field(repr=False)
    greedy_quantized: Generation = field(repr=False)
    footprint_reference: int
    footprint_quantized: int

    @property
    def max_kl(self) -> float:
        return max(p.kl for p in self.prompts)

    @property
    def top1_agreement(self) -> float:
        return sum(p.top1_agrees for p in self.prompts) / len(self.prompts)

    @property
    def mean_top10_overlap(self) -> float:
        return float(np.mean([p.top10_overlap for p in self.prompts]))

    @property
    def greedy_agreeing_tokens(self) -> int:
        """New greedy tokens the two models share before the first that differs."""
        a, b = self.greedy_reference.new_ids[0], self.greedy_quantized.new_ids[0]
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    @property
    def footprint_ratio(self) -> float:
        return self.footprint_quantized / self.footprint_reference


def drift_figures(d: Drift) -> dict[str, float]:
    """The drift's figures keyed by the card field that bounds each (expect.drift.<key>:
    max_ an upper bound, min_ a lower one), rounded as they are compared and reported."""
    return {
        "max_kl": round(d.max_kl, 4),
        "min_top1_agreement": round(d.top1_agreement, 4),
        "min_top10_overlap": round(d.mean_top10_overlap, 4),
        "min_greedy_agreeing_tokens": d.greedy_agreeing_tokens,
        "max_footprint_ratio": round(d.footprint_ratio, 4),
    }


def prompt_drift(
    tokenizer: Any, prompt: str, reference_logits: np.ndarray, quantized_logits: np.ndarray, k: int = 10
) -> PromptDrift:
    p, q = softmax64(reference_logits), softmax64(quantized_logits)
    top_p = np.argsort(-p, kind="stable")[:k]
    top_q = np.argsort(-q, kind="stable")[:k]

    def bars(ids: np.ndarray, probs: np.ndarray) -> tuple[tuple[int, str, float], ...]:
        return tuple((int(i), tokenizer.decode([int(i)]), float(probs[i])) for i in ids)

    return PromptDrift(
        prompt=prompt,
        kl=kl_divergence(p, q),
        top1_reference=int(top_p[0]),
        top1_quantized=int(top_q[0]),
        top10_overlap=len(set(top_p.tolist()) & set(top_q.tolist())) / k,
        top_reference=bars(top_p, p),
        top_quantized=bars(top_q, q),
    )
