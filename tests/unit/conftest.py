"""Shared factories of the library's tests: subjects of the embedded cards
(``tiny``, ``tiny_card``, ``tokenizer_subject``), and ``run_suite``, the suite run end
to end inside this process.

A subprocess per case cost 2-3 s of importing torch and transformers each time, so the
run is ``pytest.main`` here instead (pytest's supported in-process entry point), from
the repository root: it sees the rootdir, the pyproject addopts and the plugin (its
pytest11 entry point) exactly as a user's ``pytest`` would, and loads its own subjects (nothing is
shared with this session). pytester is not used: it drops the modules a run imported
afterwards, and torch cannot import some of them twice (its operator registry is
per process).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import pytest

from lm_probes.cards.card import Card, find_card
from lm_probes.paths import REPO_ROOT
from lm_probes.subjects.subject import Subject

# ----------------------------------------------------------------------- ordering


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The unit tests that run a pytest session of their own (``run_suite``), and those marked
    ``long``, go first among the unit tests: they are the longest (up to ~25 s each). make test's two
    workers take work in this order, so the run ends on short tests; one of them taken
    last kept its worker busy ~8 s after the other had finished (measured)."""
    unit = [i for i in items if "tests/unit/" in i.nodeid]
    goes_first = {
        i.nodeid: "run_suite" in getattr(i, "fixturenames", ()) or i.get_closest_marker("long") is not None
        for i in unit
    }
    first = [i for i in unit if goes_first[i.nodeid]]
    rest = [i for i in unit if not goes_first[i.nodeid]]
    position = items.index(unit[0]) if unit else len(items)
    items[position : position + len(unit)] = first + rest


# ------------------------------------------------------------------ subject factories


def tiny_card(**config) -> Card:
    """The tiny-mistral card, its model config changed where ``config`` says."""
    card = find_card("tiny-mistral")
    if not config:
        return card
    return card.replace(model=card.model.model_copy(update={"config": {**card.model.config, **config}}))


@pytest.fixture(scope="module")
def tiny_tokenizer_and_model():
    """The tiny-mistral card's tokenizer and model, loaded once per test module."""
    subject = Subject(find_card("tiny-mistral"))
    return subject.tokenizer, subject.model


def tiny(**config) -> Subject:
    """A fresh tiny-mistral subject (nothing cached, its own model): for a test that
    changes the model or needs its probes run anew."""
    return Subject(tiny_card(**config))


def tokenizer_subject(**tokenizer_config) -> Subject:
    """The mistral-tokenizer card's subject, its tokenizer_config changed where asked."""
    return Subject(find_card("mistral-tokenizer").with_tokenizer_config(**tokenizer_config))


# ------------------------------------------------------------------------ run_suite


@dataclass(frozen=True)
class SuiteRun:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_suite(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """``run_suite(*args, env=None)``: ``pytest -p no:cacheprovider -p no:unraisableexception
    --html=<tmp>/report.html *args``
    from the repository root; returns the exit code and what it printed. ``env`` is set
    for the run and put back after the test."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    # a run's CI summary goes where the test says (env=), never into the real job's page
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    # Inside a pytest-xdist worker (make test), the run must not look like one: that
    # environment turns pytest-benchmark off, for one.
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, env: dict[str, str] | None = None) -> SuiteRun:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        stdout, stderr = io.StringIO(), io.StringIO()
        # no:unraisableexception: that plugin's gc.collect() twice at the end of each run
        # costs ~0.2 s in a process holding torch and transformers (x ~30 runs)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            returncode = pytest.main(
                ["-p", "no:cacheprovider", "-p", "no:unraisableexception", f"--html={tmp_path / 'report.html'}", *args]
            )
        return SuiteRun(int(returncode), stdout.getvalue(), stderr.getvalue())

    return run


@pytest.fixture(scope="session")
def tiny_unchanged() -> Subject:
    """One tiny-mistral subject for the tests that doctor only the recording (its probe
    results are computed once and shared); tests that change the model build their own."""
    return tiny()


@pytest.fixture(scope="session")
def tiny_recorded(tiny_unchanged):
    """What a snapshot of that subject holds: its observations and provenance."""
    from lm_probes.snapshots.record import observe, provenance

    return observe(tiny_unchanged), provenance(tiny_unchanged)
