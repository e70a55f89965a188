"""Issue 36, extension points: a user's plugin (or conftest.py) decides which machine class a
snapshot is recorded under and compared as, and which recorded class an unrecorded machine is
compared with, through the hooks of lm_probes/plugin/hookspecs.py, as pytest-benchmark lets
its machine info be generated and compared by the user."""

from __future__ import annotations

import json
import shutil

from lm_probes.paths import SNAPSHOT_DIR

FLEET = """
def pytest_lm_probes_machine_class(config, subject, fingerprint_class):
    return "our-fleet"
"""

CHOOSER = """
CALLS = []

def pytest_lm_probes_compare_with(config, own_class, recorded_classes):
    CALLS.append((own_class, sorted(recorded_classes)))
    return "chosen" if "chosen" in recorded_classes else None
"""


def _plugin(tmp_path, monkeypatch, name, source):
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    return ["-p", name]


def test_a_machine_class_hook_names_the_snapshot_recorded_and_compared(run_suite, tmp_path, monkeypatch):
    snapshots = tmp_path / "snapshots"
    args = [
        "tests/behaviour/test_snapshot.py",
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-snapshot-dir",
        str(snapshots),
    ]
    plugin = _plugin(tmp_path, monkeypatch, "fleet_plugin", FLEET)
    assert run_suite(*args, *plugin, "--lm-probes-snapshot-update").returncode == 0
    assert [p.name for p in (snapshots / "mistral-tokenizer").iterdir()] == ["our-fleet.json"]
    compared = run_suite(*args, *plugin, "-rA")
    assert compared.returncode == 0 and "1 passed" in compared.stdout
    # the twin: without the hook the fingerprint's own class is used, which is not recorded there:
    # it is compared with the nearest recorded class (our-fleet) under the cross-class rules
    plain = run_suite(*args, "-rA")
    assert plain.returncode == 0 and "1 passed" in plain.stdout


def test_a_compare_with_hook_picks_the_recorded_class_an_unrecorded_machine_is_compared_with(
    run_suite, tmp_path, monkeypatch
):
    snapshots = tmp_path / "snapshots" / "mistral-tokenizer"
    snapshots.mkdir(parents=True)
    shipped = json.loads((SNAPSHOT_DIR / "mistral-tokenizer" / "cpu.json").read_text(encoding="utf-8"))
    shipped["observed"]["tokenizer"]["bos_token_id"] = 7  # the chosen class differs, the nearest would not
    (snapshots / "chosen.json").write_text(json.dumps(shipped), encoding="utf-8")
    shutil.copy(SNAPSHOT_DIR / "mistral-tokenizer" / "cpu.json", snapshots / "cpu-similar.json")
    args = [
        "tests/behaviour/test_snapshot.py",
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-snapshot-dir",
        str(snapshots.parent),
    ]
    chosen = run_suite(*args, *_plugin(tmp_path, monkeypatch, "chooser_plugin", CHOOSER))
    assert chosen.returncode == 1 and "bos_token_id" in chosen.stdout  # compared with "chosen", as the hook said
    import chooser_plugin  # noqa: E402 (put on the path by _plugin)

    own, recorded = chooser_plugin.CALLS[0]
    assert recorded == ["chosen", "cpu-similar"] and own not in recorded
    # the twin: without the hook the nearest recorded class is taken, which agrees
    assert run_suite(*args).returncode == 0
