"""Numerical helpers shared by the probes and the snapshot rules (numpy only)."""

from __future__ import annotations

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
