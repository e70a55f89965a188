"""Decoding probes: next-token distribution, temperature, greedy, sampling, beam search.

Every function takes a loaded (tokenizer, model) and plain inputs and returns a frozen
result. Repeated samples are drawn in one batched ``generate`` call
(``num_return_sequences``), never in a Python loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

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


# ------------------------------------------------------------------ next token (D1)


@dataclass(frozen=True)
class NextToken:
    """The model's distribution over the token after ``prompt``."""

    prompt: str
    input_ids: tuple[int, ...]
    logits: Any = field(repr=False, compare=False)  # (vocab,) float32 numpy
    top_ids: tuple[int, ...] = ()
    top_tokens: tuple[str, ...] = ()  # decode([id]) of each
    top_probs: tuple[float, ...] = ()

    @property
    def top1_token(self) -> str:
        return self.top_tokens[0]

    @property
    def top1_prob(self) -> float:
        return self.top_probs[0]

    def labels(self) -> list[str]:
        """'19081: Tokyo' — the article's bar labels."""
        return [f"{i}: {t}" for i, t in zip(self.top_ids, self.top_tokens)]


def next_token(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompt: str, k: int = 10) -> NextToken:
    import torch

    enc = encode_prompt(tokenizer, model, prompt)
    with torch.no_grad():
        logits = model(**enc).logits[0, -1].float()  # (vocab,) of the last position
    probs = logits.softmax(dim=-1)
    top = torch.topk(probs, k)
    ids = tuple(int(i) for i in top.indices)
    return NextToken(
        prompt=prompt,
        input_ids=tuple(enc.input_ids[0].tolist()),
        logits=logits.cpu().numpy(),
        top_ids=ids,
        top_tokens=tuple(tokenizer.decode([i]) for i in ids),
        top_probs=tuple(float(p) for p in top.values),
    )


# ------------------------------------------------------------------ temperature (D2)


@dataclass(frozen=True)
class TemperatureSweep:
    temperatures: tuple[float, ...]
    entropies: tuple[float, ...]  # nats, one per temperature
    top1_ids: tuple[int, ...]
    max_probs: tuple[float, ...]
    top_ids: tuple[int, ...]  # the k ids shown in the panels (most likely at T=1)
    top_probs: tuple[tuple[float, ...], ...]  # per temperature, probs of top_ids


def temperature_sweep(logits: np.ndarray, temperatures: list[float], k: int = 10) -> TemperatureSweep:
    """softmax(z / T) for each T, via the own ``apply_temperature``."""
    import torch

    from probes.sampling import apply_temperature

    z = torch.as_tensor(logits, dtype=torch.float64)  # float64: entropies differ by little at large T
    top_ids = tuple(int(i) for i in torch.topk(z, k).indices)
    entropies, top1, max_probs, panels = [], [], [], []
    for t in temperatures:
        p = apply_temperature(z, t).softmax(dim=-1)
        logp = torch.log(p.clamp_min(1e-300))
        entropies.append(float(-(p * logp).sum()))
        top1.append(int(p.argmax()))
        max_probs.append(float(p.max()))
        panels.append(tuple(float(p[i]) for i in top_ids))
    return TemperatureSweep(
        tuple(temperatures), tuple(entropies), tuple(top1), tuple(max_probs), top_ids, tuple(panels)
    )


# ---------------------------------------------------------------- generation (D3-D9)


@dataclass(frozen=True)
class NotArgmax:
    """A step where a greedy row's token was not the highest raw logit of that step."""

    run: int
    step: int  # index of the new token
    chosen: int
    best: int
    gap: float  # logit(best) - logit(chosen), > 0

    def describe(self, tokenizer: Any = None) -> str:
        name = (lambda i: f"{i} {tokenizer.decode([i])!r}") if tokenizer is not None else str
        return (
            f"run {self.run + 1}, new token {self.step}: chose {name(self.chosen)}, but {name(self.best)} "
            f"scored {self.gap:.4f} higher"
        )


