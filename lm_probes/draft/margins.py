"""How a drafted bound is set from what was measured, as data: each ``Margin`` computes the
bound *and* says in words how it did, so the comment a drafted card carries is the rule
that set the value (never restated by hand). The margins keep a later run of the same
model passing and still fail a changed one; the values below are the ones the shipped
cards were drafted with (docs/writing-cards.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lm_probes.draft.settings import FALSE_ALARM_RATE, NOISE_RATE


def floor_to(value: float, step: float) -> float:
    """``value`` rounded down to a multiple of ``step`` (bounds from below)."""
    return round(math.floor(value / step + 1e-9) * step, 10)


def ceil_to(value: float, step: float) -> float:
    """``value`` rounded up to a multiple of ``step`` (bounds from above)."""
    return round(math.ceil(value / step - 1e-9) * step, 10)


def power_of_ten_above(value: float) -> float:
    """The smallest power of ten >= value (a tolerance stated to one digit)."""
    return float(10.0 ** math.ceil(math.log10(value)))


@dataclass(frozen=True)
class Margin:
    """A bound from one measured value: scaled by ``factor``, moved by ``offset`` away from
    the measurement (down for a lower bound, up for an upper one), then rounded the same way
    to a multiple of ``step`` (or to ``digits`` decimals), and held within ``cap``."""

    side: Literal["lower", "upper"]  # lower: the measured value must stay at least the bound
    step: float | None = None
    offset: float = 0.0
    factor: float = 1.0
    digits: int | None = None  # round to this many decimals instead of to a step
    cap: float | None = None  # an upper bound never above this

    def bound(self, measured: float) -> float:
        sign = -1 if self.side == "lower" else 1
        moved = measured * self.factor + sign * self.offset
        if self.digits is not None:
            value = round(moved, self.digits)
        else:
            value = floor_to(moved, self.step) if self.side == "lower" else ceil_to(moved, self.step)
        return min(value, self.cap) if self.cap is not None else value

    def can_fail(self, measured: float) -> bool:
        """Whether the bound still says something: a lower bound at or below 0 cannot fail."""
        return self.side == "upper" or self.bound(measured) > 0

    def describe(self) -> str:
        """The rule in words, e.g. '0.1 below, rounded down to 0.05'."""
        parts = []
        if self.factor == 0.5:
            parts.append("half the measured value")
        elif self.factor != 1.0:
            parts.append(f"{self.factor:g}x the measured value")
        if self.offset:
            parts.append(f"{self.offset:g} {'below' if self.side == 'lower' else 'above'}")
        if self.digits is not None:
            parts.append(f"to {self.digits} decimals")
        else:
            parts.append(f"rounded {'down' if self.side == 'lower' else 'up'} to {self.step:g}")
        if self.cap is not None:
            parts.append(f"at most {self.cap:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class PowerOfTenMargin:
    """A tolerance from a measured difference: ``factor`` times it, up to a power of ten (a
    difference of exactly 0 gives ``floor``)."""

    factor: float = 10.0
    floor: float = 1e-9

    def bound(self, measured: float) -> float:
        return power_of_ten_above(self.factor * measured) if measured > 0 else self.floor

    def can_fail(self, measured: float) -> bool:
        return True

    def describe(self) -> str:
        return f"{self.factor:g}x the measured value, up to a power of ten"


@dataclass(frozen=True)
class CountMargin:
    """A count a later draw of samples must reach: the smallest measured less ``less``, kept
    only from ``at_least`` up (below that it cannot tell a sampler from greedy)."""

    less: int = 1
    at_least: int = 2

    def bound(self, measured: int) -> int:
        return int(measured) - self.less

    def can_fail(self, measured: int) -> bool:
        return self.bound(measured) >= self.at_least

    def describe(self) -> str:
        return f"the smallest measured less {self.less}, kept from {self.at_least} up"


def binomial_below(samples: int, p: float, k: int) -> float:
    """P(X < k) for X ~ Binomial(samples, p): how often fewer than k of ``samples``
    independent samples succeed when each does with probability p."""
    return math.fsum(math.comb(samples, i) * p**i * (1 - p) ** (samples - i) for i in range(k))


@dataclass(frozen=True)
class BinomialShare:
    """A share of ``samples`` independent samples from a *measured* per-sample probability
    instead of simulated draws: each sample succeeds with probability at least p (a path's
    probability under generate()'s own warpers, one forward pass), so the count is at least
    Binomial(samples, p), and the bound is the largest k / samples that a run falls below at
    most ``rate`` of the time. p = 1 (a nucleus of one token at every step) gives 1.0 with no
    false alarm at all."""

    samples: int
    rate: float = FALSE_ALARM_RATE

    def successes(self, p: float) -> int:
        return max(k for k in range(self.samples + 1) if binomial_below(self.samples, p, k) <= self.rate)

    def bound(self, p: float) -> float:
        return round(self.successes(p) / self.samples, 4)

    def false_alarm(self, p: float) -> float:
        """How often a run of a model with per-sample probability p falls below the bound."""
        return binomial_below(self.samples, p, self.successes(p))

    def can_fail(self, p: float) -> bool:
        return self.successes(p) > 0

    def describe(self) -> str:
        return (
            f"the largest share of {self.samples} samples that a run falls below at most {self.rate:.0%} of the "
            f"time (a binomial tail of the measured per-sample probability)"
        )


# The margins the draft uses, by what they bound.
TOP1_PROB = Margin("lower", step=0.05, offset=0.1)  # D1: the top-1 token's probability
SHARE = Margin("lower", step=0.05, offset=0.1)  # shares: distinct bigrams, drift's top-1/top-10 agreement
BEAM_GAIN = Margin("lower", step=0.1, factor=0.5)  # D9: beam's log p over greedy's
KL = Margin("upper", step=0.01, factor=1.25)  # Q2: KL from the reference
FOOTPRINT = Margin("upper", step=0.05, offset=0.05)  # Q5: memory footprint ratio
PCA_EXPLAINED = Margin("upper", step=0.05, offset=0.05, cap=0.95)  # E4: a collapsed embedding gives ~1
BACKENDS = PowerOfTenMargin(factor=10.0)  # U4: kernels' rounding moves with threads and CPU
GREEDY_TOKENS = CountMargin(less=2, at_least=1)  # Q4: greedy tokens agreeing with the reference
DISTINCT = CountMargin(less=1, at_least=2)  # D7, D8, tasks: distinct samples


# Q2-Q5: card field -> (the drift figure it bounds, its margin)
DRIFT_MARGINS: dict[str, tuple[str, Margin | CountMargin]] = {
    "max_kl": ("max_kl", KL),
    "min_top1_agreement": ("min_top1_agreement", SHARE),
    "min_top10_overlap": ("min_top10_overlap", SHARE),
    "min_greedy_agreeing_tokens": ("min_greedy_agreeing_tokens", GREEDY_TOKENS),
    "max_footprint_ratio": ("max_footprint_ratio", FOOTPRINT),
}


def noise_bound(measured: dict[str, float], noise: list[dict[str, float]], semantic: list[str]) -> tuple[float, float]:
    """The embedding groups' min_margin: the smallest bound (in steps of 0.01) that random
    embeddings pass, for the groups measured above it together, at most NOISE_RATE of the
    time; returns (bound, the rate measured at it)."""
    for step in range(1, 100):
        bound = step / 100
        claimed = [g for g in semantic if measured[g] >= bound] or semantic
        rate = float(np.mean([all(n[g] >= bound for g in claimed) for n in noise]))
        if rate <= NOISE_RATE:
            return bound, rate
    return 1.0, 0.0
