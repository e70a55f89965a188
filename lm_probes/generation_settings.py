"""What generate() inherits (U2): the settings a call really runs with, after the
model's generation_config.json is merged with the call's arguments, and the logits
processors generate() builds from them.

The regressions this watches for are merges, not kernels: since transformers 4.50 a
model's own defaults fill in what a call leaves out (huggingface/trl#5783: a
generation_config.json with ``do_sample: true, temperature: 0.6`` made "greedy" calls
sample), and transformers 5 changed library defaults (PR #42702). Both are invisible in a
call's arguments and plain in the merged settings.

The merge and the processor list are read from generate()'s own helpers
(``_prepare_generation_config``, ``_get_logits_processor``): private, but exactly the
code generate() runs, in transformers 4.46 to 5.x. If a release renames them the probe
says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# The settings that decide which tokens generate() picks and when it stops.
SETTINGS = (
    "do_sample",
    "num_beams",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "min_length",
    "min_new_tokens",
    "max_length",
    "max_new_tokens",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)


# generation_config entries that say where a config came from, not how it generates
_BOOKKEEPING = {"transformers_version", "_from_model_config", "_commit_hash"}


class GenerationInternalsMissing(RuntimeError):
    """This transformers has no generate() helper the probe reads."""


@dataclass(frozen=True)
class InheritedSettings:
    call: dict[str, Any]  # the arguments the call passed
    effective: dict[str, Any]  # SETTINGS as generate() resolves them for that call
    processors: tuple[str, ...]  # the logits processors (and warpers) generate() builds, in order
    from_model: dict[str, Any]  # the model's generation_config entries that differ from the library's

    def describe(self) -> str:
        return (
            f"call {self.call} runs with processors {list(self.processors)}; "
            f"from the model's generation_config: {self.from_model}"
        )


def _plain(value: Any) -> Any:
    """JSON-ready: tensors and tuples to lists, numpy scalars to numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def inherited_settings(model: PreTrainedModel, call: dict[str, Any], prompt_length: int = 8) -> InheritedSettings:
    """The settings and processors of ``model.generate(input_ids, **call)`` for a prompt of
    ``prompt_length`` tokens, without generating anything."""
    config, processors = logits_processors(model, call, prompt_length)
    return InheritedSettings(
        call=dict(call),
        effective={name: _plain(getattr(config, name, None)) for name in SETTINGS},
        processors=tuple(type(p).__name__ for p in processors),
        from_model={
            k: _plain(v) for k, v in sorted(model.generation_config.to_diff_dict().items()) if k not in _BOOKKEEPING
        },
    )


def logits_processors(model: PreTrainedModel, call: dict[str, Any], prompt_length: int) -> tuple[Any, Any]:
    """(the merged GenerationConfig, the LogitsProcessorList) that ``model.generate(input_ids,
    **call)`` builds for a prompt of ``prompt_length`` tokens: applied to a step's logits with
    the ids so far, they give the distribution generate() samples that step from."""
    from transformers import LogitsProcessorList

    prepare = getattr(model, "_prepare_generation_config", None)
    build = getattr(model, "_get_logits_processor", None)
    if prepare is None or build is None:
        raise GenerationInternalsMissing(
            "this transformers has no GenerationMixin._prepare_generation_config / _get_logits_processor: "
            "the probe of what generate() inherits needs updating for it"
        )
    config, _ = prepare(None, **call)
    special = getattr(model, "_prepare_special_tokens", None)
    if special is not None:  # as generate() does before building them (4.46-4.52 read the tensors it sets)
        special(config, True, device=model.device)
    processors = build(
        generation_config=config,
        input_ids_seq_length=prompt_length,
        encoder_input_ids=None,
        prefix_allowed_tokens_fn=None,
        logits_processor=LogitsProcessorList(),
        device=str(model.device),
        model_kwargs={},
    )
    return config, processors
