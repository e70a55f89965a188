"""``lm-probes run-with REQ... [-- PYTEST ARGS]``: the suite (by default the behavioural
tests against the committed snapshots) under other package versions, in the cached
environment ``upgrade-check`` builds for the same requirements (cli/environments.py)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from lm_probes.cli import environments
from lm_probes.exit_codes import BAD_INPUT, SAME
from lm_probes.paths import REPO_ROOT

DEFAULT_ARGS = ("tests/behaviour",)


def pytest_command(env, args: list[str]) -> list[str]:
    report = REPO_ROOT / "reports" / f"report-{env.name}.html"
    return [str(env / "bin" / "python"), "-m", "pytest", f"--html={report}", *(args or DEFAULT_ARGS)]


def run_with(args: argparse.Namespace) -> int:
    if not (REPO_ROOT / "pyproject.toml").is_file():
        print(
            "lm-probes run-with: needs a source checkout of lm-probes (it installs it into the environment)",
            file=sys.stderr,
        )
        return BAD_INPUT
    side = environments.Side("with", tuple(args.requirements))
    torch_pin = environments.torch_pin()
    env = environments.environment_dir(side, torch_pin)
    pytest_args = list(args.pytest_args)
    if args.dry_run:
        environments.print_plan(side, torch_pin, pytest_command(env, pytest_args))
        return SAME
    try:
        env = environments.prepare(side, torch_pin, rebuild=args.rebuild)
    except environments.SideFailed as exc:
        print(f"lm-probes run-with: {exc}", file=sys.stderr)
        return exc.exit_code
    # the environment's own caches: each transformers de-quantises the GGUF files itself
    child = {**os.environ, "LM_PROBES_CACHE": str(env / "lm-probes-cache")}
    return subprocess.run(pytest_command(env, pytest_args), cwd=REPO_ROOT, env=child).returncode
