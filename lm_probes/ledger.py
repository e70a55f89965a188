"""The ledger: what model work each probe did, per subject, in this process.

Every model a subject loads gets a forward pre-hook (``LEDGER.watch``, from
lm_probes/subjects/subject.py) that reads each forward's shape: rows (the batch) and tokens
(the sequence length of ``input_ids`` or ``inputs_embeds``). A forward is

- a **prefill** when it runs a prompt: its sequence is longer than one token, or it starts
  a key/value cache (generate() hands every call a fresh cache) or uses none (a plain
  ``model(**enc)``). A prefill that starts a generate() call also yields each row's first
  new token (measured: generate of 3 rows x 4 new tokens is 1 prefill of 3 rows and 3
  one-token steps of 3 rows, 12 new tokens);
- a **decode step** when it feeds one token per row into the cache the previous forward of
  that model used; each row is one new token.

The work goes to the probe running: ``LEDGER.probe(label, subject)`` is entered by
lm_probes/subjects/memo.py around each result's compute (the label is the result's key, or its
first element: "sampling", "creative", "beam", ...) and by the plugin around each test (the
test's name, for work a test does outside the results). Nested probes: the innermost label
gets the forwards, and each label's seconds are its own (an outer probe's seconds leave out
the inner ones'), so every forward and every second is counted once and the labels add up
to the whole run. Work outside any probe goes to ``NO_PROBE``.

Nothing here waits for a device: shapes are metadata, the cache is compared by identity,
times are ``time.monotonic()``. The ledger is per process (each pytest-xdist worker has its
own); a benchmark reads it in the process that ran the probes.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

NO_PROBE = "(no probe)"


@dataclass
class Work:
    """The model work of one label on one subject."""

    prefills: int = 0  # forwards that ran a prompt: one per generate() call, or a plain forward
    prefill_rows: int = 0
    prompt_tokens: int = 0  # rows x sequence length, summed over the prefills (padding included)
    generating_prefills: int = 0  # prefills that started a generate() call (each row's first new token)
    generating_rows: int = 0  # rows of the generating prefills
    decode_steps: int = 0  # one-token forwards continuing a cache
    decode_rows: int = 0  # rows x decode steps
    forwards: int = 0
    computes: int = 0  # times a probe of this label ran (a result computed, a test)
    seconds: float = 0.0  # wall time of those runs, less the nested probes' own

    @property
    def new_tokens(self) -> int:
        """Tokens generated: the first of each row (from its prefill) plus one per row and decode step."""
        return self.generating_rows + self.decode_rows

    @property
    def rows_per_call(self) -> float:
        """Rows per generate() call; for a label with none, per plain forward."""
        if self.generating_prefills:
            return self.generating_rows / self.generating_prefills
        return self.prefill_rows / self.prefills if self.prefills else 0.0

    def add(self, other: Work) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def minus(self, before: Work) -> Work:
        return Work(**{name: getattr(self, name) - getattr(before, name) for name in _COUNTS})

    def copy(self) -> Work:
        return dataclasses.replace(self)


_COUNTS = tuple(f.name for f in dataclasses.fields(Work))


@dataclass
class Frame:
    """One probe running: what the progress reports read while it runs."""

    label: str
    subject: str | None
    started: float
    parent: Frame | None
    nested_seconds: float = 0.0  # the wall time of probes run inside this one
    new_tokens: int = 0  # generated while this frame was the innermost
    forwards: int = 0

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started


# A forward seen: the subject whose model ran, the frame it was counted to (None: no probe),
# the rows and the new tokens it yielded. Called on every forward: keep listeners cheap.
Listener = Callable[[str, "Frame | None", int, int], None]


def label_of(key: Any) -> str:
    """A result key's label: the key if it is a string, else its first element."""
    if isinstance(key, str):
        return key
    if isinstance(key, tuple) and key:
        return str(key[0])
    return str(key)


