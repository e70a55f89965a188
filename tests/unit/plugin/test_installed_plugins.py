"""An installed package's ``lm_probes`` entry point (issue 36): found in a fresh process with
no conftest, as the ``lm-probes`` commands and a user's script start, and, when it fails to
import, named in one message (docs/extending.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lm_probes import registry
from lm_probes.cards.card import CardError, load_card
from lm_probes.paths import CARDS_DIR, REPO_ROOT


def _installed(site: Path, name: str, module: str) -> None:
    """A package installed at ``site`` (its dist-info, as pip writes it) whose ``lm_probes``
    entry point is the module ``name`` with the text ``module``."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[lm_probes]\n{name} = {name}\n", encoding="utf-8")
    (site / f"{name}.py").write_text(module, encoding="utf-8")


INSTALLED_PLUGIN = """
import sys
from typing import Literal

from lm_probes.cards.schema import register_source
from lm_probes.cards.sources import Source
from lm_probes.section_specs import Tolerance
from lm_probes.served import engines
from lm_probes.snapshots import sections


class LocalWeights(Source):
    source: Literal["local-weights"]
    path: str

    def describe(self):
        return self.path

    def load_model(self, options, files, device):
        raise NotImplementedError


register_source(LocalWeights, model=True)
engines.register(engines.Engine("user-engine", "d", environment=lambda: None, command=lambda *a: [sys.executable]))
sections.register(
    sections.Section(
        "user_section", "m", lambda s: None, lambda r, c, x: [], lambda *a: [],
        tolerances={"user_budget": Tolerance("t", 1.0)}, leavable=True,
    )
)
"""

USER_CARD = """name: user-weights
description: d
tokenizer: {source: mistral-common}
model: {source: local-weights, path: /w}
served: {engine: user-engine, parity: {prob_atol: 1.0e-4, kl_max: 1.0e-6}, bare_request: sampled}
snapshot: {leave_out: [user_section]}
tolerances: {user_budget: 2.0}
"""


def _fresh_python(code: str, site: Path, *args: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter with ``site`` on its path, as a user's process starts."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


def test_an_installed_packages_entry_point_registers_without_a_conftest(tmp_path):
    """A package's ``[project.entry-points.lm_probes]`` is loaded when a card is read, in a
    fresh process with no pytest session: a card may name its source, engine, section and
    tolerance. (Without the package the same card is refused, naming the source.)"""
    site = tmp_path / "site"
    _installed(site, "user_plugin", INSTALLED_PLUGIN)
    card = tmp_path / "user-weights.yaml"
    card.write_text(USER_CARD, encoding="utf-8")
    read = (
        "import sys\nfrom lm_probes.cards.card import load_card\ncard = load_card(sys.argv[1])\n"
        "print(card.model.describe(), card.served.engine, card.snapshot.leave_out, card.tolerances.user_budget)"
    )
    run = _fresh_python(read, site, str(card))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split("\n")[0] == "/w user-engine ['user_section'] 2.0"
    without = _fresh_python(read, tmp_path / "nothing-installed", str(card))
    assert without.returncode == 1 and "model.source: 'local-weights' is not one of" in without.stderr


def test_a_plugin_that_fails_to_import_is_named_in_one_message(tmp_path, monkeypatch):
    """A broken installed plugin: reading a card says which plugin and why (every time, not
    once), and an lm-probes command stops with that one line and exit 4, instead of calling
    the plugin's names unknown or printing a traceback."""
    site = tmp_path / "site"
    _installed(site, "broken_plugin", "import a_module_that_is_not_installed\n")
    said = r"the lm_probes plugin 'broken_plugin' \(broken_plugin\) failed to import: ModuleNotFoundError: "
    monkeypatch.syspath_prepend(str(site))
    registry.reset_plugins()
    try:
        for _ in range(2):
            with pytest.raises(CardError, match=said + ".*a_module_that_is_not_installed.*uninstall the package"):
                load_card(CARDS_DIR / "mistral-tokenizer.yaml")
    finally:
        sys.modules.pop("broken_plugin", None)
        registry.reset_plugins()
    command = _fresh_python("import sys\nfrom lm_probes.cli.main import main\nsys.exit(main())", site, "diff", "a", "b")
    assert command.returncode == 4 and "Traceback" not in command.stderr, command.stderr[-2000:]
    assert re.fullmatch("lm-probes diff: " + said + ".*\n", command.stderr), command.stderr
