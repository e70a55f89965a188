"""Progress (lm_probes/progress.py): a pytest session's line when a probe runs long and
draft-card's bar over its phases appear on a terminal, and stay silent under -q, in CI and
when the output is not a terminal."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from lm_probes import progress
from lm_probes.cli import main as cli
from lm_probes.draft.settings import Draft
from lm_probes.draft.tokenizer import draft_tokenizer
from lm_probes.paths import REPO_ROOT
from lm_probes.subjects import results
from tests.unit.conftest import tiny


class Terminal(io.StringIO):
    """Captured output that says it is a terminal, as a user's is."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def quiet_env(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(progress.ENV, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "mode, tty, verbosity, ci, shown",
    [
        ("auto", True, 0, "", True),
        ("auto", False, 0, "", False),  # a pipe or a file
        ("auto", True, -1, "", False),  # -q
        ("auto", True, 0, "true", False),  # CI
        ("auto", True, 0, "0", True),  # CI=0 is no CI
        ("on", False, -1, "true", True),  # asked for: shown anywhere
        ("off", True, 1, "", False),
    ],
)
def test_progress_shows_on_a_terminal_only_and_never_under_quiet_or_ci(quiet_env, mode, tty, verbosity, ci, shown):
    quiet_env.setenv("CI", ci)
    assert progress.wanted(mode, Terminal() if tty else io.StringIO(), verbosity) is shown


# -------------------------------------------------------------------- pytest


def _session(monkeypatch, report, stdout: io.StringIO, *args: str) -> str:
    """The suite's D9 top-k test on tiny-mistral in this process (as conftest's run_suite, but
    with ``stdout`` as the terminal), a line due at any probe (--lm-probes-progress-after 0)."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        code = pytest.main(
            ["-p", "no:cacheprovider", "-p", "no:unraisableexception", f"--html={report / 'report.html'}"]
            + [
                "tests/behaviour/test_decoding.py",
                "--lm-probes-card",
                "tiny-mistral",
                "-k",
                "test_top_k_sampling_draws_only_from_the_k_most_likely",
            ]
            + ["--lm-probes-progress-after", "0", *args]
        )
    assert code == 0, stdout.getvalue()[-2000:]
    return stdout.getvalue()


# the card, the probe (the result being computed), its seconds and new tokens so far
LINE = re.compile(r"^tiny-mistral: top_k \(\d+ s, \d+ tokens so far\)$", re.MULTILINE)


def test_a_long_probe_gets_a_line_naming_its_card_on_a_terminal(quiet_env, tmp_path):
    assert LINE.search(_session(quiet_env, tmp_path, Terminal()))


@pytest.mark.parametrize(
    "stdout, args, ci",
    [(Terminal(), ("-q",), ""), (Terminal(), (), "1"), (io.StringIO(), (), "")],
    ids=["quiet", "ci", "not-a-terminal"],
)
def test_no_progress_line_under_quiet_in_ci_or_off_a_terminal(quiet_env, tmp_path, stdout, args, ci):
    quiet_env.setenv("CI", ci)
    output = _session(quiet_env, tmp_path, stdout, *args)
    assert "passed" in output and "tiny-mistral: top_k" not in output


def test_progress_on_writes_the_lines_into_a_log_too(quiet_env, tmp_path):
    assert LINE.search(_session(quiet_env, tmp_path, io.StringIO(), "--lm-probes-progress", "on"))


# ---------------------------------------------------------------- draft-card


def test_the_bar_names_each_phase_with_its_tokens_and_ends_at_its_plan():
    subject, stream = tiny(), Terminal()
    with progress.DraftBar({"sampling": 100, "beam": 60}, stream, enabled=True) as bar:
        results.sampled(subject, "warm")
        assert bar.describe() == f"sampling ({bar.done['sampling']}/100 tokens)" and bar.position() <= 100
        results.beam_against_greedy(subject)
        assert bar.position() >= 100  # sampling left: counted in full, though its rows stopped early
        bar.finish()
    shown = stream.getvalue()
    assert "sampling (" in shown and "/100 tokens)" in shown and "beam (" in shown
    assert "160/160 new tokens" in shown


def test_the_plan_is_rows_times_new_tokens_of_each_phase_and_grows_with_the_draws():
    two, ten = progress.draft_plan(2), progress.draft_plan(10)
    # near-greedy: the suite's 5 samples only; warm and hot over the draws
    assert two["sampling"] == (1 + 2 * 2) * 5 * 20 and ten["sampling"] == (1 + 2 * 10) * 5 * 20
    assert ten["creative"] == 3 * 3 * 11 * 30 and two["beam"] == 5 * 12
    assert "first_tokens" not in two and progress.draft_plan(2, snapshot=True)["first_tokens"] == 400


def _quick_draft(subject, settings):
    """draft-card's measuring cut to the tokenizer and one sampled result: the command's
    bar, labels and messages in seconds."""
    draft = Draft()
    draft.expect["tokenizer"] = draft_tokenizer(subject.tokenizer, draft)
    results.sampled(subject, "warm")
    return draft


@pytest.mark.parametrize("terminal, ci, shown", [(True, "", True), (False, "", False), (True, "1", False)])
def test_draft_card_shows_its_bar_on_a_terminal_only(quiet_env, tmp_path, terminal, ci, shown):
    from transformers.utils import logging as hf_logging

    quiet_env.setenv("CI", ci)
    quiet_env.setattr("lm_probes.cli.draft_card.draft_card", _quick_draft)
    stderr = Terminal() if terminal else io.StringIO()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(
                ["draft-card", "--card", "tiny-mistral", "--name", "quick", "-o", str(tmp_path / "quick.yaml")]
            )
        # off a terminal transformers' own bars (the GGUF conversion's) are silenced too (on one,
        # the subject's load silences the loading bar of its own)
        assert shown or not hf_logging.is_progress_bar_enabled()
    finally:
        (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()
    err = stderr.getvalue()
    assert code == 0, err
    assert ("sampling (" in err and "new tokens" in err) is shown, err
    assert "wrote " in err and "measured in" in err