@dataclass(frozen=True)
class Generation:
    """Continuations of one prompt: ids and text of the new tokens, one row per run."""

    prompt: str
    settings: dict[str, Any]
    prompt_ids: tuple[int, ...]
    new_ids: tuple[tuple[int, ...], ...]
    texts: tuple[str, ...]
    # raw logits (before any logits processor) of every row at each new token,
    # (rows, steps, vocab) float32; only when asked for (keep_logits=True): the greedy
    # check and the snapshots' near-tie judgement read them
    step_logits: Any = field(default=None, repr=False, compare=False)

    def step_margins(self) -> tuple[float, ...]:
        """Per new token of row 0: logit of the chosen token minus the best other one."""
        if self.step_logits is None:
            return ()
        margins = []
        for step, token in zip(self.step_logits[0], self.new_ids[0]):
            others = np.delete(step, token)
            margins.append(float(step[token] - others.max()))
        return tuple(margins)

    def step_runners_up(self) -> tuple[int, ...]:
        """Per new token of row 0: the best token other than the one chosen."""
        if self.step_logits is None:
            return ()
        runners_up = []
        for step, token in zip(self.step_logits[0], self.new_ids[0]):
            masked = np.array(step, dtype=np.float64)
            masked[token] = -np.inf
            runners_up.append(int(np.argmax(masked)))
        return tuple(runners_up)

    def step_top_ids(self, k: int) -> tuple[tuple[int, ...], ...]:
        """Per new token of row 0: the k highest-scoring ids of its step, best first (stable
        order at ties): what another machine class's token must be among (vLLM's rule)."""
        if self.step_logits is None:
            return ()
        return tuple(
            tuple(int(i) for i in np.argsort(-np.asarray(step, dtype=np.float64), kind="stable")[:k])
            for step in self.step_logits[0]
        )

    def not_argmax(self) -> tuple[NotArgmax, ...]:
        """Every (row, step) whose token is not the highest raw logit at that step.

        Greedy decoding is exactly this argmax: generate() takes it from these same
        logits, so no tolerance is needed. Where several tokens share the maximum, any
        of them is a greedy choice (see ``ties``)."""
        if self.step_logits is None:
            raise ValueError("this generation kept no logits; generate it with keep_logits=True")
        found = []
        for run, (row, steps) in enumerate(zip(self.new_ids, self.step_logits)):
            for i, token in enumerate(row):
                step = steps[i]
                best = int(np.argmax(step))
                if step[token] < step[best]:
                    found.append(NotArgmax(run, i, int(token), best, float(step[best] - step[token])))
        return tuple(found)

    def ties(self) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
        """(run, step, tied ids) wherever more than one token shares the top logit."""
        if self.step_logits is None:
            return ()
        out = []
        for run, (row, steps) in enumerate(zip(self.new_ids, self.step_logits)):
            for i in range(len(row)):
                top = np.flatnonzero(steps[i] == steps[i].max())
                if len(top) > 1:
                    out.append((run, i, tuple(int(t) for t in top)))
        return tuple(out)

    def groups(self, size: int) -> tuple[Generation, ...]:
        """The rows split into consecutive groups of ``size``: one big sampled call read as
        many independent calls of ``size`` samples (the draft's bounds over many draws)."""
        return tuple(
            replace(self, new_ids=self.new_ids[i : i + size], texts=self.texts[i : i + size], step_logits=None)
            for i in range(0, len(self.new_ids), size)
        )

    @property
    def all_identical(self) -> bool:
        return len(set(self.new_ids)) == 1

    @property
    def distinct(self) -> int:
        return len(set(self.texts))

    def distinct_n(self, n: int = 2) -> float:
        """Share of distinct n-grams of new token ids over all runs (1.0 = no repeats)."""
        grams = [tuple(row[i : i + n]) for row in self.new_ids for i in range(len(row) - n + 1)]
        return len(set(grams)) / len(grams) if grams else 0.0

    def share_containing(self, text: str) -> float:
        return sum(text in t for t in self.texts) / len(self.texts)


def _strip_padding(row: list[int], eos_id: int | None) -> tuple[int, ...]:
    # generate() pads finished rows (pad is often eos): keep up to the first eos
    out: list[int] = []
    for tok in row:
        out.append(tok)
        if eos_id is not None and tok == eos_id:
            break
    return tuple(out)


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
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


