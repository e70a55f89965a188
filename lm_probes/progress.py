"""Progress on long steps, read off the ledger (lm_probes/ledger.py) as the model works.

- ``DraftBar``: ``lm-probes draft-card``'s one bar over its phases. The phase is the probe
  running (the ledger's label); the bar counts new tokens against a plan made before
  anything runs (``draft_plan``: each phase's rows x max_new_tokens from the article's inputs
  and --draws, an upper bound, as a row may stop early). A phase left is counted as done in
  full, so the ETA (tqdm's: the tokens still planned over the measured rate) is for what is
  left to run, not for tokens that an early stop saved. The rate is of row-tokens: a phase
  of one-row calls (answer_ends, greedy) runs at a fraction of a batched one's (sampling),
  so the ETA moves as the phases change.
- ``SessionProgress``: a pytest session's line per card when a probe runs long (10 s by
  default, then again every 10 s): ``smollm2-135m-instruct: sampling (12 s, 450 tokens so far)``.

Both are silent where pip, tqdm and transformers' users expect silence: output that is not
a terminal, ``CI`` set, pytest's ``-q``; ``LM_PROBES_PROGRESS=on|off`` (or pytest's
``--lm-probes-progress``) overrides. Nothing here imports torch: the plugin imports this module in
every session of ours.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from lm_probes.ledger import LEDGER, NO_PROBE, Frame

MODES = ("auto", "on", "off")
ENV = "LM_PROBES_PROGRESS"  # on, off or auto: the default of draft-card's bar and of pytest's --lm-probes-progress
AFTER_S = 10.0  # a probe running this long gets a line, and another every as long again

# draft-card's work outside any result of lm_probes/subjects/results.py (today: the knowledge
# answers and the default-decoding check) runs under this label
OTHER_PROBES = "other probes"


# labels of work between the phases, which come back after each: counted as they go, never
# in full on leaving (that would count the knowledge answers as done before they start)
CATCH_ALL = (OTHER_PROBES, NO_PROBE)


def ci() -> bool:
    """A CI runner: its logs keep every carriage-return redraw of a bar as a line."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def mode_from_env(default: str = "auto") -> str:
    mode = os.environ.get(ENV, default).strip().lower()
    return mode if mode in MODES else default


def wanted(mode: str, stream: Any, verbosity: int = 0) -> bool:
    """Whether to show progress: "on" and "off" say so; "auto" shows it on a terminal, not
    under -q (verbosity < 0), not in CI."""
    if mode == "on":
        return True
    if mode == "off" or verbosity < 0 or ci():
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# --------------------------------------------------------------------- draft-card


def draft_plan(draws: int, snapshot: bool = False, inputs: Mapping[str, Any] | None = None) -> dict[str, int]:
    """New tokens each phase of a draft will generate at most, by ledger label: rows x
    max_new_tokens of every generate() call lm_probes/draft/measure.py makes (through the
    results of lm_probes/subjects/results.py), with ``draws`` groups of samples; ``snapshot``:
    the recording of --lm-probes-snapshot-dir after it."""
    from lm_probes.inputs import article_inputs

    i = inputs or article_inputs()
    sampling, creative, beam = i["sampling"], i["creative"], i["beam_search"]
    batch, internals, ends = i["batch_invariance"], i["internals"], i["answer_ends"]
    batched_rows = 1 + len(batch["others"])  # the first prompt in the left-padded batch
    plan = {
        "answer_ends": len(ends["requests"]) * ends["max_new_tokens"],
        # per back-end: the first prompt alone and in the batch
        "attention": 2 * (1 + batched_rows) * internals["max_new_tokens"],
        "greedy-run-1": 2 * i["greedy"]["max_new_tokens"],  # BOS on and off
        # alone and batched, again one precision step up when the two differ
        "batch": 2 * (1 + batched_rows) * batch["max_new_tokens"],
        # near-greedy: the suite's samples only (its share is read from one forward pass); the
        # other regimes over the draws (warm's extra draws may stop early: a bound from above)
        "sampling": (1 + (len(sampling["regimes"]) - 1) * draws) * sampling["samples"] * sampling["max_new_tokens"],
        "beam": (beam["num_beams"] + 1) * beam["max_new_tokens"],  # the beams, and greedy as long
        # greedy: one call per run; sampled: the suite's runs and draws - 1 groups more
        "creative": len(creative["openings"]) * creative["runs"] * (1 + draws) * creative["max_new_tokens"],
        # the knowledge answers (40 new tokens each, measure.py's draft_tasks), plain and through a
        # chat template, and the default-decoding check's 2 calls of 8
        OTHER_PROBES: 2 * len(i["knowledge"]) * 40 + 2 * 8,
    }
    if snapshot:
        from lm_probes.subjects.results import FIRST_TOKEN_DRAWS

        plan["first_tokens"] = FIRST_TOKEN_DRAWS
    return plan


