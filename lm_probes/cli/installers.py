"""How a side's environment gets its packages: pip's installation report (what pip's dry run
would install, with pip's configuration) read into "name @ url" lines, and uv installing
exactly those lines, hard-linked from its cache (environments.py decides which installer
builds a side)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Resolution:
    """What pip's dry run found for a side: whether it builds with constraints.txt's pins,
    and the exact distributions it would install ("name @ url" lines from pip's installation
    report; empty where pip wrote none), which uv installs as they are."""

    pinned: bool
    installs: tuple[str, ...] = field(default=())


def uv_binary() -> str | None:
    """uv, where it is installed (the ``uv`` package in this Python, or on PATH) and not
    turned off by ``LM_PROBES_INSTALLER=pip``: the seam the tests replace."""
    if os.environ.get("LM_PROBES_INSTALLER", "").lower() == "pip":
        return None
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def uv_commands(env: Path, uv: str) -> list[list[str]]:
    """uv's build of a side: a venv of this Python, then the resolved list (``resolved.txt``,
    written into the environment between the two) installed as it is: no resolution, no
    dependencies added, each file hard-linked from uv's cache (lm-probes' cache folder, so
    that it lies on the environments' file system)."""
    python = str(env / "bin" / "python")
    return [
        [uv, "venv", "--quiet", "--python", sys.executable, str(env)],
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            "--no-deps",
            "--link-mode",
            "hardlink",
            "-r",
            str(env / RESOLVED),
        ],
    ]


RESOLVED, INSTALLED = "resolved.txt", "installed.txt"


def report_installs(report: Path) -> tuple[str, ...]:
    """pip's installation report as "name @ url" lines (this checkout as an editable path);
    nothing where pip wrote no report."""
    if not report.is_file():
        return ()
    lines = []
    for item in json.loads(report.read_text(encoding="utf-8")).get("install", []):
        where = item["download_info"]
        if where.get("dir_info", {}).get("editable"):
            lines.append(f"-e {Path(where['url'].removeprefix('file://'))}")
        else:
            lines.append(f"{item['metadata']['name']} @ {where['url']}")
    return tuple(lines)


LIST_DISTRIBUTIONS = """
import importlib.metadata
for name in sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()):
    print(name)
"""


def write_installed(env: Path) -> None:
    """``installed.txt``: every distribution the environment holds, name==version, read by
    its own Python (a side records what it was built with, whichever installer built it)."""
    python = env / "bin" / "python"
    if not python.exists():  # the tests' stand-in builds make no interpreter
        return
    result = subprocess.run([str(python), "-c", LIST_DISTRIBUTIONS], capture_output=True, text=True)
    if result.returncode == 0:
        (env / INSTALLED).write_text(result.stdout, encoding="utf-8")