def _generate_rows(
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
    enc = _left_padded(rows, _pad_id(tokenizer)).to(model.device)  # one row per prompt: what callers index by prompt
    model_inputs = enc
    gen_kwargs: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens, num_return_sequences=runs, pad_token_id=_pad_id(tokenizer)
    )
    gen_kwargs.update(settings)
    gen_kwargs.setdefault("do_sample", False)
    if runs > 1 and not gen_kwargs["do_sample"] and gen_kwargs.get("num_beams", 1) == 1:
        # generate() refuses num_return_sequences > 1 for greedy: repeat the rows instead,
        # keeping each prompt's runs next to each other as num_return_sequences does.
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
    used = {
        k: v
        for k, v in gen_kwargs.items()
        if v is not None and k not in ("pad_token_id", "output_scores", "output_logits", "return_dict_in_generate")
    }
    used.update(add_special_tokens=add_special_tokens, seed=seed)
    if force_bos:
        used["force_bos"] = True
    return enc, out, used


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
    enc, out, used = _generate_rows(
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
    sharing the prompt's key/value cache.

    generate() with num_return_sequences runs the whole prompt once per row; here the
    prompt but its last token is run once and its cache repeated for every row, so 400
    samples cost 400 one-token steps instead of 400 prompts (SmolLM2: 3.3 s instead of
    8.9 s). generate() still does all the sampling (its warpers, its multinomial): under
    the same seed it draws the same ids as the plain call
    (``test_sharing_the_prompt_cache_draws_the_same_first_tokens``)."""
    import torch

    enc = encode_prompt(tokenizer, model, prompt)
    if enc.input_ids.shape[1] < 2:  # nothing to share
        return generate(tokenizer, model, prompt, max_new_tokens=1, runs=runs, seed=seed, do_sample=True, **settings)
    with torch.no_grad():
        cache = model(
            input_ids=enc.input_ids[:, :-1], attention_mask=enc.attention_mask[:, :-1], use_cache=True
        ).past_key_values
    cache.batch_repeat_interleave(runs)
    rows = enc.__class__({k: v.repeat(runs, 1) for k, v in enc.items()})
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **rows, past_key_values=cache, max_new_tokens=1, do_sample=True, pad_token_id=_pad_id(tokenizer), **settings
        )
    used = {
        "max_new_tokens": 1,
        "num_return_sequences": runs,
        "do_sample": True,
        **settings,
        "seed": seed,
        "shared_prompt_cache": True,
    }
    return _generation(tokenizer, enc, out, 0, runs, prompt, used)


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
    enc, out, used = _generate_rows(
        tokenizer, model, prompts, max_new_tokens=max_new_tokens, runs=runs, seed=seed, **settings
    )
    settings_used = used | {"batched_with": len(prompts)}
    return [_generation(tokenizer, enc, out, i, runs, prompt, settings_used) for i, prompt in enumerate(prompts)]


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
    rows = [_strip_padding(r[width:].tolist(), tokenizer.eos_token_id) for r in block]
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


# -------------------------------------------------------- default decoding (D3)


@dataclass(frozen=True)
class DefaultDecoding:
    """What ``model.generate()`` does when the caller passes no decoding arguments."""

    do_sample: bool
    num_beams: int
    temperature: float | None
    top_p: float | None
    top_k: int | None
    repetition_penalty: float | None
    no_repeat_ngram_size: int | None
    repeatable: bool  # two argument-less calls under different seeds gave the same ids
    not_argmax: tuple[str, ...]  # steps where a call's token was not the top raw logit

    @property
    def greedy(self) -> bool:
        """Plain greedy: no sampling, no beams, and every token the argmax of the model's
        own logits (a repetition penalty or n-gram ban inherited from generation_config.json
        is repeatable but not greedy)."""
        return not self.do_sample and self.num_beams == 1 and self.repeatable and not self.not_argmax

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"greedy": self.greedy}


def default_decoding(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompt: str, max_new_tokens: int = 8
) -> DefaultDecoding:
    """A generation_config that switches sampling on makes every argument-less
    generate() call random, and one that adds a processor (repetition_penalty) makes it
    pick other tokens than the model's most likely: the suite's own calls are explicit,
    users' often are not."""
    import torch

    config = model.generation_config
    enc = encode_prompt(tokenizer, model, prompt)
    runs, violations = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                pad_token_id=_pad_id(tokenizer),
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[0, enc.input_ids.shape[1] :].tolist()
        runs.append(new)
        g = Generation(prompt, {}, (), (tuple(new),), ("",), torch.stack(out.logits, dim=1)[:1].float().cpu().numpy())
        violations += [f"seed {seed}: {v.describe(tokenizer)}" for v in g.not_argmax()]
    return DefaultDecoding(
        do_sample=bool(config.do_sample),
        num_beams=int(config.num_beams or 1),
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        repetition_penalty=getattr(config, "repetition_penalty", None),
        no_repeat_ngram_size=getattr(config, "no_repeat_ngram_size", None),
        repeatable=runs[0] == runs[1],
        not_argmax=tuple(violations),
    )


# ------------------------------------------------------------ batch invariance (D3)


@dataclass(frozen=True)
class BatchComparison:
    """Greedy ids of a prompt alone and inside a left-padded batch."""

    prompt: str
    alone: tuple[int, ...]
    batched: tuple[int, ...]
    first_difference: int | None  # index into the new tokens, None if equal
    detail: str  # tokens and logits at the first difference

    @property
    def identical(self) -> bool:
        return self.first_difference is None


def batch_invariance(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompt: str,
    others: list[str],
    max_new_tokens: int,
) -> BatchComparison:
    alone = generate(tokenizer, model, prompt, max_new_tokens=max_new_tokens).new_ids[0]
    prompts = [*others, prompt]
    row = len(prompts) - 1
    enc, out, _ = _generate_rows(tokenizer, model, prompts, max_new_tokens=max_new_tokens, output_scores=True)
    batched = _strip_padding(out.sequences[row, enc.input_ids.shape[1] :].tolist(), tokenizer.eos_token_id)
    first = next((i for i, (a, b) in enumerate(zip(alone, batched)) if a != b), None)
    if first is None and len(alone) != len(batched):
        first = min(len(alone), len(batched))
    detail = ""
    if first is not None and first < len(out.logits):
        scores = out.logits[first][row].float()  # (vocab,) raw logits of our row at that step
        parts = [
            f"{label} chose {ids[first]} {tokenizer.decode([ids[first]])!r} "
            f"(logit in the batch {float(scores[ids[first]]):.4f})"
            for label, ids in (("alone", alone), ("batched", batched))
            if first < len(ids)
        ]
        detail = f"first difference at new token {first}: " + "; ".join(parts)
    return BatchComparison(prompt, alone, batched, first, detail)


@contextmanager
def higher_precision(model: PreTrainedModel) -> Iterator[str]:
    """The model one step more precise for the block, then back as it was (lossless both
    ways): float16/bfloat16 weights and buffers to float32, float32 to float64, and a
    bitsandbytes 4-bit layer's compute dtype to float32 (its packed weights stay). Yields
    the precision name, for messages."""
    import torch

    def target(dtype: torch.dtype) -> torch.dtype:
        return torch.float64 if dtype == torch.float32 else torch.float32

    kept_compute = {}
    for module in model.modules():
        if type(module).__name__ == "Linear4bit":
            kept_compute[module] = module.compute_dtype
            module.compute_dtype = torch.float32
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    tensors = [t for t in tensors if type(t).__name__ != "Params4bit"]
    kept = [(t, t.data) for t in tensors]
    precision = str(target(tensors[0].dtype)).removeprefix("torch.") if tensors else "float32"
    try:
        for t, data in kept:
            t.data = data.to(target(data.dtype))
        yield precision
    finally:
        for t, data in kept:
            t.data = data
        for module, dtype in kept_compute.items():
            module.compute_dtype = dtype


@dataclass(frozen=True)
class BatchDiagnosis:
    """U5: the batch comparison (D3) and, when the prompt's greedy ids differ inside the
    batch, the same comparison one precision step up. If the difference goes away there it
    is rounding (padding changes the order of float sums: transformers#26869, #28732,
    lm-evaluation-harness#3357); if it stays, the batch computes something else (a padding
    mask not applied, positions shifted)."""

    comparison: BatchComparison
    precise: BatchComparison | None = None  # None when there was nothing to diagnose
    precision: str | None = None

    @property
    def verdict(self) -> str:
        if self.comparison.identical:
            return "none"
        assert self.precise is not None
        return "rounding" if self.precise.identical else "real"

    def describe(self) -> str:
        if self.comparison.identical:
            return "the prompt's greedy ids are the same alone and in the batch"
        assert self.precise is not None
        again = "agree" if self.precise.identical else f"still differ ({self.precise.detail})"
        return f"{self.comparison.detail}; in {self.precision}, alone and batched {again}: {self.verdict}"


def diagnose_batch_invariance(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    prompt: str,
    others: list[str],
    max_new_tokens: int,
) -> BatchDiagnosis:
    comparison = batch_invariance(tokenizer, model, prompt, others, max_new_tokens)
    if comparison.identical:
        return BatchDiagnosis(comparison)
    with higher_precision(model) as precision:
        precise = batch_invariance(tokenizer, model, prompt, others, max_new_tokens)
    return BatchDiagnosis(comparison, precise, precision)


# ---------------------------------------------------------------- beam search (D9)


@dataclass(frozen=True)
class BeamSearch:
    """The ``num_beams`` finished hypotheses of one beam search, best first."""

    prompt_ids: tuple[int, ...]
    hypotheses: tuple[tuple[int, ...], ...]
    texts: tuple[str, ...]
    scores: tuple[float, ...]  # generate()'s sequence scores (length_penalty 0: summed log p)

    @property
    def best(self) -> tuple[int, ...]:
        return self.hypotheses[0]

    @property
    def distinct_hypotheses(self) -> int:
        """num_beams for a real beam search; 1 where the beams collapsed into one
        sequence (a search that silently ran greedy)."""
        return len(set(self.hypotheses))


def beam_search(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompt: str, *, num_beams: int, max_new_tokens: int
) -> BeamSearch:
    """Beam search of exactly ``max_new_tokens`` tokens with no length normalisation, so
    its sequence log-probability compares like for like with greedy's; every beam is
    returned (num_return_sequences = num_beams) to show that beams were used."""
    enc, out, _ = _generate_rows(
        tokenizer,
        model,
        [prompt],
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        num_beams=num_beams,
        runs=num_beams,
        length_penalty=0.0,
        early_stopping=True,
        output_scores=True,
    )
    width = enc.input_ids.shape[1]
    rows = tuple(tuple(r[width:].tolist()) for r in out.sequences)
    scores = getattr(out, "sequences_scores", None)
    return BeamSearch(
        prompt_ids=tuple(enc.input_ids[0].tolist()),
        hypotheses=rows,
        texts=tuple(tokenizer.decode(list(r), skip_special_tokens=True) for r in rows),
        scores=tuple(float(x) for x in scores) if scores is not None else (),
    )


# ----------------------------------------------------------- sequence scores (D9)


def continuation_logprob(model: PreTrainedModel, prompt_ids: tuple[int, ...], new_ids: tuple[int, ...]) -> float:
    """Sum of log p(new token | everything before it), scored in one forward pass."""
    import torch

    ids = torch.tensor([list(prompt_ids) + list(new_ids)], device=model.device)
    with torch.no_grad():
        logprobs = model(ids).logits[0].float().log_softmax(dim=-1)  # (seq, vocab)
    start = len(prompt_ids)
    return float(sum(logprobs[start - 1 + i, tok] for i, tok in enumerate(new_ids)))


@dataclass(frozen=True)
class BeamAgainstGreedy:
    """D9: a beam search and greedy decoding of the same length on the same prompt, each
    scored by the model's summed log-probability of its new tokens."""

    beam: BeamSearch
    greedy: Generation
    beam_logprob: float
    greedy_logprob: float

    @property
    def gain(self) -> float:
        """Nats by which beam's best sequence beats greedy's (0 for a search that ran greedy)."""
        return self.beam_logprob - self.greedy_logprob


def beam_against_greedy(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, prompt: str, *, num_beams: int, max_new_tokens: int
) -> BeamAgainstGreedy:
    beam = beam_search(tokenizer, model, prompt, num_beams=num_beams, max_new_tokens=max_new_tokens)
    # min_new_tokens: greedy as long as the beams, so the two log-probabilities compare
    greedy = generate(tokenizer, model, prompt, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)
    return BeamAgainstGreedy(
        beam=beam,
        greedy=greedy,
        beam_logprob=continuation_logprob(model, beam.prompt_ids, beam.best),
        greedy_logprob=continuation_logprob(model, greedy.prompt_ids, greedy.new_ids[0]),
    )


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
    enc = _left_padded(rows, _pad_id(tokenizer)).to(model.device)
    positions = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(**enc, position_ids=positions).logits[:, -1].float()
    return logits.cpu().numpy()
