"""Ctrl-C while a session finishes: the report is still written, and the session says it was
interrupted.

A terminal's Ctrl-C reaches every process of the foreground group: pytest and its xdist
workers. During the tests pytest turns it into "Interrupted" (exit 2) and still writes the
report. In ``pytest_sessionfinish`` it does not: there xdist waits for its workers to stop
and pytest-html writes the page, and a KeyboardInterrupt raised inside that hook escapes as
a raw traceback, with no report of what ran (issue 32). So while the session finishes, a
first Ctrl-C is noted and finishing goes on (xdist's wait for its workers is bounded by its
own timeout); the session then ends as interrupted. A second Ctrl-C stops at once, as usual.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


class _Deferred:
    def __init__(self) -> None:
        self.interrupted = False


@contextmanager
def ctrl_c_deferred() -> Iterator[_Deferred]:
    """Within: the first SIGINT is noted, not raised; a second one raises as usual."""
    deferred = _Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield deferred  # signal handlers can be set only from the main thread
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        if deferred.interrupted:  # the second Ctrl-C: stop now
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        deferred.interrupted = True
        sys.stderr.write(
            "\nlm-probes: interrupted while the session finishes; writing the report (Ctrl-C again to stop now)\n"
        )

    signal.signal(signal.SIGINT, note)
    try:
        yield deferred
    finally:
        signal.signal(signal.SIGINT, previous)


GUARD_NAME = "lm-probes-finish-guard"


class SessionFinishGuard:
    """Registered by plugin/hooks.py's pytest_configure: the outermost pytest_sessionfinish
    wrapper, so that everything finishing runs under it (xdist's teardown, pytest-html's page)."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Iterator[None]:
        with ctrl_c_deferred() as deferred:
            result = yield
        if deferred.interrupted:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        return result
