"""Recording a snapshot: what the sections observe of a subject, with provenance, written
as readable JSON (``fixtures/snapshots/<card>/<machine class>.json``), and read back."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lm_probes.environment import environment_info
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots import sections

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject

FORMAT = 1

# what a plain open() would give a new file (0o666 less the umask), read once at import: a
# temporary file from mkstemp is 0o600, and the snapshot must stay readable as before
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


class SnapshotError(ValueError):
    """A snapshot file is missing, corrupt or of another format; the message says how to fix it."""


def snapshot_path(subject: Subject, root: Path = SNAPSHOT_DIR, machine_class: str | None = None) -> Path:
    """Where a subject's snapshot lives: one file per card and machine class (lm_probes/numerics.py,
    or the class a user's hook gives: lm_probes/plugin/hookspecs.py)."""
    return Path(root) / subject.card.name / f"{machine_class or subject.machine_class}.json"


def provenance(subject: Subject) -> dict[str, Any]:
    # load first: loading fills in the file hashes, the device and the dtype
    subject.tokenizer  # noqa: B018
    if subject.card.has_model:
        subject.model  # noqa: B018
    env = environment_info()
    p = subject.provenance.as_dict()
    return {
        "python": env["python"],
        "torch": env["torch"],
        "transformers": env["transformers"],
        "tokenizers": env["tokenizers"],
        # "cpu", or the GPU's class ("cuda-sm90"), as before machine classes
        "device": "cpu" if subject.numerics.device == "cpu" else subject.machine_class,
        "gpu": env["gpu"],
        "cpu threads": env["cpu threads"],
        "dtype": p["dtype"],
        "quantization": p["quantization"],
        "model source": p["model_source"],
        "files": p["files"],
        "revision": p["revision"],
        # only for a model with bitsandbytes layers: its kernels produced the numbers
        **({"bitsandbytes": env["bitsandbytes"]} if p["quantizer"] else {}),
        # what chose the kernels, and the class that follows from it (the file's name)
        "class": subject.machine_class,
        "numerics": subject.numerics.as_dict(),
        "recorded": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        # every section this lm-probes observes: a later one missing from this file was not
        # known yet when it was recorded, which is not the card leaving it out
        "sections": [section.name for section in sections.all_sections()],
    }


def observe(subject: Subject) -> dict[str, Any]:
    """Every section the subject's card records (computed once, shared with the tests)."""
    observed: dict[str, Any] = {}
    left_out = set(subject.card.snapshot.leave_out)
    for section in sections.all_sections():
        if (section.needs_model and not subject.card.has_model) or section.name in left_out:
            continue
        data = section.observe(subject)
        if data is not None:
            observed[section.name] = data
    return observed


def dumps(snapshot: dict[str, Any]) -> str:
    """Stable, diff-friendly JSON: sorted keys, one level per line, lists of numbers inline
    (a 20 x 20 matrix is 20 lines, not 400). Written value by value, so a string is never
    touched: a generated text holding "[1,2,3]" is recorded as the model said it."""

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def write(value: Any, depth: int) -> str:
        inner, outer = " " * (depth + 1), " " * depth
        if isinstance(value, dict) and value:
            items = (f"{inner}{json.dumps(k, ensure_ascii=False)}: {write(value[k], depth + 1)}" for k in sorted(value))
            return "{\n" + ",\n".join(items) + f"\n{outer}}}"
        if isinstance(value, list) and value and not all(number(v) for v in value):
            return "[\n" + ",\n".join(f"{inner}{write(v, depth + 1)}" for v in value) + f"\n{outer}]"
        if isinstance(value, list):
            return "[" + ", ".join(json.dumps(v) for v in value) + "]"
        return json.dumps(value, ensure_ascii=False)

    return write(snapshot, 0) + "\n"


class OtherModelsBaseline(SnapshotError):
    """Recording would replace a baseline recorded from another model (--lm-probes-model)."""


