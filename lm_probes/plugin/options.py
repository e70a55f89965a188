"""lm-probes' options: declared (``add_options``), resolved once at configure time into one typed
record (``resolve``, read back with ``options_of``), and whether a session asked for lm-probes
through one of them.

Every option is ``--lm-probes-*`` (as pytest-benchmark's are ``--benchmark-*``): the plugin loads
in every pytest session of the environment it is installed in, so an unprefixed ``--device`` or
``--snapshot-update`` would collide with a host project's conftest or with syrupy. The spellings
of 0.1 are not registered (any of them could be a host's); ``old_spelling_hint`` names the new
one when a command line still uses one that nobody else took.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lm_probes.cards.choices import DEVICE_PATTERN, DTYPES

PREFIX = "--lm-probes-"

# The options of lm-probes 0.1, before the prefix: old spelling -> new (CHANGELOG, 0.2.0)
RENAMED: dict[str, str] = {
    f"--{name}": f"{PREFIX}{name}"
    for name in (
        "card", "cards-dir", "model", "device", "dtype", "seed", "trust-remote-code", "allow-pickle",
        "no-bnb-packed-cpu", "no-onednn", "snapshot-update", "snapshot-dir", "endpoint", "serve", "progress",
        "progress-after", "list-cards",
    )
}  # fmt: skip

# lm-probes' own options (dest -> default), read from its option group as declared in
# add_options: one that differs from its default makes a session an lm-probes one at once
OWN_OPTIONS: dict[str, Any] = {}


def _device(value: str) -> str:
    if not re.match(DEVICE_PATTERN, value):
        raise pytest.UsageError(f"{PREFIX}device {value!r}: use auto, cpu, cuda, cuda:N or mps")
    return value


# The largest --lm-probes-seed every consumer takes: torch.manual_seed and torch.Generator take
# < 2**64, and the served checks send a request seed of seed x 1000 (lm_probes/served/checks.py
# SAMPLED_DRAWS), whose draws vLLM seeds up to seed x 1000 + 999, as a signed 64-bit integer.
SEED_DRAWS_PER_REQUEST = 1000
MAX_SEED = (2**63 - SEED_DRAWS_PER_REQUEST) // SEED_DRAWS_PER_REQUEST


def _seed(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise pytest.UsageError(f"{PREFIX}seed {value!r}: give a non-negative integer") from None
    if seed < 0:
        raise pytest.UsageError(f"{PREFIX}seed {value!r}: give a non-negative integer")
    if seed > MAX_SEED:
        raise pytest.UsageError(
            f"{PREFIX}seed {value}: past the largest seed the sampling probes can use ({MAX_SEED}, which a 64-bit "
            "seed holds with the served checks' 1000 draws a request); give a smaller one"
        )
    return seed


def _progress_default() -> str:
    # lm_probes/progress.py's mode_from_env, without importing it (and the ledger) into every
    # pytest session of the environment: this runs when the plugin's options are declared
    mode = os.environ.get("LM_PROBES_PROGRESS", "auto").strip().lower()
    return mode if mode in ("auto", "on", "off") else "auto"


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise pytest.UsageError(f"{PREFIX}progress-after {value!r}: give a number of seconds") from None
    if not seconds >= 0:  # (also refuses nan)
        raise pytest.UsageError(f"{PREFIX}progress-after {value!r}: give a number of seconds, 0 or more")
    return seconds


def add_options(parser: pytest.Parser) -> None:
    """lm-probes' command-line options (one group, one prefix) and its ini option."""
    group = parser.getgroup("lm-probes", "behavioural tests of language models")

    def option(name: str, **kwargs: Any) -> None:
        group.addoption(PREFIX + name, dest="lm_probes_" + name.replace("-", "_"), **kwargs)

    option(
        "card",
        action="append",
        metavar="NAME|PATH",
        help="run against this card (a name in a cards folder, or a YAML path); repeatable. "
        "Default: every card (GPU cards only with -m gpu).",
    )
    option(
        "cards-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of your own cards, looked up by name before the shipped ones; repeatable. "
        "Default: the lm_probes_cards_dirs ini option, then the shipped cards only.",
    )
    parser.addini(
        "lm_probes_cards_dirs",
        type="paths",
        default=[],
        help="folders of your own cards (relative to the ini file), looked up before the shipped ones",
    )
    option(
        "model",
        metavar="ID|PATH",
        help="load the single selected card's tokenizer and model from this hub id or local "
        "folder instead, keeping the card's expectations. Default: the card's own source.",
    )
    option(
        "device",
        type=_device,
        metavar="auto|cpu|cuda|cuda:N|mps",
        help="device for every model. Default: each card's load.device.",
    )
    option("dtype", choices=DTYPES, help="dtype for every model. Default: each card's load.dtype.")
    option(
        "seed",
        type=_seed,
        default=0,
        metavar="N",
        help="seed for the sampling probes (a random-init card keeps its own seed). Default: 0.",
    )
    option(
        "trust-remote-code",
        action="store_true",
        help="let transformers run model code from the hub or the model folder. Default: off "
        "(a card can turn it on for itself with trust_remote_code: true).",
    )
    option(
        "allow-pickle",
        action="store_true",
        help="allow pickle checkpoints (.bin/.pt), which can run code when loaded. Default: safetensors and GGUF only.",
    )
    option(
        "no-bnb-packed-cpu",
        action="store_true",
        help="keep bitsandbytes' 4-bit layers on their dequantize-then-matmul CPU path (in the compute "
        "dtype) where the CPU would take the packed AVX512-BF16 kernel: another machine class on this "
        "machine. Default: the kernels bitsandbytes picks.",
    )
    option(
        "no-onednn",
        action="store_true",
        help="switch oneDNN off (torch.backends.mkldnn.enabled = False): another machine class for "
        "half-precision cards on CPUs with AVX512-FP16/AMX. Default: on where torch uses it.",
    )
    option(
        "snapshot-update",
        action="store_true",
        help="record the snapshots of the selected cards, overwriting existing ones of the same model. "
        "Default: compare with them (a missing snapshot fails).",
    )
    option(
        "snapshot-dir",
        metavar="DIR",
        default=None,
        help="where snapshots are read and written. Default: the shipped fixtures/snapshots.",
    )
    option(
        "endpoint",
        metavar="URL",
        help="the served-parity tests (-m served) ask this OpenAI-compatible server (vLLM, SGLang, TGI, "
        f"llama.cpp's server) running the selected card's model. Default: none (see {PREFIX}serve).",
    )
    option(
        "serve",
        action="store_true",
        help="the served-parity tests (-m served) start the card's served engine themselves (vLLM's CPU build, "
        "in a cached environment built on first use), on 127.0.0.1, and stop it at the end. Default: off.",
    )
    option(
        "progress",
        choices=("auto", "on", "off"),
        default=_progress_default(),
        help=f"a line per card when a probe runs long (see {PREFIX}progress-after): auto = on a terminal, "
        "not under -q, not in CI (the CI variable set), not in pytest-xdist workers. Default: the "
        "LM_PROBES_PROGRESS variable, else auto.",
    )
    option(
        "progress-after",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long a probe runs before its line, and between its lines. Default: 10.",
    )
    option(
        "summary",
        metavar="FILE",
        default=None,
        help="also write a short Markdown summary of the run here (cards, failures with their first difference, "
        "changes since the snapshot, the HTML report); it is appended to $GITHUB_STEP_SUMMARY too when that is "
        "set. Default: $GITHUB_STEP_SUMMARY only.",
    )
    option("list-cards", action="store_true", help="list the known cards and exit.")
    OWN_OPTIONS.update({option.dest: option.attrs().get("default") for option in group.options})


