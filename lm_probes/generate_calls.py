"""The generate() calls every probe makes: prompts encoded and checked, one batched
``generate`` per set of samples (``num_return_sequences``, never a Python loop), greedy runs
repeated as separate calls, and next-token logits for many prompts in one forward pass.
Returns ``Generation`` results (lm_probes/generation.py). (Named lm_probes/engine.py before issue 36:
"engine" now means a serving engine only, lm_probes/served/engines.py.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lm_probes import prompt_cache
from lm_probes.generation import Generation

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _check_prompt(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompt: str, ids: list[int]) -> None:
    if not prompt.strip():
        raise ValueError("the prompt is empty; give the text the model should continue")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and len(ids) >= limit:
        raise ValueError(f"the prompt is {len(ids)} tokens, but the model's context is {limit}; shorten the prompt")


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompt: str, add_special_tokens: bool = True
):
    """(1, seq) input ids and attention mask on the model's device, after checks."""
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens)
    _check_prompt(tokenizer, model, prompt, enc.input_ids[0].tolist())
    return enc.to(model.device)


def strip_padding(row: list[int], eos_id: int | None) -> tuple[int, ...]:
    # generate() pads finished rows (pad is often eos): keep up to the first eos
    out: list[int] = []
    for tok in row:
        out.append(tok)
        if eos_id is not None and tok == eos_id:
            break
    return tuple(out)


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase, prompt: str, add_special_tokens: bool = True, force_bos: bool = False
) -> list[int]:
    """The ids generate() is given for ``prompt``.

    ``force_bos`` puts the tokenizer's BOS token first even where the tokenizer adds
    none by itself (SmolLM2), so a "with BOS" run really has one; a tokenizer without
    a BOS token is an error, since then there is nothing to compare."""
    ids = tokenizer.encode(prompt, add_special_tokens=add_special_tokens)
    if force_bos:
        bos = tokenizer.bos_token_id
        if bos is None:
            raise ValueError("force_bos: this tokenizer has no BOS token")
        if not ids or ids[0] != bos:
            ids = [bos, *ids]
    return ids


def generate_rows(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompts: list[str],
    *,
    max_new_tokens: int,
    runs: int = 1,
    add_special_tokens: bool = True,
    force_bos: bool = False,
    seed: int | None = None,
    output_scores: bool = False,
    **settings: Any,
) -> tuple[Any, Any, dict[str, Any]]:
    """One ``generate`` call over left-padded prompts; (encoding, output, settings used)."""
    import torch

    rows = []
    for prompt in prompts:
        ids = prompt_ids(tokenizer, prompt, add_special_tokens, force_bos)
        _check_prompt(tokenizer, model, prompt, ids)
        rows.append(ids)
    enc = _left_padded(rows, pad_id(tokenizer)).to(model.device)  # one row per prompt: what callers index by prompt
    model_inputs = enc
    gen_kwargs: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens, num_return_sequences=runs, pad_token_id=pad_id(tokenizer)
    )
    gen_kwargs.update(settings)
    gen_kwargs.setdefault("do_sample", False)
    if runs > 1 and not gen_kwargs["do_sample"] and gen_kwargs.get("num_beams", 1) == 1:
        # generate() refuses num_return_sequences > 1 for greedy: repeat the rows instead,
        # keeping each prompt's runs next to each other as num_return_sequences does.
        model_inputs = enc.__class__({k: v.repeat_interleave(runs, dim=0) for k, v in enc.items()})
        gen_kwargs["num_return_sequences"] = 1
    share = gen_kwargs.pop("share_prompt_cache", True)  # False: the plain call, for the test that they agree
    group = gen_kwargs.pop("until_groups_differ", None)
    if group:
        gen_kwargs["stopping_criteria"] = _until_groups_differ(group, enc.input_ids.shape[1])
    shared = (
        share
        and runs > 1
        and gen_kwargs["do_sample"]
        and gen_kwargs.get("num_beams", 1) == 1
        and enc.input_ids.shape[1] > 1
        and prompt_cache.uses_cache(model, gen_kwargs)
    )
    if shared:
        # Samples of one prompt share its prefill: the prompt (but its last token) runs once
        # per prompt and its key/value cache is repeated for every run, so n samples cost n
        # decodes, not n prompts too. Rows stay in num_return_sequences' order, and
        # generate() still samples (its warpers, its multinomial), so under the same seed
        # the draws are the plain call's (tests/unit/probe/test_decoding_probe.py).
        gen_kwargs["past_key_values"] = prompt_cache.shared_prefill(model, enc, runs)
        model_inputs = enc.__class__({k: v.repeat_interleave(runs, dim=0) for k, v in enc.items()})
        gen_kwargs["num_return_sequences"] = 1
    if not gen_kwargs["do_sample"]:
        # Explicit, so a model's generation_config cannot switch sampling on behind our back.
        # (Other inherited settings, e.g. a repetition_penalty, are left as a user's call
        # would get them: the greedy check then shows that the choice was not the argmax.)
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    if output_scores:
        gen_kwargs.update(output_scores=True, output_logits=True, return_dict_in_generate=True)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**model_inputs, **gen_kwargs)
    left_out = ("pad_token_id", "output_scores", "output_logits", "return_dict_in_generate", "past_key_values")
    used = {k: v for k, v in gen_kwargs.items() if v is not None and k not in left_out}
    used.update(add_special_tokens=add_special_tokens, seed=seed)
    if shared:
        used.update(num_return_sequences=runs, shared_prompt_cache=True)
    if group:
        used["until_groups_differ"] = group
    if force_bos:
        used["force_bos"] = True
    return enc, out, used


