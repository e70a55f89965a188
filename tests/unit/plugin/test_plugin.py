"""The pytest wiring, end to end: each case runs the suite the way a user would (in
this process, through the ``run_suite`` fixture of conftest.py; one case as a real
subprocess) and checks the outcome and the message."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from lm_probes.cards.files import package_file
from lm_probes.paths import REPO_ROOT


@pytest.fixture
def modified_tokenizer(tmp_path):
    """A folder holding the real Mistral tokenizer with add_bos_token switched off."""
    folder = tmp_path / "no-bos-tokenizer"
    folder.mkdir()
    shutil.copyfile(package_file("mistral_common", "tokenizer.model.v1"), folder / "tokenizer.model")
    config = {"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_modified_tokenizer_fails_the_affected_tests_with_clear_messages(run_suite, tmp_path, modified_tokenizer):
    result = run_suite(
        "tests/behaviour/test_tokenizer.py",
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-model",
        str(modified_tokenizer),
    )
    out = result.stdout
    assert result.returncode == 1, out
    # The BOS default is what changed: that test names card, file, field, expected, obtained.
    assert (
        "FAILED tests/behaviour/test_tokenizer.py::"
        "test_bos_prepended_by_default_and_absent_without_special_tokens[mistral-tokenizer]" in out
    )
    assert (
        "card 'mistral-tokenizer' (fixtures/cards/mistral-tokenizer.yaml), field expect.tokenizer.bos.added_by_default"
        in out
    )
    assert "expected: True" in out and "obtained: False" in out
    assert f"model loaded from --lm-probes-model {modified_tokenizer}" in out
    assert "FAILED tests/behaviour/test_tokenizer.py::test_encode[mistral-tokenizer-english]" in out
    assert (
        "FAILED tests/behaviour/test_tokenizer.py::test_duplicate_bos_detected[mistral-tokenizer-knowledge-prompt]"
        in out
    )
    # What BOS does not touch still passes.
    for unaffected in (
        "test_vocab_size[mistral-tokenizer]",
        "test_vocab_table[mistral-tokenizer]",
        "test_encode[mistral-tokenizer-hello-special-off]",
        "test_first_token[mistral-tokenizer-japanese]",
    ):
        assert f"FAILED tests/behaviour/test_tokenizer.py::{unaffected}" not in out
    assert "Traceback" not in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-CUDA skip; this machine has CUDA")
def test_gpu_cards_are_skipped_with_a_reason_naming_cuda(run_suite):
    result = run_suite("tests/behaviour", "-m", "gpu", "-rs")
    out = result.stdout
    assert result.returncode == 0, out
    skipped = re.search(r"(\d+) skipped", out)
    assert skipped and int(skipped.group(1)) > 0, out
    assert "passed" not in out.splitlines()[-1] and "failed" not in out.splitlines()[-1], out
    assert "requires CUDA; none found" in out
    assert "mistral-7b-v0.1" in out


def test_default_run_deselects_gpu_cards(run_suite):
    result = run_suite("tests/behaviour", "--collect-only", "-q")
    assert "mistral-7b-v0.1" not in result.stdout
    assert "test_vocab_size[mistral-tokenizer]" in result.stdout


@pytest.mark.parametrize(
    "args, messages",
    [
        (["--lm-probes-card", "smolm2"], ["Unknown card 'smolm2'. Did you mean smollm2-135m-instruct?"]),
        (["--lm-probes-model", "org/model"], ["replaces the model of exactly one card", "Add --lm-probes-card NAME"]),
        (["--lm-probes-card", "tiny-mistral", "--lm-probes-model", "{tmp}/nowhere"], ["no such folder"]),
        (["--lm-probes-device", "gpu0"], ["--lm-probes-device 'gpu0': use auto, cpu, cuda, cuda:N or mps"]),
    ],
    ids=["unknown-card", "model-needs-one-card", "missing-model-folder", "bad-device"],
)
def test_usage_errors_exit_4_with_a_message(run_suite, tmp_path, args, messages):
    result = run_suite(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 4
    for message in messages:
        assert message in result.stderr


def test_unloadable_model_stops_the_session_with_one_message(run_suite):
    result = run_suite(
        "tests/behaviour",
        "--lm-probes-card",
        "smollm2-135m-instruct",
        "--lm-probes-model",
        "no-such-org/no-such-model",
        env={"HF_HUB_OFFLINE": "1"},
    )
    out = result.stdout + result.stderr
    assert result.returncode == 4, out
    assert out.count("cannot load the tokenizer") == 1, out
    assert "'no-such-org/no-such-model' is neither a local folder nor a loadable hub id" in out
    assert "HF_HUB_OFFLINE is set" in out


def test_unloadable_model_under_two_workers_stops_the_session_with_the_message(run_suite):
    """make report / make test run two workers, where pytest.exit would end in an
    INTERNALERROR: the first test's setup carries the message and the session stops with it.
    (One worker here: the same worker code path, half the start-up.)"""
    result = run_suite(
        "tests/behaviour/test_model.py",
        "-n",
        "1",
        "--lm-probes-card",
        "smollm2-135m-instruct",
        "--lm-probes-model",
        "no-such-org/no-such-model",
        env={"HF_HUB_OFFLINE": "1"},
    )
    out = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "INTERNALERROR" not in out
    assert "Interrupted: lm-probes: card 'smollm2-135m-instruct': cannot load the tokenizer" in out
    assert "'no-such-org/no-such-model' is neither a local folder nor a loadable hub id" in out
    assert out.count("ERROR tests/behaviour/test_model.py") == 1, out  # the first test's setup
    assert "During handling" not in out  # the message alone, no chained traceback


def test_list_cards_from_the_command_line():
    """The one real subprocess: `python -m pytest` from the repository root picks up the
    plugin through its pytest11 entry point and the options from pyproject.toml, as a
    user's shell would."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lm-probes-list-cards"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mistral-7b-v0.1 [gpu]:" in result.stdout and "tiny-mistral:" in result.stdout


_IDLE_PROBE = """
import sys


def pytest_sessionfinish(session):
    from lm_probes.plugin.session import RECORD

    if not hasattr(session.config, "workerinput"):
        cards_read = session.config.stash[RECORD].cards is not None
        print("CARDS-READ", cards_read, "TORCH", "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    "extra, busy",
    [
        ((), False),  # another project's tests: the plugin stays idle
        (("-n", "2"), False),  # the same under pytest-xdist (the controller and the workers)
        (("--lm-probes-card", "mistral-tokenizer"), True),  # asked for by an option: cards read, torch for the report
    ],
    ids=["plain", "xdist", "an-option"],
)
def test_the_plugin_costs_nothing_until_a_session_uses_it(tmp_path, extra, busy):
    """Installed in an environment, the plugin reads no card and imports no torch in a
    session that uses none of its options, fixtures or test paths (issue 25)."""
    (tmp_path / "conftest.py").write_text(_IDLE_PROBE, encoding="utf-8")
    (tmp_path / "test_other.py").write_text("def test_one():\n    assert 1 + 1 == 2\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *extra, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"CARDS-READ {busy} TORCH {busy}" in result.stdout, result.stdout
