"""The code stays as the committed ruff configuration (pyproject.toml, [tool.ruff]) wants it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from lm_probes.paths import REPO_ROOT
from tests.unit import import_graph


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "lm_probes", "tests"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "No module named ruff" in result.stderr:
        pytest.fail("ruff is not installed: it comes with the dev extra (`make setup` installs it)", pytrace=False)
    assert result.returncode == 0, f"ruff {' '.join(command)} found:\n{result.stdout}{result.stderr}"


# The layout's measures (issue 25): fewer import levels than the flat package's 11, no cycle,
# and modules short enough to read in one sitting.
MAX_IMPORT_LEVELS = 10
MAX_MODULE_LINES = 400


def test_the_import_graph_has_no_cycle_and_at_most_10_levels():
    graph = import_graph.imports(import_graph.module_files(REPO_ROOT / "lm_probes"))
    level, cycles = import_graph.levels(graph)
    assert not cycles, f"import cycles: {cycles}"
    deepest = max(level, key=level.get)
    assert level[deepest] <= MAX_IMPORT_LEVELS, f"{deepest} is at import level {level[deepest]}"


def test_the_import_graph_measure_sees_a_cycle_and_counts_levels(tmp_path):
    """The measure can fail: a cycle through a function-level import is found, an import
    under TYPE_CHECKING is not one, and a chain of three modules is three levels."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.c import g\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\ng = 1\n")
    graph = import_graph.imports(import_graph.module_files(package))
    level, cycles = import_graph.levels(graph)
    assert (level["pkg.a"], level["pkg.b"], level["pkg.c"], cycles) == (3, 2, 1, [])
    (package / "c.py").write_text("from pkg.a import b\n")
    _, cycles = import_graph.levels(import_graph.imports(import_graph.module_files(package)))
    assert cycles, "a -> b -> c -> a was not seen"


def test_every_import_goes_down_the_stages_and_none_makes_a_circle():
    """Data flows one way (README): a module imports only its own stage or an earlier one,
    counting every import (function-local and type-only ones too, which a reader follows
    just the same), and no import, of any kind, closes a circle. Before (issue 36):
    cards/schema.py imported the snapshot stage, closing a circle of nine files."""
    graph = import_graph.imports(import_graph.module_files(REPO_ROOT / "lm_probes"), type_only=True)
    assert import_graph.upward_imports(graph) == []
    _, cycles = import_graph.levels(graph)
    assert not cycles, f"import cycles, type-only imports included: {cycles}"


def test_the_direction_check_fails_on_a_planted_upward_import(tmp_path):
    """The check can fail: a card module that imports the snapshot stage under TYPE_CHECKING,
    and a subject that imports the plugin inside a function, are each named; the twin, a
    snapshot module importing a card, is a downward import and passes."""
    root = tmp_path / "lm_probes"
    for folder in ("cards", "subjects", "snapshots", "plugin"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "cards" / "card.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lm_probes.snapshots.sets import X\n"
    )
    (root / "subjects" / "subject.py").write_text("def load():\n    from lm_probes.plugin import hooks\n")
    (root / "snapshots" / "sets.py").write_text("from lm_probes.cards.card import Card\nX = 1\n")
    (root / "plugin" / "hooks.py").write_text("")
    graph = import_graph.imports(import_graph.module_files(root), type_only=True)
    assert import_graph.upward_imports(graph) == [
        "lm_probes.cards.card (card and source) imports lm_probes.snapshots.sets (check, snapshot, report)",
        "lm_probes.subjects.subject (subject) imports lm_probes.plugin.hooks (plugin and command line)",
    ]
    # without type-only imports the card's import is not seen: the check counts them on purpose
    assert len(import_graph.upward_imports(import_graph.imports(import_graph.module_files(root)))) == 1


def test_every_module_has_a_stage():
    """A new module outside every stage's prefixes fails here, so the direction check sees it."""
    for module in import_graph.module_files(REPO_ROOT / "lm_probes"):
        import_graph.stage_of(module)
    with pytest.raises(KeyError, match="lm_probes.newthing is in no stage"):
        import_graph.stage_of("lm_probes.newthing")


def test_no_module_is_over_400_lines():
    """Every module of lm_probes/, scripts/ and the tests (issue 36: a test file is held to the
    size the code is)."""
    lengths = {
        str(p.relative_to(REPO_ROOT)): len(p.read_text(encoding="utf-8").splitlines())
        for folder in ("lm_probes", "scripts", "tests")
        for p in (REPO_ROOT / folder).rglob("*.py")
    }
    too_long = {path: n for path, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not too_long, f"over {MAX_MODULE_LINES} lines: {too_long}"


def test_readme_layout_names_every_package_and_nothing_else():
    """The README's Layout is a short table of folders: every package of lm_probes/ and each
    folder it names exist (a renamed or removed one shows up here)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Layout", 1)[1].split("\n\n", 2)[2]
    named = re.findall(r"^\| `([\w./-]+)/` \|", table, flags=re.MULTILINE)
    packages = {str(p.parent.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "lm_probes").glob("*/__init__.py")}
    assert packages <= set(named), f"README layout: missing {packages - set(named)}"
    for folder in named:
        assert (REPO_ROOT / folder).is_dir(), f"README layout names {folder}/, which is not in the tree"


def test_the_development_page_names_every_module_and_unit_test_file():
    """docs/development.md's layout names every module of lm_probes/ under its package, and
    every unit test file; everything it names exists."""
    page = (REPO_ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    layout = page.split("## Layout", 1)[1].split("```", 2)[1]
    named, package = set(), ""
    for line in layout.splitlines():
        folder = re.match(r"^  (\w+)/", line)
        if folder:
            package = folder.group(1) + "/"
        for module in re.findall(r"(?:^  |^    |, )(\w+\.py)\b", line):
            named.add(("" if line.startswith("  ") and not line.startswith("    ") else package) + module)
    modules = {str(p.relative_to(REPO_ROOT / "lm_probes")) for p in (REPO_ROOT / "lm_probes").rglob("*.py")}
    modules = {m for m in modules if not m.endswith("__init__.py")}
    assert named == modules, f"docs/development.md: missing {modules - named}, gone {named - modules}"
    unit_tests = {p.name for p in (REPO_ROOT / "tests" / "unit").rglob("test_*.py")}
    assert not unit_tests - set(re.findall(r"\b(test_\w+\.py)\b", page)), "a unit test file is not named"


def test_the_readme_stays_a_page_for_users():
    """About 200 lines: the rest lives in docs/ and CHANGELOG.md."""
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move the details to docs/"
