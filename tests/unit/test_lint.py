"""The code stays as the committed ruff configuration (pyproject.toml, [tool.ruff]) wants it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from probes.cards import REPO_ROOT


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "probes", "tests"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "No module named ruff" in result.stderr:
        pytest.fail("ruff is not installed: it comes with the dev extra (`make setup` installs it)", pytrace=False)
    assert result.returncode == 0, f"ruff {' '.join(command)} found:\n{result.stdout}{result.stderr}"