def options_given(config: pytest.Config) -> bool:
    given = any(config.getoption(name) != default for name, default in OWN_OPTIONS.items())
    return given or bool(config.getini("lm_probes_cards_dirs"))


def old_spelling_hint(parser: pytest.Parser, args: list[str]) -> str | None:
    """One sentence for the first 0.1 spelling (``--card``) on a command line where no plugin or
    conftest registered it, naming its new one; None when there is none. Read after the initial
    conftests are loaded: a host's own ``--device`` is theirs, and no hint is given for it."""
    _, unknown = parser.parse_known_and_unknown_args(args)
    for word in unknown:
        new = RENAMED.get(word.split("=", 1)[0])
        if new is not None:
            return (
                f"{word.split('=', 1)[0]} is not an option of lm-probes any more: since lm-probes 0.2 it is "
                f"{new} (every lm-probes option starts with {PREFIX}; CHANGELOG.md has the list)"
            )
    return None


@dataclass(frozen=True)
class LmProbesOptions:
    """The session's lm-probes options, resolved once (paths expanded, defaults filled in): what
    fixtures, checks and hooks read, instead of ``config.getoption`` each with its own defaults."""

    cards: tuple[str, ...]  # --lm-probes-card as given: names, or card files (``~`` expanded)
    cards_dirs: tuple[Path, ...]  # --lm-probes-cards-dir, then the lm_probes_cards_dirs ini option
    model: str | None  # --lm-probes-model as given: selection.py reads it as a hub id or a local path
    device: str | None
    dtype: str | None
    seed: int
    trust_remote_code: bool
    allow_pickle: bool
    bnb_cpu_packed: bool
    onednn: bool
    snapshot_update: bool
    snapshot_dir: Path  # --lm-probes-snapshot-dir expanded, else the shipped fixtures/snapshots
    snapshot_dir_given: str | None  # as typed (None: the default), for messages and commands
    endpoint: str | None
    serve: bool
    progress: str
    progress_after: float
    summary: Path | None  # --lm-probes-summary expanded
    list_cards: bool

    @property
    def snapshot_dir_option(self) -> str:
        """`` --lm-probes-snapshot-dir DIR`` for a command to copy, when the folder is not the default."""
        return f" {PREFIX}snapshot-dir {self.snapshot_dir}" if self.snapshot_dir_given else ""


