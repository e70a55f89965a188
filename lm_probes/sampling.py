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
    more likely (a stable ascending sort). transformers sorts the same way but without
    stability: for a few tied tokens the order comes out the same, for many (thousands
    of equal logits) it may keep other ids of the tie, as many of them.
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
    """Temperature, then top-p, then renormalise: the distribution the own sampler
    draws from (built from the own filters above)."""
    return _renormalised(top_p_filter(apply_temperature(logits.float(), temperature), p))


def transformers_nucleus(logits: torch.Tensor, p: float, temperature: float = 1.0) -> Nucleus:
    """The same distribution as transformers' ``TemperatureLogitsWarper`` then
    ``TopPLogitsWarper`` define it: the reference for the own sampler, computed by
    code the own sampler does not share."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    row = logits.float()[None, :].clone()
    filtered = TopPLogitsWarper(p)(None, TemperatureLogitsWarper(temperature)(None, row))[0]
    return _renormalised(filtered)


def transformers_warped(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Nucleus:
    """The distribution transformers' sampling draws from at these settings: its warpers in
    generate()'s order (temperature, top-k, top-p; a setting that is off is left out, as
    generate() leaves it out), renormalised. The reference a served sampler is fitted to."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    row = logits.float()[None, :].clone()
    warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
    warpers += [TopKLogitsWarper(top_k)] if top_k > 0 else []
    warpers += [TopPLogitsWarper(top_p)] if top_p < 1.0 else []
    for warper in warpers:
        row = warper(None, row)
    return _renormalised(row[0])


def _renormalised(filtered: torch.Tensor) -> Nucleus:
    import torch

    probs = filtered.softmax(dim=-1)  # (vocab,), zero outside the nucleus
    kept = torch.nonzero(torch.isfinite(filtered)).flatten()
    order = torch.argsort(probs[kept], descending=True, stable=True)
    ids = kept[order]
    return Nucleus(tuple(ids.tolist()), tuple(probs[ids].tolist()))


def sample(logits: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws (with replacement) from softmax(logits) for a 1-D row; (n,) ids."""
    import torch

    return torch.multinomial(logits.float().softmax(dim=-1), n, replacement=True, generator=generator)


# --------------------------------------------------------------- checks on samplers


@dataclass(frozen=True)
class KeepSetMismatch:
    """A case where an own filter keeps other tokens than transformers' warper."""

    case: str
    only_ours: tuple[int, ...]
    only_theirs: tuple[int, ...]

    def __str__(self) -> str:
        return (
            f"{self.case}: kept only by ours {list(self.only_ours)[:10]}, "
            f"only by transformers {list(self.only_theirs)[:10]}"
        )


def _transformers_kept(warper, logits: torch.Tensor) -> set[int]:
    return kept_ids(warper(None, logits[None, :].clone())[0])


def top_k_mismatches(
    logits: torch.Tensor, ks: list[int], min_keep: int = 1, top_k=top_k_filter
) -> list[KeepSetMismatch]:
    """Compare an own top-k with ``TopKLogitsWarper`` on a 1-D logits row, for each k."""
    from transformers import TopKLogitsWarper

    out = []
    for k in ks:
        ours = kept_ids(top_k(logits, k, min_tokens_to_keep=min_keep))
        theirs = _transformers_kept(TopKLogitsWarper(k, min_tokens_to_keep=min_keep), logits)
        if ours != theirs:
            out.append(
                KeepSetMismatch(
                    f"k={k}, min_keep={min_keep}", tuple(sorted(ours - theirs)), tuple(sorted(theirs - ours))
                )
            )
    return out


def top_p_mismatches(
    logits: torch.Tensor,
    ps: list[float],
    temperatures: list[float],
    min_keep: int = 1,
    top_p=top_p_filter,
    temperature=apply_temperature,
) -> list[KeepSetMismatch]:
    """Compare temperature then top-p with transformers' warpers, for each (p, T)."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    out = []
    for t in temperatures:
        theirs_scaled = TemperatureLogitsWarper(t)(None, logits[None, :].clone())[0]
        for p in ps:
            ours = kept_ids(top_p(temperature(logits, t), p, min_tokens_to_keep=min_keep))
            theirs = _transformers_kept(TopPLogitsWarper(p, min_tokens_to_keep=min_keep), theirs_scaled)
            if ours != theirs:
                out.append(
                    KeepSetMismatch(
                        f"p={p}, T={t}, min_keep={min_keep}", tuple(sorted(ours - theirs)), tuple(sorted(theirs - ours))
                    )
                )
    return out


@dataclass(frozen=True)
class GoodnessOfFit:
    """Pearson's chi-square test of sampled counts against expected probabilities."""

    statistic: float
    p_value: float
    bins: int
    draws: int

    def rejects(self, alpha: float) -> bool:
        return self.p_value < alpha


def goodness_of_fit(
    drawn: list[int] | torch.Tensor, expected: Nucleus, max_bins: int = 50, min_per_bin: float = 10.0
) -> GoodnessOfFit:
    """Chi-square test of draws against a nucleus.

    Tokens are grouped, most likely first, into at most ``max_bins`` bins of about equal
    expected count (a likely token gets a bin of its own), and never fewer than
    ``min_per_bin`` expected draws per bin: the chi-square approximation is poor below
    about 5, and 10 keeps the real false-positive rate near alpha with a few hundred
    draws over a flat nucleus of ~28000 tokens (tiny-mistral). The bins depend
    on the nucleus only, never on the draws, so the false-positive rate is the alpha
    the caller compares with. A draw outside the nucleus is a certain rejection."""
    from collections import Counter

    from scipy.stats import chisquare

    ids = [int(i) for i in drawn]
    n = len(ids)
    counts = Counter(ids)
    inside = set(expected.ids)
    if any(i not in inside for i in counts):
        return GoodnessOfFit(float("inf"), 0.0, 0, n)
    target = max(min_per_bin, n / max_bins)  # expected draws per bin
    observed: list[float] = []
    wanted: list[float] = []
    bin_obs = bin_exp = 0.0
    for token, prob in zip(expected.ids, expected.probs):
        bin_obs += counts.get(token, 0)
        bin_exp += prob * n
        if bin_exp >= target:
            observed.append(bin_obs)
            wanted.append(bin_exp)
            bin_obs = bin_exp = 0.0
    if bin_exp > 0:  # the remainder joins the last bin, so no bin falls below the minimum
        if wanted:
            observed[-1] += bin_obs
            wanted[-1] += bin_exp
        else:
            observed.append(bin_obs)
            wanted.append(bin_exp)
    if len(observed) < 2:  # a single bin holds every draw: nothing to test
        return GoodnessOfFit(0.0, 1.0, len(observed), n)
    scale = sum(observed) / sum(wanted)  # remove float drift so the totals agree exactly
    result = chisquare(observed, [w * scale for w in wanted])
    return GoodnessOfFit(float(result.statistic), float(result.pvalue), len(observed), n)
