"""The code stays as the committed ruff configuration (pyproject.toml, [tool.ruff]) wants it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from probes.paths import REPO_ROOT


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


def test_readme_layout_matches_the_tree():
    """The README's Layout section names every module of probes/ and every unit test file,
    and everything it names exists (a renamed or removed file shows up here)."""
    import re

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```", 2)[1]
    named_modules = set(re.findall(r"^  (\w+\.py) ", layout, flags=re.MULTILINE))
    modules = {p.name for p in (REPO_ROOT / "probes").glob("*.py")} - {"__init__.py"}
    assert named_modules == modules, f"README layout: missing {modules - named_modules}, gone {named_modules - modules}"
    unit_tests = {p.name for p in (REPO_ROOT / "tests" / "unit").glob("test_*.py")}
    named_tests = set(re.findall(r"\b(test_\w+\.py)\b", readme))
    assert not unit_tests - named_tests, f"README does not name {unit_tests - named_tests}"
    for path in re.findall(r"^([\w./-]+/?)\s", layout, flags=re.MULTILINE):
        assert (REPO_ROOT / path).exists(), f"README layout names {path}, which is not in the tree"
