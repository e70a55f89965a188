"""Temperature, top-k and top-p (nucleus) written from their definitions.

Pure functions on a logits tensor of shape (..., vocab): they return a new tensor with
the removed tokens set to -inf and never modify their input. The suite checks that
they keep exactly the tokens transformers' ``TemperatureLogitsWarper``,
``TopKLogitsWarper`` and ``TopPLogitsWarper`` keep, so a change in either shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

NEG_INF = float("-inf")


def _check_min_keep(min_tokens_to_keep: int) -> None:
    if not isinstance(min_tokens_to_keep, int) or isinstance(min_tokens_to_keep, bool) or min_tokens_to_keep < 1:
        raise ValueError(f"min_tokens_to_keep must be an integer >= 1, got {min_tokens_to_keep!r}")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(z / T): T < 1 sharpens the distribution, T > 1 flattens it."""
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the k most likely tokens (and every token tied with the k-th), drop the rest."""
    import torch

    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"top-k needs an integer k >= 1, got {k!r}")
    _check_min_keep(min_tokens_to_keep)
    k = min(max(k, min_tokens_to_keep), logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the nucleus: the most likely tokens whose probabilities sum to at least p
    (Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration").

    Said the other way round, which is how it is computed: a token is outside the
    nucleus when it and every less likely token together hold at most 1 - p of the
    mass. The most likely ``min_tokens_to_keep`` tokens always stay, so a tiny p
    still keeps one token. Among tokens of equal probability the higher id counts as
    more likely (a stable ascending sort), which is also what transformers does.
    """
    import torch

    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 < p <= 1:
        raise ValueError(f"top-p needs 0 < p <= 1, got {p!r}")
    _check_min_keep(min_tokens_to_keep)
    ascending_logits, order = torch.sort(logits, dim=-1, descending=False, stable=True)
    # mass of each token plus every less likely one, (..., vocab) in ascending order
    tail_mass = ascending_logits.softmax(dim=-1).cumsum(dim=-1)
    outside = tail_mass <= (1 - p)
    outside[..., -min_tokens_to_keep:] = False
    remove = torch.zeros_like(outside).scatter(-1, order, outside)
    return logits.masked_fill(remove, NEG_INF)


def kept_ids(filtered_logits: torch.Tensor) -> set[int]:
    """The token ids a filter kept, for a 1-D logits row."""
    import torch

    return set(torch.nonzero(torch.isfinite(filtered_logits)).flatten().tolist())


@dataclass(frozen=True)
class Nucleus:
    """The renormalised distribution top-p (and temperature) leave to sample from."""

    ids: tuple[int, ...]  # most likely first
    probs: tuple[float, ...]

    def as_dict(self) -> dict[str, list]:
        return {"ids": list(self.ids), "probs": list(self.probs)}


def nucleus(logits: torch.Tensor, p: float, temperature: float = 1.0) -> Nucleus:
    """Temperature, then top-p, then renormalise: the distribution sampling draws from."""
    filtered = top_p_filter(apply_temperature(logits.float(), temperature), p)
    probs = filtered.softmax(dim=-1)
    ids = sorted(kept_ids(filtered), key=lambda i: -float(probs[i]))
    return Nucleus(tuple(ids), tuple(float(probs[i]) for i in ids))


def sample(logits: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws (with replacement) from softmax(logits) for a 1-D row; (n,) ids."""
    import torch

    return torch.multinomial(logits.float().softmax(dim=-1), n, replacement=True, generator=generator)
