"""A seeded random model written to a folder shard by shard, never whole in memory.

``random-init`` draws its weights by constructing the architecture after
``torch.manual_seed(seed)``: every ``torch.nn.init`` call of the construction (torch's own
defaults, then transformers' ``_init_weights``) takes its numbers from the one CPU generator,
in construction order. Mistral-7B's shape is 7.24B parameters, 29 GB in float32: more than a
24 GB machine holds, though from_pretrained needs only a folder to quantize from.

So the construction runs twice, cheaply: once on the meta device, where nothing is allocated,
with every in-place init call recorded (function, arguments, the tensor it fills); then the
record is replayed in the same order on real CPU tensors, one at a time. A call whose result
a later call overwrites is still replayed (it moves the generator exactly as it did), on a
scratch tensor that is dropped at once; the call that gives a tensor its final value fills
the tensor that is saved, cast to the folder's dtype and written with its shard. Peak memory
is one shard plus the largest tensor in float32. The weights are bit for bit those of the
model built directly with the same seed (tests/unit/cards/test_random_weights.py).

What this cannot replay (a random factory such as ``torch.randn`` in a constructor, a value
set by a factory and never by an init call, tied or derived weights) raises ``NotReplayable``
before anything is written; the caller then builds the model directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# in-place calls that give the whole tensor a value regardless of what it held
_OVERWRITES = {
    "normal_",
    "uniform_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "trunc_normal_",
    "orthogonal_",
    "sparse_",
    "fill_",
    "zero_",
    "zeros_",
    "ones_",
    "constant_",
    "copy_",
    "eye_",
    "dirac_",
    "random_",
    "bernoulli_",
    "exponential_",
    "geometric_",
    "cauchy_",
    "log_normal_",
}
# of those, the ones that draw nothing from the generator: skipped where their value is not kept
_DRAW_NOTHING = {"fill_", "zero_", "zeros_", "ones_", "constant_", "copy_", "eye_", "dirac_"}
# random factories: on the meta device they draw nothing, on the CPU they would
_RANDOM_FACTORIES = {"randn", "rand", "randint", "randperm", "normal", "bernoulli", "multinomial", "poisson"}
_RANDOM_FACTORIES |= {f"{name}_like" for name in ("randn", "rand", "randint")}
# in-place calls that do not touch values
_IGNORED = {"requires_grad_", "share_memory_", "retain_grad"}

SHARD_BYTES = 1 << 30  # 1 GiB: the peak is about one shard (and its serialisation) over the scratch


class NotReplayable(Exception):
    """The architecture's construction does something the replay cannot reproduce."""


@dataclass
class _Call:
    func: Any
    args: tuple
    kwargs: dict
    target: torch.Tensor
    hf_initialized: bool  # transformers' init functions skip a tensor carrying this flag

    @property
    def name(self) -> str:
        return getattr(self.func, "__name__", "")

    def others(self) -> list[Any]:
        """The tensors the call reads besides its target (a copy_'s source, say)."""
        import torch

        values = [*self.args, *self.kwargs.values()]
        return [v for v in values if isinstance(v, torch.Tensor) and v is not self.target]

    def run(self, scratch: torch.Tensor) -> None:
        """This call again, on ``scratch`` in place of the meta tensor it filled."""
        if self.hf_initialized:
            scratch._is_hf_initialized = True  # type: ignore[attr-defined]
        if "tensor" in self.kwargs:
            self.func(*self.args, **{**self.kwargs, "tensor": scratch})
        else:
            self.func(scratch, *self.args[1:], **self.kwargs)


def _target(args: tuple, kwargs: dict) -> Any:
    import torch

    first = kwargs.get("tensor", args[0] if args else None)
    return first if isinstance(first, torch.Tensor) else None


def _recorder(calls: list[_Call]) -> Any:
    """A TorchFunctionMode that notes every top-level in-place call on a tensor (nested
    calls run with the mode off, so an init function is one entry, replayed as one)."""
    from torch.overrides import TorchFunctionMode

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name in _RANDOM_FACTORIES:
                raise NotReplayable(f"the construction draws torch.{name}(), which the meta device does not replay")
            target = _target(args, kwargs)
            if target is not None and name.endswith("_") and not name.startswith("__") and name not in _IGNORED:
                flag = bool(getattr(target, "_is_hf_initialized", False))
                calls.append(_Call(func, tuple(args), dict(kwargs), target, flag))
            return func(*args, **kwargs)

    return Recorder()


def _construct_on_meta(model_class: Any, config: Any, seed: int) -> tuple[Any, list[_Call]]:
    """The model on the meta device and every in-place init call its construction made,
    in order. transformers skips ``init_weights`` under a meta device (nothing to fill);
    here it runs, on meta tensors, at the very point of construction where it would run
    on the CPU: each ``post_init`` (the inner model's comes before lm_head exists), so the
    calls come in the CPU's order."""
    from unittest import mock

    import torch
    from transformers import modeling_utils

    if not hasattr(modeling_utils, "get_torch_context_manager_or_global_device"):
        raise NotReplayable("this transformers has no get_torch_context_manager_or_global_device to replay against")
    calls: list[_Call] = []
    torch.manual_seed(seed)
    with (
        mock.patch.object(modeling_utils, "get_torch_context_manager_or_global_device", lambda: torch.device("cpu")),
        torch.device("meta"),
        _recorder(calls),
    ):
        model = model_class(config)
    return model, calls


