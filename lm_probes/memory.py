"""Peak resident memory (RSS) of each step of a subject's life in this process: the GGUF
conversion, the load, the probes after it. The report's Subjects table shows them.

Linux keeps a process's peak RSS (VmHWM in /proc/self/status) and lets the process reset it
to the current RSS (writing 5 to /proc/self/clear_refs), so each step's own peak is read by
resetting at its start. Where that file is not writable (macOS, a locked-down container),
the only peak there is is the process's since it started (getrusage's ru_maxrss), and each
figure says so (``Peak.since_step``).

Steps are keyed by what they belong to: a card's name for its load and probes, a GGUF
file's digest for its conversion (lm_probes/cards/files.py does not know the card). A step
that starts inside another (a conversion during a load) is counted in both. A card's
"probes" step is the time from the end of its load to the next step of this process (or to
now): the process's peak while its tests ran, other subjects still in memory included."""

from __future__ import annotations

import re
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class Peak:
    """A step's peak RSS in bytes; ``since_step`` False: the process's peak since it started
    (the peak could not be reset), an upper bound of the step's."""

    bytes: int
    since_step: bool

    def as_json(self) -> dict[str, object]:
        return {"bytes": self.bytes, "since_step": self.since_step}


@dataclass
class _Open:
    key: str
    name: str
    since_step: bool
    so_far: int = 0  # the peak before the last reset, for a step that spans resets


STEPS: dict[str, dict[str, Peak]] = {}  # key -> step name -> its peak, once ended
_OPEN: list[_Open] = []  # the steps running now, outermost first (a card's probes among them)


def peak_rss() -> int:
    """The peak RSS since the last reset (or since the process started), in bytes."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+) kB", STATUS.read_text(), re.M)
    except OSError:
        match = None
    if match:
        return int(match.group(1)) * 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def reset_peak() -> bool:
    """Reset the peak to the current RSS; False where the kernel does not let this process."""
    for step in _OPEN:  # steps still running keep what they reached before the reset
        step.so_far = max(step.so_far, peak_rss())
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _end(step: _Open) -> None:
    _OPEN.remove(step)
    STEPS.setdefault(step.key, {})[step.name] = Peak(max(step.so_far, peak_rss()), step.since_step)


def _begin(key: str, name: str) -> _Open:
    for probes in [s for s in _OPEN if s.name == "probes"]:
        _end(probes)  # another step begins: the probes before it end here
    step = _Open(key, name, since_step=False)
    step.since_step = reset_peak()
    _OPEN.append(step)
    return step


@contextmanager
def step(key: str, name: str) -> Iterator[None]:
    """Record the peak RSS of the block as ``key``'s step ``name``; a "load" step opens the
    key's "probes" step when it ends, which the next step (or ``peaks``) reads."""
    begun = _begin(key, name)
    try:
        yield
    finally:
        _end(begun)
    if name == "load":
        _begin(key, "probes")


def peaks(key: str) -> dict[str, Peak]:
    """``key``'s steps' peaks, a step still running (its probes) read as far as it got."""
    found = dict(STEPS.get(key, {}))
    for running in _OPEN:
        if running.key == key:
            found[running.name] = Peak(max(running.so_far, peak_rss()), running.since_step)
    return found


def file_key(digest: str) -> str:
    """The key of a file's conversion: the first 16 hex of its sha256, as provenance lists it."""
    return f"file:{digest[:16]}"


STEP_ORDER = ("conversion", "load", "probes")


def describe(steps: dict[str, dict[str, object]]) -> str:
    """The Subjects table's cell from a row's JSON: 'conversion 2.1 GB · load 7.1 GB · probes 7.4 GB'."""
    if not steps:
        return "-"
    ordered = sorted(steps.items(), key=lambda kv: STEP_ORDER.index(kv[0]) if kv[0] in STEP_ORDER else 99)
    cell = " · ".join(f"{name} {int(peak['bytes']) / 1e9:.1f} GB" for name, peak in ordered)
    if not all(peak["since_step"] for peak in steps.values()):
        cell += " (process peak so far: /proc/self/clear_refs not writable)"
    return cell
