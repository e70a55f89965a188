"""How a drafted bound is set from what was measured: rounded to a step, with a margin, so
that a later run of the same model passes and a changed one does not."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from probes.draft.settings import NOISE_RATE

if TYPE_CHECKING:
    pass


def floor_to(value: float, step: float) -> float:
    """``value`` rounded down to a multiple of ``step`` (bounds from below)."""
    return round(math.floor(value / step + 1e-9) * step, 10)


def ceil_to(value: float, step: float) -> float:
    """``value`` rounded up to a multiple of ``step`` (bounds from above)."""
    return round(math.ceil(value / step - 1e-9) * step, 10)


def power_of_ten_above(value: float) -> float:
    """The smallest power of ten >= value (a tolerance stated to one digit)."""
    return float(10.0 ** math.ceil(math.log10(value)))


def _noise_bound(measured: dict[str, float], noise: list[dict[str, float]], semantic: list[str]) -> tuple[float, float]:
    for step in range(1, 100):
        bound = step / 100
        claimed = [g for g in semantic if measured[g] >= bound] or semantic
        rate = float(np.mean([all(n[g] >= bound for g in claimed) for n in noise]))
        if rate <= NOISE_RATE:
            return bound, rate
    return 1.0, 0.0
