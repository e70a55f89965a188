"""The pytest plugin (the ``pytest11`` entry point): pytest's hooks, each handing over to
the module that does the work. A session that uses none of lm-probes' options, fixtures or
markers reads no card and imports no torch.

How a behaviour test gets its subject::

    @pytest.mark.observation("T4", expects="tokenizer.vocab_size")
    def test_vocab_size(lm_probes_subject): ...

``pytest_generate_tests`` parametrizes ``lm_probes_subject`` over the selected cards that have the
``expects`` field (plugin/selection.py); the test id is ``card`` or ``card-case``
(``test_encode[mistral-tokenizer-english]``). The fixtures are in plugin/fixtures.py, the
session's record (what the report shows, sent by pytest-xdist workers) in plugin/session.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

# Only light modules here: installed, the plugin loads in every pytest session of the
# environment, and one that never uses lm-probes must not pay for the cards or torch
# (tests/unit/plugin/test_plugin.py). The rest is imported by the hooks that need it.
from lm_probes.plugin import ci_outcomes, html_summary, interrupts, options
from lm_probes.plugin import items as item_info  # (pytest names a hook's argument `items`)
from lm_probes.plugin.fixtures import (
    lm_probes_attach,
    lm_probes_loaded_subject,
    lm_probes_model_subject,
    lm_probes_reference_subject,
    lm_probes_served_endpoint,
    lm_probes_snapshot,
    lm_probes_subject,
)
from lm_probes.plugin.session import RECORD, SessionRecord, is_xdist_controller, record_of

# pytest finds a plugin's fixtures among its module's names
__all__ = [
    "lm_probes_attach",
    "lm_probes_loaded_subject",
    "lm_probes_model_subject",
    "lm_probes_reference_subject",
    "lm_probes_served_endpoint",
    "lm_probes_snapshot",
    "lm_probes_subject",
]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """The hooks a user's conftest may implement (lm_probes/plugin/hookspecs.py)."""
    from lm_probes.plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    """A command line with a 0.1 spelling (``--card``) that no plugin or conftest took: one
    sentence naming the new one, instead of argparse's "unrecognized arguments". After the
    initial conftests (a host's own ``--device`` is registered by then, and is theirs)."""
    loaded = yield
    hint = options.old_spelling_hint(parser, args)
    if hint is not None:
        raise pytest.UsageError(hint)
    return loaded


