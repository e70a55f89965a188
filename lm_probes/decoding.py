"""Decoding probes: next-token distribution, temperature, greedy, sampling, beam search.

Every function takes a loaded (tokenizer, model) and plain inputs and returns a frozen
result. Repeated samples are drawn in one batched ``generate`` call
(``num_return_sequences``), never in a Python loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lm_probes.generate_calls import encode_prompt, generate, generate_rows, pad_id
from lm_probes.generation import Generation

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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

    from lm_probes.sampling import apply_temperature

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
                pad_token_id=pad_id(tokenizer),
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
    enc, out, _ = generate_rows(
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


def continuation_logprob(model: PreTrainedModel, prompt_ids: tuple[int, ...], new_ids: tuple[int, ...]) -> float:
    """Sum of log p(new token | everything before it), scored in one forward pass."""
    import torch

    ids = torch.tensor([list(prompt_ids) + list(new_ids)], device=model.device)
    with torch.no_grad():
        logprobs = model(ids).logits[0].float().log_softmax(dim=-1)  # (seq, vocab)
    start = len(prompt_ids)
    return float(sum(logprobs[start - 1 + i, tok] for i, tok in enumerate(new_ids)))


@dataclass(frozen=True)
class PathProbability:
    """How likely one row of a sampled generate() call is to begin with ``new_ids``: per new
    token, the probability generate()'s processors and warpers leave it at that step."""

    new_ids: tuple[int, ...]
    step_probs: tuple[float, ...]

    @property
    def probability(self) -> float:
        return float(np.prod(self.step_probs)) if self.step_probs else 1.0


def path_probabilities(
    model: PreTrainedModel, prompt_ids: tuple[int, ...], paths: list[tuple[int, ...]], call: dict[str, Any]
) -> tuple[PathProbability, ...]:
    """For each path (new token ids after ``prompt_ids``), the probability that a row of
    ``model.generate(prompt, **call)`` starts with exactly those tokens: at each step the
    logits go through the processor list generate() builds for ``call`` (the model's
    generation_config merged in: temperature, top-k, top-p, a repetition penalty, as U2
    reads them), then softmax, and the path's token is read off. All paths in one forward
    pass, right-padded (a causal model's earlier positions never see the padding).

    The forward runs the whole sequence at once, where generate() decodes token by token
    from a cache: the logits agree to float rounding, which moves a probability only where
    a token sits exactly at a warper's cut (a top-p boundary), as between two machines."""
    import torch

    from lm_probes.generation_settings import logits_processors

    if not paths:
        return ()
    start = len(prompt_ids)
    _, processors = logits_processors(model, call, start)
    width = start + max(len(p) for p in paths)
    ids = torch.zeros((len(paths), width), dtype=torch.long)
    mask = torch.zeros((len(paths), width), dtype=torch.long)
    for row, path in enumerate(paths):
        full = list(prompt_ids) + list(path)
        ids[row, : len(full)] = torch.tensor(full)
        mask[row, : len(full)] = 1
    ids, mask = ids.to(model.device), mask.to(model.device)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        results = []
        for row, path in enumerate(paths):
            probs = []
            for step, token in enumerate(path):
                seen = ids[row : row + 1, : start + step]
                scores = processors(seen, logits[row : row + 1, start + step - 1].clone())
                probs.append(float(scores.softmax(dim=-1)[0, token]))
            results.append(PathProbability(tuple(path), tuple(probs)))
    return tuple(results)


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
