"""Hidden-state fingerprints (U3): where inside the model a change happened.

The article's probes see the input embedding and the final logits; a change in between
(a kernel, a quantizer, a weight loader: bitsandbytes#1775, transformers#35286) shows up
only at the end, and nothing says where. A fingerprint keeps, for each prompt and each
layer's output (``output_hidden_states``: the embedding output, then one per decoder
layer, the last after the final norm), the last token's state as two small numbers
series: its L2 norm, and its projection on a few fixed random directions (seeded, so
the same on every machine). Two fingerprints are compared layer by layer; the first
layer whose norm or direction moved beyond tolerance is where to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PROJECTION_DIMS = 16
PROJECTION_SEED = 0


@dataclass(frozen=True)
class Fingerprint:
    prompt: str
    prompt_ids: tuple[int, ...]
    norms: tuple[float, ...]  # per layer output, the last token's state's L2 norm
    projections: tuple[tuple[float, ...], ...]  # per layer output, the state on PROJECTION_DIMS directions
    final_matches_logits: bool  # lm_head(last layer output) == the model's logits: the last entry is what it decodes
    finite: bool

    @property
    def layers(self) -> int:
        return len(self.norms)


def _directions(hidden_size: int) -> np.ndarray:
    """Fixed unit directions: the same for a given hidden size on every machine."""
    rng = np.random.default_rng(PROJECTION_SEED)
    directions = rng.standard_normal((hidden_size, PROJECTION_DIMS))
    return directions / np.linalg.norm(directions, axis=0, keepdims=True)


def fingerprint(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompt: str) -> Fingerprint:
    import torch

    enc = tokenizer(prompt, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    states = np.stack([h[0, -1].float().cpu().numpy() for h in out.hidden_states]).astype(np.float64)
    with torch.no_grad():
        head = model.get_output_embeddings()
        from_last = head(out.hidden_states[-1][:, -1:].to(head.weight.dtype))[0, -1].float()
    logits = out.logits[0, -1].float()
    return Fingerprint(
        prompt=prompt,
        prompt_ids=tuple(int(i) for i in enc.input_ids[0]),
        norms=tuple(float(n) for n in np.linalg.norm(states, axis=1)),
        projections=tuple(tuple(float(x) for x in row) for row in states @ _directions(states.shape[1])),
        final_matches_logits=bool(
            (from_last - logits).abs().max() <= head_tolerance(logits, head.weight.dtype, head.weight.shape[-1])
        ),
        finite=bool(np.isfinite(states).all()),
    )


# The output head on the last row alone against the model's own logits (whole sequence):
# the same products, summed in another order (a GEMM's blocking depends on the shape:
# oneDNN's float16 GEMM on AVX512-FP16/AMX rounds one row differently from a sequence).
# A dot product of K terms in dtype d is off by about sqrt(K) units of d's resolution at
# the result's scale; the bound is HEAD_UNITS of that. Measured: SmolLM2 float32 1.5e-6 of
# max|logit| (12 units of float32; the bound, K 576, is 48 units: 5.7e-6); tiny-mistral 2.6e-7
# (K 64, bound 16 units). What the check is for, the last hidden state not being what the
# head decodes (no final norm, another layer), moves the logits by their own scale.
HEAD_UNITS = 2.0


def head_tolerance(logits, dtype, hidden_size: int) -> float:
    """The largest |head(last state) - logits| that is rounding, for this dtype and size."""
    from lm_probes.numerics import resolution

    scale = max(float(logits.abs().max()), 1.0)
    return HEAD_UNITS * hidden_size**0.5 * resolution(dtype) * scale