@pytest.hookimpl(tryfirst=True)  # before pytest-html's, which makes the report's folder
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs CUDA; runs only with `-m gpu` (the GPU cards)")
    config.addinivalue_line("markers", "slow: an opt-in card (`marks: [slow]`); runs only with `-m slow`")
    config.addinivalue_line("markers", "benchmark: timing benchmark; runs only with `-m benchmark`")
    config.addinivalue_line(
        "markers",
        "served: parity of a served model with transformers; runs only with `-m served` (and --lm-probes-serve "
        "or --lm-probes-endpoint)",
    )
    config.addinivalue_line(
        "markers",
        "observation(*ids, expects=None): the observations a test checks (docs/observations.md) and the card field it "
        "needs (or a tuple of fields, any one of which); parametrizes `lm_probes_subject`/"
        "`lm_probes_model_subject` over the cards having it",
    )
    if hasattr(config, "workerinput"):
        # A pytest-xdist worker: one torch thread. Two workers of two spinning OpenMP
        # threads each on two cores ran slower than one process; set before torch loads.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        # A test that asks for another thread count (a harmless change) must not spin
        # on the core the other worker is using: idle OpenMP threads sleep.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config.stash[RECORD] = SessionRecord(in_use=options.options_given(config))
    # Ctrl-C while the session finishes (xdist's teardown, pytest-html's page) still writes the
    # report of what ran and ends as interrupted (plugin/interrupts.py)
    if not config.pluginmanager.has_plugin(interrupts.GUARD_NAME):
        config.pluginmanager.register(interrupts.SessionFinishGuard(), interrupts.GUARD_NAME)
    if not hasattr(config, "workerinput") and not config.pluginmanager.has_plugin(ci_outcomes.PLUGIN_NAME):
        # each test's outcome by card, and the Markdown summary at the end (plugin/ci_outcomes.py)
        config.pluginmanager.register(ci_outcomes.CiOutcomes(config), ci_outcomes.PLUGIN_NAME)
    if not hasattr(config, "workerinput"):  # the controller checked them for its workers
        from lm_probes.plugin import checks

        checks.check_session_options(config)
    if config.stash[RECORD].in_use:
        # selected now, so a bad --lm-probes-card is a usage error before anything runs; otherwise
        # on first use, and not at all in a session that never uses them
        from lm_probes.plugin import selection

        selection.selected_cards(config)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # At session start, not configure: a usage error then exits before torch is imported.
    # (tryfirst: pytest-html reads the metadata in its own sessionstart.) The controller of
    # a pytest-xdist run loads no torch for it (the workers send theirs); a session not yet
    # known to use lm-probes fills it in once its collected tests say so.
    config = session.config
    if record_of(config).in_use or is_xdist_controller(config):
        html_summary.add_environment_metadata(config)
    if not options.options_of(config).onednn:
        import torch

        torch.backends.mkldnn.enabled = False  # read back into every subject's numerics fingerprint


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter asks for the collection report lines
def pytest_collection_finish(session: pytest.Session) -> None:
    record = record_of(session.config)
    if not record.in_use and any(item_info.uses_lm_probes(item) for item in session.items):
        record.in_use = True
        html_summary.add_environment_metadata(session.config)  # the same dict pytest-html renders at the end
    if record.in_use:
        from lm_probes import progress

        # a line per card when a probe runs long
        chosen = options.options_of(session.config)
        progress.start_session(session.config, chosen.progress, chosen.progress_after)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    card = item_info.card_of(item)
    if card is None:
        yield
        return
    from lm_probes.ledger import LEDGER

    with LEDGER.probe(item.originalname, card):  # a test's model work outside the results is its own
        yield


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if options.options_of(config).list_cards:
        from lm_probes.cards.card import CardError, available_cards, cards_dirs, find_card
        from lm_probes.plugin import selection

        folders = selection.user_cards_dirs(config)
        try:
            known = available_cards(folders)
        except CardError as exc:  # two of the user's folders hold one name
            raise pytest.UsageError(str(exc)) from None
        for name, path in known.items():
            try:
                card = find_card(str(path))
                marks = f" [{', '.join(card.marks)}]" if card.marks else ""
                print(f"{name}{marks}: {card.description.strip().splitlines()[0]}")
            except CardError as exc:
                print(f"{name}: INVALID: {exc}")
        print(f"(cards live in {', '.join(str(d) for d in cards_dirs(folders))})")
        return 0
    return None


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """The selected cards, once collection has shown that the session uses them (before,
    pytest_report_header, nothing is read: a session that never uses lm-probes)."""
    record = record_of(config)
    if config.get_verbosity() < 0 or not record.in_use or record.cards is None:
        return []  # (-q hides it, as it hides the session header)
    cards = record.cards
    lines = [
        f"lm-probes cards: {', '.join(c.name + ('[' + ','.join(c.marks) + ']' if c.marks else '') for c in cards)}"
    ]
    if cards and cards[0].model_override:
        lines.append(f"lm-probes --lm-probes-model: {cards[0].model_override} (expectations from card {cards[0].name})")
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if any(f in metafunc.fixturenames for f in item_info.SUBJECT_FIXTURES):
        from lm_probes.plugin import selection

        selection.parametrize(metafunc)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(item_info.uses_lm_probes(item) for item in items):  # else no test of ours: no card to read
        from lm_probes.plugin import selection

        selection.mark_items(config, items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    card = item_info.card_of(item)
    if card is not None:
        report = outcome.get_result()
        record_of(item.config).add_test_outcome(item, report, card)
        # the card travels with the report (pytest-xdist sends user_properties to the controller,
        # which writes the CI summary; junitxml shows it as a property)
        report.user_properties.append((ci_outcomes.CARD_PROPERTY, card))
    # a benchmark's figures, read off the test's own `benchmark` fixture (pytest-benchmark's
    # public object) rather than its plugin's private session
    stats = getattr(getattr(item, "funcargs", {}).get("benchmark"), "stats", None)
    if call.when == "call" and stats is not None:
        record_of(item.config).benchmarks.append(stats)


# ------------------------------------------------------------ pytest-xdist workers
# The report is written by the controller: each worker sends its session record (as JSON,
# which execnet can carry), and the controller merges it.


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") == "each":  # every test on every worker: nothing to group
        return None
    from lm_probes.plugin.xdist import OneWorkerPerCard

    return OneWorkerPerCard(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    record_of(config).stop_servers()  # every server --lm-probes-serve started, and only those
    if record_of(config).in_use:
        from lm_probes import progress

        progress.stop_session(config)
    if hasattr(config, "workeroutput") and record_of(config).in_use:  # an xdist worker of ours
        from lm_probes.environment import torch_runtime_info

        config.workeroutput["lm_probes"] = record_of(config).to_json(torch_runtime_info())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A worker finished (pytest-xdist's hook, run in the controller): merge its record."""
    sent = getattr(node, "workeroutput", {}).get("lm_probes")
    if sent:
        runtime = record_of(node.config).merge(sent)
        html_summary.add_environment_metadata(node.config, runtime)  # the workers share one machine


# -------------------------------------------------------------------------- report


def pytest_html_report_title(report: Any) -> None:
    html_summary.report_title(report)


def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
) -> None:
    html_summary.results_summary(prefix, session)