class DraftBar:
    """One tqdm bar over a draft's phases, moved by the ledger's new tokens."""

    def __init__(self, plan: dict[str, int], stream: IO[str], enabled: bool):
        self.plan = dict(plan)
        self.enabled = enabled
        self.stream = stream
        self.done: dict[str, int] = {}  # new tokens recorded, per label
        self.left: set[str] = set()  # phases left: counted in full
        self.label: str | None = None
        self._bar: Any = None

    def __enter__(self) -> DraftBar:
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=sum(self.plan.values()),
                desc="loading the model",
                unit="tok",
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} new tokens [{elapsed}<{remaining}, {rate_fmt}]",
            )
        self._listening = LEDGER.listening(self._on_forward)
        self._listening.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._listening.__exit__(*exc)
        if self._bar is not None:
            self._bar.close()

    def finish(self) -> None:
        """Every phase ran: the bar at its end (the plan is an upper bound, what ran is all of it)."""
        if self._bar is not None:
            self._bar.set_description_str("measured", refresh=False)
            self._bar.update(self._bar.total - self._bar.n)

    def note(self, message: str) -> None:
        """A line to the stream above the bar (a line printed past tqdm would cut it in two)."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream)

    def position(self) -> int:
        """Planned tokens done: the phases left in full, the others as far as they went."""
        return sum(
            self.plan[label] if label in self.left else min(self.done.get(label, 0), self.plan[label])
            for label in self.plan
        )

    def describe(self) -> str:
        label = self.label or "loading the model"
        done = self.done.get(label, 0)
        return f"{label} ({done}/{self.plan[label]} tokens)" if label in self.plan else f"{label} ({done} tokens)"

    def _on_forward(self, subject: str, frame: Frame | None, rows: int, new: int) -> None:
        label = frame.label if frame is not None else NO_PROBE
        if label != self.label:
            if self.label is not None and self.label not in CATCH_ALL:
                self.left.add(self.label)
            self.label = label
        self.done[label] = self.done.get(label, 0) + new
        if label not in self.plan:  # work the plan did not foresee grows the total with it
            self.plan[label] = self.done[label]
        elif label in self.left:  # a phase back again, already counted in full: its tokens are extra
            self.plan[label] += new
        if self._bar is not None:
            self._bar.total = sum(self.plan.values())
            self._bar.set_description_str(self.describe(), refresh=False)
            self._bar.update(self.position() - self._bar.n)


# ------------------------------------------------------------------------ pytest


class SessionProgress:
    """A line through ``write`` when the probe running has run ``after`` seconds, and again
    every ``after`` seconds while it runs (checked at each forward: a probe runs long only
    while its model works)."""

    def __init__(self, write: Callable[[str], None], after: float = AFTER_S):
        self.write = write
        self.after = after
        self.every = max(after, 1.0)  # a tiny threshold (a test's) still writes one line a second at most

    @contextmanager
    def listening(self) -> Iterator[None]:
        with LEDGER.listening(self._on_forward):
            yield

    def _on_forward(self, subject: str, frame: Frame | None, rows: int, new: int) -> None:
        if frame is None:
            return
        now = time.monotonic()
        elapsed = now - frame.started
        last = getattr(frame, "_progress_written", None)
        if elapsed < self.after or (last is not None and now - last < self.every):
            return
        frame._progress_written = now  # type: ignore[attr-defined]
        self.write(f"{subject}: {frame.label} ({elapsed:.0f} s, {frame.new_tokens} tokens so far)")


_SESSION = "_lm_probes_progress"  # the config attribute holding a session's listening block


def start_session(config: Any, mode: str, after_s: float) -> None:
    """A pytest session's lines (``SessionProgress``) through its terminal reporter, where
    wanted: ``mode`` is --lm-probes-progress (default from LM_PROBES_PROGRESS, else auto: a
    terminal, not -q, not CI), ``after_s`` --lm-probes-progress-after. Not in a pytest-xdist worker:
    its output goes to the controller only as the test reports, when each test is done; run with
    -n 0 for the lines."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if hasattr(config, "workerinput") or terminal is None or getattr(config, _SESSION, None) is not None:
        return
    if not wanted(mode, terminal, config.get_verbosity()):
        return
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(line: str) -> None:
        # the test's output is being captured: the line goes past it to the terminal
        if capture is None:
            terminal.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            terminal.write_line(line)

    listening = SessionProgress(write, after_s).listening()
    listening.__enter__()
    setattr(config, _SESSION, listening)


def stop_session(config: Any) -> None:
    listening = getattr(config, _SESSION, None)
    if listening is not None:
        setattr(config, _SESSION, None)
        listening.__exit__(None, None, None)