@dataclass
class _Plan:
    """Which call gives each saved tensor its value, and the shards in the order tensors finish."""

    names: dict[int, str]  # id(meta tensor) -> its state-dict name
    first_kept: dict[str, int]  # name -> the call from which its value is kept (its last overwrite)
    last: dict[str, int]  # name -> its last call
    shards: list[list[str]] = field(default_factory=list)


def _plan(model: Any, calls: list[_Call], dtype: torch.dtype, shard_bytes: int) -> _Plan:
    state = model.state_dict(keep_vars=True)
    names: dict[int, str] = {}
    for name, tensor in state.items():
        if id(tensor) in names:
            raise NotReplayable(f"'{name}' is the same tensor as '{names[id(tensor)]}' (tied weights)")
        names[id(tensor)] = name
    plan = _Plan(names, {}, {})
    for index, call in enumerate(calls):
        name = names.get(id(call.target))
        if name is None:
            base = getattr(call.target, "_base", None)
            if base is not None and id(base) in names:
                raise NotReplayable(f"{call.name} fills a view of '{names[id(base)]}'")
            continue
        if call.name in _OVERWRITES:
            plan.first_kept[name] = index
        plan.last[name] = index
    unset = [name for name in state if name not in plan.first_kept]
    if unset:
        raise NotReplayable(f"no init call gives {unset[0]} its value (it is set when the tensor is made)")
    for index, call in enumerate(calls):
        name = names.get(id(call.target))
        reads = call.others()
        kept = name is not None and index >= plan.first_kept[name]
        if reads and (kept or call.name not in _DRAW_NOTHING):
            raise NotReplayable(f"{call.name} on {name or 'a buffer'} reads another tensor")
    size = dtype.itemsize
    current: list[str] = []
    current_bytes = 0
    for name in sorted(state, key=lambda n: plan.last[n]):
        nbytes = state[name].numel() * size
        if current and current_bytes + nbytes > shard_bytes:
            plan.shards.append(current)
            current, current_bytes = [], 0
        current.append(name)
        current_bytes += nbytes
    plan.shards.append(current)
    return plan


def _shard_file(index: int, count: int) -> str:
    return "model.safetensors" if count == 1 else f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def write_random_model(
    model_class: Any, config: Any, seed: int, dtype: torch.dtype, folder: Path, shard_bytes: int = SHARD_BYTES
) -> None:
    """The model ``model_class(config)`` would be after ``torch.manual_seed(seed)``, cast to
    ``dtype``, saved in ``folder`` as save_pretrained saves it (config.json with the dtype and
    the architecture, generation_config.json, safetensors shards and their index)."""
    import torch
    from safetensors.torch import save_file

    model, calls = _construct_on_meta(model_class, config, seed)
    plan = _plan(model, calls, dtype, shard_bytes)
    shard_of = {name: i for i, shard in enumerate(plan.shards) for name in shard}
    pending: list[dict[str, torch.Tensor]] = [{} for _ in plan.shards]
    kept: dict[str, torch.Tensor] = {}
    weight_map: dict[str, str] = {}
    written = 0
    torch.manual_seed(seed)  # the generator as the direct build finds it
    with torch.no_grad():
        for index, call in enumerate(calls):
            name = plan.names.get(id(call.target))
            if name is None or index < plan.first_kept[name]:
                if call.name not in _DRAW_NOTHING:  # a value nobody keeps, drawn for its numbers
                    call.run(torch.empty_like(call.target, device="cpu"))
                continue
            scratch = kept.setdefault(name, torch.empty_like(call.target, device="cpu"))
            call.run(scratch)
            if index != plan.last[name]:
                continue
            shard = shard_of[name]
            pending[shard][name] = kept.pop(name).to(dtype).contiguous()
            # shards finish in order: a tensor's shard is written once its last tensor is drawn
            while written < len(plan.shards) and len(pending[written]) == len(plan.shards[written]):
                file = _shard_file(written, len(plan.shards))
                save_file(pending[written], str(folder / file), metadata={"format": "pt"})
                weight_map.update(dict.fromkeys(pending[written], file))
                pending[written] = {}
                written += 1
    if len(plan.shards) > 1:
        total = sum(model.state_dict()[n].numel() * dtype.itemsize for n in weight_map)
        index_file = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2) + "\n")
    # as save_pretrained writes them
    model.config.dtype = str(dtype).removeprefix("torch.")
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(str(folder))
    if model.can_generate():
        model.generation_config.save_pretrained(str(folder))