def _until_groups_differ(size: int, prompt_width: int) -> Any:
    """A stopping criterion that ends the whole call as soon as, in every group of ``size``
    consecutive rows, no two rows have generated the same tokens so far. Rows that differ
    now differ at any length, so each group's count of distinct continuations is already
    its largest: what the draft's distinct-count bounds read needs no more tokens, and the
    tokens drawn until then are the full call's (the same seed, the same steps).
    Continuations are told apart by their ids; two different id sequences that decode to
    one text would count as two (the suite counts texts), which needs one to re-spell the
    other token for token to the end."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class UntilGroupsDiffer(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            rows = [tuple(r) for r in input_ids[:, prompt_width:].tolist()]
            differ = all(len(set(rows[i : i + size])) == len(rows[i : i + size]) for i in range(0, len(rows), size))
            return torch.full((input_ids.shape[0],), differ, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([UntilGroupsDiffer()])


def _left_padded(rows: list[list[int]], pad_id: int):
    """Input ids and attention mask with every row left-padded to the longest: a
    decoder-only model continues from the right end. (Built by hand so tokenizers
    without a pad token, like Mistral's, are left unchanged.)"""
    import torch
    from transformers import BatchEncoding

    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + r for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return BatchEncoding({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)})


def generate(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompt: str,
    *,
    max_new_tokens: int,
    runs: int = 1,
    add_special_tokens: bool = True,
    force_bos: bool = False,
    seed: int | None = None,
    keep_logits: bool = False,
    **settings: Any,
) -> Generation:
    """``runs`` continuations of one prompt in one ``generate`` call (num_return_sequences)."""
    enc, out, used = generate_rows(
        tokenizer,
        model,
        [prompt],
        max_new_tokens=max_new_tokens,
        runs=runs,
        add_special_tokens=add_special_tokens,
        force_bos=force_bos,
        seed=seed,
        output_scores=keep_logits,
        **settings,
    )
    step_logits = None
    if keep_logits:
        import torch

        step_logits = torch.stack(out.logits, dim=1).float().cpu().numpy()  # (rows, steps, vocab)
        out = out.sequences
    return _generation(tokenizer, enc, out, 0, runs, prompt, used, step_logits)


def sample_first_tokens(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompt: str,
    *,
    runs: int,
    seed: int,
    **settings: Any,
) -> Generation:
    """``runs`` sampled first tokens of one prompt in one ``generate`` call, the rows
    sharing the prompt's key/value cache (as every sampled call with several runs does,
    ``generate_rows``): 400 samples cost 400 one-token steps instead of 400 prompts
    (SmolLM2: 3.3 s instead of 8.9 s)."""
    return generate(tokenizer, model, prompt, max_new_tokens=1, runs=runs, seed=seed, do_sample=True, **settings)


def generate_many(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompts: list[str],
    *,
    max_new_tokens: int,
    runs: int = 1,
    seed: int | None = None,
    **settings: Any,
) -> list[Generation]:
    """Several prompts (each ``runs`` times) in one left-padded ``generate`` call."""
    enc, out, used = generate_rows(
        tokenizer, model, prompts, max_new_tokens=max_new_tokens, runs=runs, seed=seed, **settings
    )
    settings_used = used | {"batched_with": len(prompts)}
    return [_generation(tokenizer, enc, out, i, runs, prompt, settings_used) for i, prompt in enumerate(prompts)]


