"""The shared prompt prefill of sampled calls (generate_calls.generate_rows): each prompt run once,
its key/value cache repeated for every sampled row, so n samples cost n decodes and one prompt.
Used only where generate() itself decodes with a cache (``uses_cache``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def uses_cache(model: PreTrainedModel, gen_kwargs: dict[str, Any]) -> bool:
    """Whether generate() will decode with a key/value cache: the call's use_cache, else the
    model's generation_config's (a checkpoint saved from training with gradient checkpointing
    says false). Without one, generate() feeds every step the whole sequence, and a prompt cache
    handed to it would be read as well: the prompt twice (issue 45). So the shared prefill is
    only used where generate() itself would use a cache; elsewhere the plain call runs."""
    if "use_cache" in gen_kwargs:
        return bool(gen_kwargs["use_cache"])
    config = getattr(model, "generation_config", None)
    return bool(getattr(config, "use_cache", True))


def shared_prefill(model: PreTrainedModel, enc: Any, runs: int) -> Any:
    """The key/value cache of every prompt row but its last token, computed once and
    repeated ``runs`` times per row (left padding kept: positions follow the mask)."""
    import torch

    mask = enc.attention_mask[:, :-1]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        cache = model(
            input_ids=enc.input_ids[:, :-1], attention_mask=mask, position_ids=positions, use_cache=True
        ).past_key_values
    if isinstance(cache, tuple):  # transformers < 4.48 returns the legacy tuples unless given a Cache
        from transformers import DynamicCache

        cache = DynamicCache.from_legacy_cache(cache)
    cache.batch_repeat_interleave(runs)
    return cache
