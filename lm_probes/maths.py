"""Numerical helpers shared by the probes and the snapshot rules (numpy only): stable softmax,
KL divergence, and the per-layer change between two hidden-state fingerprints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax64(logits: np.ndarray) -> np.ndarray:
    """softmax in float64 (stable: the maximum is subtracted first), for comparing two
    distributions without float32 rounding in the way."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats; terms where p is 0 contribute nothing."""
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(np.maximum(q[mask], 1e-300)))))


@dataclass(frozen=True)
class LayerMove:
    layer: int  # index into the hidden states: 0 = embedding output, i = model.layers[i - 1]'s output
    norm_recorded: float
    norm_now: float
    cosine: float  # between the recorded and the current projection

    def describe(self) -> str:
        where = "the embedding output" if self.layer == 0 else f"the output of model.layers[{self.layer - 1}]"
        return (
            f"first moved at hidden state {self.layer} ({where}): norm {self.norm_recorded:.6g} -> "
            f"{self.norm_now:.6g}, cosine to the recorded direction {self.cosine:.7f}"
        )


def first_moved_layer(
    recorded_norms: list[float],
    recorded_projections: list[list[float]],
    norms: list[float],
    projections: list[list[float]],
    norm_rtol: float,
    cosine_atol: float,
) -> LayerMove | None:
    """The first layer whose norm moved by more than ``norm_rtol`` (relative) or whose
    projected direction turned by more than ``cosine_atol`` (1 - cosine); None if none."""
    for layer, (n0, n1, p0, p1) in enumerate(zip(recorded_norms, norms, recorded_projections, projections)):
        relative_norm, cosine = layer_change(n0, n1, p0, p1)
        if relative_norm > norm_rtol or 1.0 - cosine > cosine_atol:
            return LayerMove(layer, n0, n1, cosine)
    return None


def layer_change(
    norm_recorded: float, norm_now: float, projection_recorded: list[float], projection_now: list[float]
) -> tuple[float, float]:
    """(relative norm change, cosine between the projected states) of one layer: what the
    same-class check (first_moved_layer) and the cross-class statistics both judge."""
    a, b = np.asarray(projection_recorded, dtype=np.float64), np.asarray(projection_now, dtype=np.float64)
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denominator) if denominator > 0 else (1.0 if not a.any() and not b.any() else 0.0)
    return abs(norm_now - norm_recorded) / max(abs(norm_recorded), 1e-12), cosine
