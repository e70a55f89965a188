"""Ctrl-C while a two-worker session finishes (lm_probes/plugin/interrupts.py): the report of
what ran is written, the session ends as interrupted (exit 2) without a traceback, and no
worker is left running.

Ctrl-C is sent the way a terminal sends it, to the whole process group, from the
controller's own pytest_sessionfinish: the moment xdist tears its workers down and before
pytest-html writes the page (before the guard, a raw KeyboardInterrupt traceback and no page).
The session runs in a process group of its own, so the signal never reaches this pytest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CONFTEST = """
import os, signal, time

def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput") or os.environ.get("CTRL_C_AT_FINISH") != "1":
        return
    os.killpg(os.getpgid(0), signal.SIGINT)  # Ctrl-C: every process of the group
    time.sleep(0.5)  # the signal is handled here, inside pytest_sessionfinish
"""


def _run(folder, ctrl_c: bool) -> tuple[subprocess.CompletedProcess, bool]:
    (folder / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (folder / "test_few.py").write_text("def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    env = {**os.environ, "CTRL_C_AT_FINISH": "1" if ctrl_c else "0"}
    report = folder / "report.html"
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", f"--html={report}", str(folder)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
        # a child of a non-interactive shell may inherit SIGINT ignored; a terminal's pytest does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return process, report.is_file()


def _workers_left(folder) -> list[str]:
    time.sleep(0.5)
    found = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True).stdout.split()
    return [pid for pid in found if int(pid) != os.getpid()]


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
def test_ctrl_c_while_the_session_finishes_still_writes_the_report_and_exits_interrupted(tmp_path):
    process, report_written = _run(tmp_path, ctrl_c=True)
    output = process.stdout + process.stderr
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert report_written, output[-3000:]
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert "interrupted while the session finishes" in process.stderr
    assert "2 passed" in process.stdout  # what ran is reported
    assert not _workers_left(tmp_path)


def test_a_session_finishing_without_ctrl_c_is_unchanged(tmp_path):
    """The harmless twin: the guard changes nothing when nobody presses Ctrl-C."""
    process, report_written = _run(tmp_path, ctrl_c=False)
    assert process.returncode == 0 and report_written, process.stdout[-3000:]
    assert "interrupted" not in process.stderr