class Ledger:
    def __init__(self) -> None:
        self._work: dict[tuple[str, str], Work] = {}
        self._frame: contextvars.ContextVar[Frame | None] = contextvars.ContextVar("lm_probes_frame", default=None)
        self._listeners: list[Listener] = []
        # per watched model: a weak reference to the cache its last forward used, so a
        # decode step is told from a prefill without reading any tensor
        self._last_cache: dict[int, Any] = {}

    # ------------------------------------------------------------------ recording

    def watch(self, model: Any, subject: str) -> None:
        """Count ``model``'s forwards for ``subject`` from now on (once per model object)."""
        if getattr(model, "_lm_probes_ledger", None) is self:
            return
        model_id = id(model)

        def before_forward(_module: Any, args: tuple, kwargs: dict) -> None:
            self._record(model_id, subject, args, kwargs)

        model.register_forward_pre_hook(before_forward, with_kwargs=True)
        model._lm_probes_ledger = self

    def _record(self, model_id: int, subject: str, args: tuple, kwargs: dict) -> None:
        tokens = kwargs.get("input_ids")
        if tokens is None:
            tokens = kwargs.get("inputs_embeds")
        if tokens is None and args:
            tokens = args[0]
        shape = getattr(tokens, "shape", None)
        if shape is None or len(shape) < 2:
            return  # not a causal LM's forward of token rows (nothing to count)
        rows, length = int(shape[0]), int(shape[1])
        cache = kwargs.get("past_key_values")
        last = self._last_cache.get(model_id)
        continues = cache is not None and last is not None and last() is cache
        self._last_cache[model_id] = _weak(cache)
        frame = self._frame.get()
        work = self._entry(subject, frame.label if frame else NO_PROBE)
        work.forwards += 1
        if continues and length == 1:
            work.decode_steps += 1
            work.decode_rows += rows
            new = rows
        else:
            work.prefills += 1
            work.prefill_rows += rows
            work.prompt_tokens += rows * length
            new = 0
            if cache is not None:  # generate() passes its cache from the first forward on
                work.generating_prefills += 1
                work.generating_rows += rows
                new = rows
        if frame is not None:
            frame.forwards += 1
            frame.new_tokens += new
        for listener in list(self._listeners):
            try:
                listener(subject, frame, rows, new)
            except Exception as exc:  # a display must never fail the probe it reports on
                self._listeners.remove(listener)
                warnings.warn(f"lm-probes: progress display stopped: {type(exc).__name__}: {exc}", stacklevel=2)

    def _entry(self, subject: str, label: str) -> Work:
        key = (subject, label)
        work = self._work.get(key)
        if work is None:
            work = self._work[key] = Work()
        return work

    @contextmanager
    def probe(self, label: str, subject: str | None = None) -> Iterator[Frame]:
        """Count the forwards inside the block to ``label``, and its wall time (less nested probes')."""
        parent = self._frame.get()
        frame = Frame(label, subject if subject is not None else parent.subject if parent else None, 0.0, parent)
        token = self._frame.set(frame)
        frame.started = time.monotonic()
        try:
            yield frame
        finally:
            elapsed = frame.elapsed()
            self._frame.reset(token)
            if parent is not None:
                parent.nested_seconds += elapsed
            work = self._entry(frame.subject or NO_PROBE, label)
            work.computes += 1
            work.seconds += elapsed - frame.nested_seconds

    def current(self) -> Frame | None:
        return self._frame.get()

    # ------------------------------------------------------------------- listeners

    @contextmanager
    def listening(self, listener: Listener) -> Iterator[None]:
        self._listeners.append(listener)
        try:
            yield
        finally:
            if listener in self._listeners:  # (one that failed is gone already)
                self._listeners.remove(listener)

    # --------------------------------------------------------------------- reading

    def snapshot(self) -> dict[tuple[str, str], Work]:
        """A copy of every (subject, label)'s work so far: ``since`` gives what came after."""
        return {key: work.copy() for key, work in self._work.items()}

    def since(self, before: dict[tuple[str, str], Work], subject: str | None = None) -> dict[str, Work]:
        """Per label, the work done since ``before`` (of ``subject``'s model only, if given);
        labels with nothing done left out."""
        done: dict[str, Work] = {}
        for (name, label), work in self._work.items():
            if subject is not None and name != subject:
                continue
            delta = work.minus(before.get((name, label), Work()))
            if delta.forwards or delta.computes:
                done.setdefault(label, Work()).add(delta)
        return done

    def reset(self) -> None:
        self._work.clear()