def record(subject: Subject, root: Path = SNAPSHOT_DIR, machine_class: str | None = None) -> Path:
    """Record a subject's snapshot, replacing the file of the same card and class, unless that file
    was recorded from another model: a baseline is only ever replaced by the model it describes
    (``OtherModelsBaseline`` says how to keep both, or to replace it on purpose)."""
    path = snapshot_path(subject, root, machine_class)
    recorded_from = provenance(subject)
    model = recorded_from.get("model source")
    other = other_model_in(path, model) if model else None
    if other is not None:
        raise OtherModelsBaseline(
            f"{path} is card {subject.card.name}'s baseline recorded from {other}; this session loads "
            f"{model}, and its observations would replace it. Record them into a folder of their own "
            f"(--lm-probes-snapshot-dir DIR), or delete {path} first to replace that baseline."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot = {"format": FORMAT, "card": subject.card.name, "provenance": recorded_from, "observed": observe(subject)}
    write_atomically(path, dumps(snapshot))
    return path


def write_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` by renaming a finished temporary file over it (atomic: an
    interrupted write never leaves half a snapshot). The temporary file is this call's own
    (mkstemp in the same folder), so two processes recording the same card at once each
    rename their own file and the last one wins; a shared ``<class>.json.tmp`` was renamed
    away by the first, and the second found it gone. Removed again if the write fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: no temporary file is left behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def recorded_classes(card_dir: Path) -> list[str]:
    """The machine classes a card's snapshot folder holds (its files' names)."""
    return sorted(p.stem for p in Path(card_dir).glob("*.json"))


def unrecorded_device_class(path: Path) -> str | None:
    """Why a first run on a GPU is a skip, not a failure, when *no* class of the card is
    recorded (None otherwise: a recorded class of its own is compared strictly, another
    one under the cross-class rules, and a CPU run with nothing recorded fails, as CI
    records on CPU)."""
    if path.is_file() or path.stem.startswith("cpu") or recorded_classes(path.parent):
        return None
    return f"no snapshot for machine class {path.stem} yet (recorded: none)"


def load(path: Path, update_hint: str, card: str | None = None) -> dict[str, Any]:
    """A snapshot file, read and checked; ``update_hint`` is the command that (re-)records it.
    With ``card``, a file whose ``card`` field names another card is refused: of the same
    shape, it would be compared as if it were this card's (a file without the field, as
    written by hand, is taken at its folder's word)."""
    if not path.is_file():
        raise SnapshotError(f"no snapshot at {path}. Record one with: {update_hint}")
    try:
        snapshot = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SnapshotError(
            f"snapshot {path} is corrupt or truncated ({exc}). Re-record it with: {update_hint}"
        ) from None
    if (
        not isinstance(snapshot, dict)
        or snapshot.get("format") != FORMAT
        or not isinstance(snapshot.get("observed"), dict)  # section -> what it recorded
        or not isinstance(snapshot.get("provenance", {}), dict)
    ):
        raise SnapshotError(
            f"snapshot {path} is not a format-{FORMAT} lm-probes snapshot. Re-record it with: {update_hint}"
        )
    found = non_finite_field(snapshot)
    if found is not None:
        # NaN passes every comparison that reads it (a bound of max(2 * NaN, atol) is NaN, and
        # nothing is above NaN): the check would pass whatever the model does now
        field, number = found
        raise SnapshotError(
            f"snapshot {path} records a number that is not finite at {field} ({_short(number)}): no "
            f"observation is NaN or infinite, and a comparison with one passes whatever the model does. "
            f"Re-record it with: {update_hint}"
        )
    if card is not None and "card" in snapshot and snapshot["card"] != card:
        raise SnapshotError(
            f"snapshot {path} is of card {snapshot['card']!r}, not of {card!r}, whose snapshot it stands for. "
            f"Re-record it with: {update_hint}"
        )
    return snapshot


def non_finite_field(value: Any, where: tuple = ()) -> tuple[str, Any] | None:
    """The first NaN or infinite number in a snapshot, as (its path, the value): the path dotted
    (``observed.attention.max_prob_diff``), a list item as ``[i]`` and a key holding a dot or a
    bracket quoted (``ids["a.b"]``); None when every number is finite."""
    if isinstance(value, float) and not math.isfinite(value):
        return _dotted(where), value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _LARGEST_FLOAT:
        return _dotted(where), value  # no float holds it: it is infinite to every comparison
    if isinstance(value, dict):
        items = ((where + (str(key),), item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((where + (index,), item) for index, item in enumerate(value))
    else:
        return None
    for path, item in items:
        found = non_finite_field(item, path)
        if found is not None:
            return found
    return None


_LARGEST_FLOAT = int(sys.float_info.max)


def _short(number: float | int) -> str:
    shown = repr(number)
    return shown if len(shown) <= 20 else f"{shown[:8]}...({len(shown)} digits)"


def _dotted(path: tuple) -> str:
    shown = ""
    for part in path:
        if isinstance(part, int):
            shown += f"[{part}]"
        elif re.search(r"[.\[\]\s\"']", part) or not part:
            shown += f"[{json.dumps(part, ensure_ascii=False)}]"
        else:
            shown += f".{part}" if shown else part
    return shown or "."


def other_model_in(path: Path, model_source: str) -> str | None:
    """The model a snapshot file at ``path`` was recorded from, when it is not ``model_source``
    (None when there is no such file, or it is of the same model, or it names none)."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["provenance"]["model source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no file, or one that is not a snapshot: nothing of another model's to keep
    return recorded if isinstance(recorded, str) and recorded != model_source else None
