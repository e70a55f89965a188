"""What a generate() call produced, as a frozen result: the ids, the texts and the per-step
scores, with the analyses the decoding checks read from them (margins, runners-up, top-k
per step, whether each step took the highest score)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


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