def _weak(cache: Any) -> Any:
    if cache is None:
        return None
    try:
        return weakref.ref(cache)
    except TypeError:  # a cache that cannot be referenced weakly: kept (until the next forward)
        return lambda: cache


LEDGER = Ledger()


# ------------------------------------------------------------ the performance model


@dataclass(frozen=True)
class Machine:
    """What bounds decoding here: the memory bandwidth measured, on the threads in use."""

    bandwidth_bytes_per_s: float
    threads: int


def measure_bandwidth(gigabytes: float = 1.0, repeats: int = 5) -> Machine:
    """The best of ``repeats`` timed ``torch.sum`` over a float32 tensor of ``gigabytes``: a
    read-only sweep of memory as a decode step reads its weights (the best, as other work on
    the machine only slows a run down)."""
    import torch

    data = torch.ones(int(gigabytes * 2**30) // 4, dtype=torch.float32)
    data.sum()  # the pages are touched before timing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return Machine(data.numel() * 4 / best, torch.get_num_threads())


def weight_bytes(model: Any) -> int:
    """Bytes a decode step reads: every parameter and buffer once (a tied embedding counted once)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


@dataclass(frozen=True)
class CostRow:
    """One label's figures in the performance model's table."""

    label: str
    work: Work
    limit_tokens_per_s: float  # decode at this label's rows per call, if bound by reading the weights

    @property
    def tokens_per_s(self) -> float:
        return self.work.new_tokens / self.work.seconds if self.work.seconds > 0 else 0.0

    @property
    def share_of_limit(self) -> float:
        return self.tokens_per_s / self.limit_tokens_per_s if self.limit_tokens_per_s else 0.0

    def cells(self) -> list[Any]:
        w = self.work
        return [
            self.label,
            w.generating_prefills,
            round(w.rows_per_call, 1),
            w.prompt_tokens,
            w.new_tokens,
            round(w.seconds, 2),
            round(self.tokens_per_s, 1),
            round(self.limit_tokens_per_s, 1),
            f"{self.share_of_limit:.0%}",
        ]


COST_HEADERS = [
    "probe",
    "generate calls",
    "rows per call",
    "prompt tokens",
    "new tokens",
    "seconds",
    "tokens/s",
    "bandwidth limit tokens/s",
    "share of limit",
]

TOTAL = "all probes (the whole run)"


def cost_rows(work: dict[str, Work], weights: int, machine: Machine) -> list[CostRow]:
    """Per label, by seconds spent (largest first), then the sum. The limit: a decode step of
    ``rows`` rows reads the weights once, so at best it takes weights / bandwidth and yields
    ``rows`` tokens (memory-bound: true while a step's compute is small, which a batch of
    a few rows on a CPU still is)."""
    per_step = weights / machine.bandwidth_bytes_per_s

    def row(label: str, w: Work) -> CostRow:
        return CostRow(label, w, max(w.rows_per_call, 1.0) / per_step)

    rows = [row(label, w) for label, w in sorted(work.items(), key=lambda item: -item[1].seconds)]
    total = Work()
    for w in work.values():
        total.add(w)
    # the sum's limit: its tokens over the time each label's tokens take at that label's limit
    # (a mean of rows per call would let D5's 400 one-step rows stand for every call)
    at_limit = sum(r.work.new_tokens / r.limit_tokens_per_s for r in rows)
    return [*rows, CostRow(TOTAL, total, total.new_tokens / at_limit if at_limit else 1 / per_step)]