def resolve(config: pytest.Config) -> LmProbesOptions:
    """The options of this session, read once from the command line and the ini file."""
    from lm_probes.paths import SNAPSHOT_DIR, user_path

    def get(name: str) -> Any:
        return config.getoption("lm_probes_" + name)

    snapshot_dir = get("snapshot_dir")
    return LmProbesOptions(
        cards=tuple(str(user_path(c)) for c in get("card") or ()),
        cards_dirs=tuple(user_path(d) for d in get("cards_dir")) + tuple(config.getini("lm_probes_cards_dirs")),
        model=get("model"),
        device=get("device"),
        dtype=get("dtype"),
        seed=get("seed"),
        trust_remote_code=get("trust_remote_code"),
        allow_pickle=get("allow_pickle"),
        bnb_cpu_packed=not get("no_bnb_packed_cpu"),
        onednn=not get("no_onednn"),
        snapshot_update=get("snapshot_update"),
        snapshot_dir=user_path(snapshot_dir) if snapshot_dir else SNAPSHOT_DIR,
        snapshot_dir_given=snapshot_dir,
        endpoint=get("endpoint"),
        serve=get("serve"),
        progress=get("progress"),
        progress_after=get("progress_after"),
        summary=user_path(get("summary")) if get("summary") else None,
        list_cards=get("list_cards"),
    )


OPTIONS = pytest.StashKey[LmProbesOptions]()


def options_of(config: pytest.Config) -> LmProbesOptions:
    """The session's resolved options (resolved at configure time; on first use elsewhere, e.g. a
    test's own ``pytest.Config``)."""
    if OPTIONS not in config.stash:
        config.stash[OPTIONS] = resolve(config)
    return config.stash[OPTIONS]
