"""What a loaded model really is, read from its modules, never from the card: which Linear
layers are 4-bit (bitsandbytes ``Linear4bit``), 8-bit or full precision, with which quant
type and compute dtype, and what the input embedding is. A card that asks for NF4 and gets a
full-precision model (a transformers upgrade that ignores ``quantization_config``, a
bitsandbytes that silently falls back) is caught here at load time (``loaded_as_asked``).
The subject records it when it loads (subjects/subject.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel


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
    # path that ran (lm_probes/numerics.py BNB_*) and the dtype its matmuls computed in, which on
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

    from lm_probes.numerics import is_bitsandbytes

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

    from lm_probes.numerics import linear_4bit_layers

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
