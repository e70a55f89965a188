"""lm-probes' options, and whether a session asked for lm-probes through one of them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from lm_probes.cards.choices import DEVICE_PATTERN, DTYPES

# lm-probes' own options (dest -> default), read from its option group as declared in
# add_options: one that differs from its default makes a session an lm-probes one at once
OWN_OPTIONS: dict[str, Any] = {}


def _device(value: str) -> str:
    if not re.match(DEVICE_PATTERN, value):
        raise pytest.UsageError(f"--device {value!r}: use auto, cpu, cuda, cuda:N or mps")
    return value


# The largest --seed every consumer takes: torch.manual_seed and torch.Generator take < 2**64,
# and the served checks send a request seed of seed x 1000 (lm_probes/served/checks.py
# SAMPLED_DRAWS), whose draws vLLM seeds up to seed x 1000 + 999, as a signed 64-bit integer.
SEED_DRAWS_PER_REQUEST = 1000
MAX_SEED = (2**63 - SEED_DRAWS_PER_REQUEST) // SEED_DRAWS_PER_REQUEST


def _seed(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise pytest.UsageError(f"--seed {value!r}: give a non-negative integer") from None
    if seed < 0:
        raise pytest.UsageError(f"--seed {value!r}: give a non-negative integer")
    if seed > MAX_SEED:
        raise pytest.UsageError(
            f"--seed {value}: past the largest seed the sampling probes can use ({MAX_SEED}, which a 64-bit "
            "seed holds with the served checks' 1000 draws a request); give a smaller one"
        )
    return seed


def _progress_default() -> str:
    from lm_probes.progress import mode_from_env

    return mode_from_env()


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise pytest.UsageError(f"--progress-after {value!r}: give a number of seconds") from None
    if not seconds >= 0:  # (also refuses nan)
        raise pytest.UsageError(f"--progress-after {value!r}: give a number of seconds, 0 or more")
    return seconds


def add_options(parser: pytest.Parser) -> None:
    """lm-probes' command-line options (one group) and its ini option."""
    group = parser.getgroup("lm-probes", "behavioural tests of language models")
    group.addoption(
        "--card",
        action="append",
        metavar="NAME|PATH",
        help="run against this card (a name in a cards folder, or a YAML path); repeatable. "
        "Default: every card (GPU cards only with -m gpu).",
    )
    group.addoption(
        "--cards-dir",
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
    group.addoption(
        "--model",
        metavar="ID|PATH",
        help="load the single selected card's tokenizer and model from this hub id or local "
        "folder instead, keeping the card's expectations. Default: the card's own source.",
    )
    group.addoption(
        "--device",
        type=_device,
        metavar="auto|cpu|cuda|cuda:N|mps",
        help="device for every model. Default: each card's load.device.",
    )
    group.addoption(
        "--dtype",
        choices=DTYPES,
        help="dtype for every model. Default: each card's load.dtype.",
    )
    group.addoption(
        "--seed",
        type=_seed,
        default=0,
        metavar="N",
        help="seed for the sampling probes (a random-init card keeps its own seed). Default: 0.",
    )
    group.addoption(
        "--trust-remote-code",
        action="store_true",
        help="let transformers run model code from the hub or the model folder. Default: off "
        "(a card can turn it on for itself with trust_remote_code: true).",
    )
    group.addoption(
        "--allow-pickle",
        action="store_true",
        help="allow pickle checkpoints (.bin/.pt), which can run code when loaded. Default: safetensors and GGUF only.",
    )
    group.addoption(
        "--no-bnb-packed-cpu",
        action="store_true",
        help="keep bitsandbytes' 4-bit layers on their dequantize-then-matmul CPU path (in the compute "
        "dtype) where the CPU would take the packed AVX512-BF16 kernel: another machine class on this "
        "machine. Default: the kernels bitsandbytes picks.",
    )
    group.addoption(
        "--no-onednn",
        action="store_true",
        help="switch oneDNN off (torch.backends.mkldnn.enabled = False): another machine class for "
        "half-precision cards on CPUs with AVX512-FP16/AMX. Default: on where torch uses it.",
    )
    group.addoption(
        "--snapshot-update",
        action="store_true",
        help="record the snapshots of the selected cards, overwriting existing ones. "
        "Default: compare with them (a missing snapshot fails).",
    )
    group.addoption(
        "--snapshot-dir",
        metavar="DIR",
        default=None,
        help="where snapshots are read and written. Default: fixtures/snapshots.",
    )
    group.addoption(
        "--endpoint",
        metavar="URL",
        help="the served-parity tests (-m served) ask this OpenAI-compatible server (vLLM, SGLang, TGI, "
        "llama.cpp's server) running the selected card's model. Default: none (see --serve).",
    )
    group.addoption(
        "--serve",
        action="store_true",
        help="the served-parity tests (-m served) start the card's served engine themselves (vLLM's CPU build, "
        "in a cached environment built on first use), on 127.0.0.1, and stop it at the end. Default: off.",
    )
    group.addoption(
        "--progress",
        choices=("auto", "on", "off"),
        default=_progress_default(),
        help="a line per card when a probe runs long (see --progress-after): auto = on a terminal, not under -q, "
        "not in CI (the CI variable set), not in pytest-xdist workers. Default: the LM_PROBES_PROGRESS "
        "variable, else auto.",
    )
    group.addoption(
        "--progress-after",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long a probe runs before its line, and between its lines. Default: 10.",
    )
    group.addoption(
        "--list-cards",
        action="store_true",
        help="list the known cards and exit.",
    )
    OWN_OPTIONS.update({option.dest: option.attrs().get("default") for option in group.options})


def options_given(config: pytest.Config) -> bool:
    given = any(config.getoption(name) != default for name, default in OWN_OPTIONS.items())
    return given or bool(config.getini("lm_probes_cards_dirs"))
