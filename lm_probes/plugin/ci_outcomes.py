"""Each test's outcome by card, gathered where the session ends (the controller of a pytest-xdist
run, which gets every worker's reports), and the CI summary written from them at the end
(lm_probes/report/ci_summary.py): to --lm-probes-summary FILE and to $GITHUB_STEP_SUMMARY.

Written only in a session that used lm-probes: a host project's own session, with the plugin
installed and unused, writes nothing, not even where $GITHUB_STEP_SUMMARY is set."""

from __future__ import annotations

import os

import pytest

from lm_probes.plugin.options import options_of
from lm_probes.plugin.session import record_of

PLUGIN_NAME = "lm_probes_ci_outcomes"
CARD_PROPERTY = "lm_probes_card"  # the user property naming a test's card (plugin/hooks.py)


def outcome_of(report: pytest.TestReport) -> str | None:
    """A test's outcome from one of its reports: the call phase's, or a setup/teardown error, or a
    skip at setup; None for the phases that say nothing new."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            return "xfailed" if report.skipped else "xpassed"
        return report.outcome
    if report.failed:
        return "error"
    if report.when == "setup" and report.skipped:
        return "xfailed" if xfail else "skipped"
    return None


def message_of(report: pytest.TestReport) -> str:
    """What a failure says first: the assertion's or pytest.fail's message, not the traceback."""
    crash = getattr(report.longrepr, "reprcrash", None)
    return getattr(crash, "message", None) or report.longreprtext


class CiOutcomes:
    """A plugin object per session (registered at configure by plugin/hooks.py). It keeps plain
    rows while the tests run (the summary's module is imported only when a summary is written)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.rows: list[tuple[str | None, str, str, str]] = []  # (card, outcome, test, message)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = outcome_of(report)
        if outcome is None:
            return
        card = dict(report.user_properties).get(CARD_PROPERTY)
        test = report.nodeid.rpartition("::")[2] or report.nodeid
        self.rows.append((card, outcome, test, message_of(report) if outcome in ("failed", "error") else ""))

    @pytest.hookimpl(trylast=True)  # after pytest-html: its page exists when the summary links it
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        wanted = options_of(self.config).summary
        if not record_of(self.config).in_use or not (wanted or os.environ.get("GITHUB_STEP_SUMMARY")):
            return
        from lm_probes.report import ci_summary

        by_card: dict[str, ci_summary.CardResult] = {}
        other = ci_summary.CardResult()
        for card, outcome, test, message in self.rows:
            result = other if card is None else by_card.setdefault(card, ci_summary.CardResult())
            result.add(outcome, test, message)
        markdown = ci_summary.session_markdown(
            by_card, record_of(self.config).snapshots, other, self.config.getoption("htmlpath", None), int(exitstatus)
        )
        ci_summary.write(markdown, wanted)