def greedy_unstripped(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompts: list[str], *, max_new_tokens: int, top_k: int
) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, ...], ...]]]:
    """Several prompts answered greedily in one left-padded ``generate`` call with the
    model's own stop ids, each row as generate() returned it: (prompt ids, every new token
    with the padding after a finished row kept, the ``top_k`` highest-scoring ids of each
    step). Kept unstripped so that where generate() stopped can be read, not assumed
    (lm_probes/stopping.py)."""
    import torch

    enc, out, _ = generate_rows(tokenizer, model, prompts, max_new_tokens=max_new_tokens, output_scores=True)
    width = enc.input_ids.shape[1]
    logits = torch.stack(out.logits, dim=1).float()  # (rows, steps, vocab)
    top = torch.topk(logits, top_k, dim=-1).indices.tolist()
    rows = []
    for i, row in enumerate(out.sequences):
        mask = enc.attention_mask[i].bool()
        prompt = tuple(enc.input_ids[i][mask].tolist())
        rows.append((prompt, tuple(row[width:].tolist()), tuple(tuple(step) for step in top[i])))
    return rows


def _generation(
    tokenizer: PreTrainedTokenizerBase,
    enc: Any,
    sequences: Any,
    p_index: int,
    runs: int,
    prompt: str,
    settings: dict[str, Any],
    step_logits: Any = None,
) -> Generation:
    """The ``Generation`` of prompt ``p_index`` from a left-padded ``generate`` output:
    its ``runs`` rows (grouped per prompt, as num_return_sequences gives them), cut after
    the prompt and at the first eos, and decoded."""
    width = enc.input_ids.shape[1]
    block = sequences[p_index * runs : (p_index + 1) * runs]
    rows = [strip_padding(r[width:].tolist(), tokenizer.eos_token_id) for r in block]
    mask = enc.attention_mask[p_index].bool()  # the prompt's own ids, without the left padding
    return Generation(
        prompt=prompt,
        settings=settings,
        prompt_ids=tuple(enc.input_ids[p_index][mask].tolist()),
        new_ids=tuple(rows),
        texts=tuple(tokenizer.decode(list(r), skip_special_tokens=True) for r in rows),
        step_logits=step_logits,
    )


def greedy_runs(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompt: str,
    *,
    runs: int,
    max_new_tokens: int,
    add_special_tokens: bool = True,
    force_bos: bool = False,
    first: Generation | None = None,
) -> Generation:
    """``runs`` separate greedy calls, each keeping its logits: determinism across calls
    is what is in question (a batch of identical rows would hide a run-to-run
    difference), and every chosen token can be checked to be the argmax. ``first``: a
    call already made with these same arguments (a run 1 that other checks read alone),
    which then counts as run 1."""

    def call() -> Generation:
        return generate(
            tokenizer,
            model,
            prompt,
            max_new_tokens=max_new_tokens,
            add_special_tokens=add_special_tokens,
            force_bos=force_bos,
            keep_logits=True,
        )

    single = [first if first is not None else call()] + [call() for _ in range(runs - 1)]
    return _separate_runs(prompt, single)


def _separate_runs(prompt: str, calls: list[Generation]) -> Generation:
    """One Generation whose rows are the first row of each separate call, with their
    logits stacked (NaN after a run that stopped early) when every call kept them."""
    first = calls[0]
    logits = None
    if all(g.step_logits is not None for g in calls):
        steps = max(g.step_logits.shape[1] for g in calls)
        logits = np.full((len(calls), steps, first.step_logits.shape[2]), np.nan, dtype=np.float32)
        for i, g in enumerate(calls):
            logits[i, : g.step_logits.shape[1]] = g.step_logits[0]
    return Generation(
        prompt=prompt,
        settings=first.settings | {"separate_calls": len(calls)},
        prompt_ids=first.prompt_ids,
        new_ids=tuple(g.new_ids[0] for g in calls),
        texts=tuple(g.texts[0] for g in calls),
        step_logits=logits,
    )


def greedy_runs_many(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompts: list[str],
    *,
    runs: int,
    max_new_tokens: int,
) -> list[Generation]:
    """Several prompts, greedy, ``runs`` separate ``generate`` calls (each one batch over
    the prompts): run-to-run determinism is tested across calls, not across copies of a
    row inside one batch."""
    calls = [generate_many(tokenizer, model, prompts, max_new_tokens=max_new_tokens) for _ in range(runs)]
    return [_separate_runs(prompt, [call[i] for call in calls]) for i, prompt in enumerate(prompts)]


def next_token_logits_many(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompts: list[str]
) -> np.ndarray:
    """(prompts, vocab) float32 next-token logits of several prompts in one left-padded
    forward pass: a 4-bit model on CPU pays its per-layer dequantization once, not per
    prompt. Position ids follow the attention mask, so a padded row sees the positions
    it would see alone."""
    import torch

    rows = [prompt_ids(tokenizer, p) for p in prompts]
    for prompt, ids in zip(prompts, rows):
        _check_prompt(tokenizer, model, prompt, ids)
    enc = _left_padded(rows, pad_id(tokenizer)).to(model.device)
    positions = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(**enc, position_ids=positions).logits[:, -1].float()
    return logits.cpu().numpy()
