"""All pytest wiring in one place: options, markers, subject fixtures, report hooks.

How a behaviour test gets its subject::

    @pytest.mark.observation("T4", expects="tokenizer.vocab_size")
    def test_vocab_size(subject): ...

``pytest_generate_tests`` parametrizes ``subject`` over the selected cards that have
the ``expects`` field (and a model, when the test uses ``model_subject``); with a
``case`` argument too, over every item of that list field. The test id is
``card`` or ``card-case`` (``test_encode[mistral-tokenizer-english]``).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from probes.cards.card import (
    Card,
    CardError,
    available_cards,
    cards_dirs,
    find_card,
    looks_like_local_path,
    unknown_expect_path,
)
from probes.cards.sources import DEVICE_PATTERN, DTYPES
from probes.environment import TORCH_RUNTIME_KEYS, environment_info, torch_runtime_info
from probes.report import html as report
from probes.subjects.subject import Subject, SubjectLoadError

if TYPE_CHECKING:  # the snapshot module loads numpy and the probes: imported when used
    from probes.snapshots.check import SnapshotCheck, SnapshotOutcome

SELECTED_CARDS = pytest.StashKey[list[Card]]()
SUBJECTS = pytest.StashKey[dict[str, Subject]]()
# whether this session uses lm-probes (one of its options, or a collected test that uses
# its fixtures): until then the plugin reads no card and imports no torch
IN_USE = pytest.StashKey[bool]()

# the fixtures lm-probes parametrizes over cards (model_subject: cards with a model only)
SUBJECT_FIXTURES = ("subject", "model_subject", "loaded_subject")
# card -> what its snapshot test found, for the report's "Changes since snapshot"
SNAPSHOT_RESULTS = pytest.StashKey[dict[str, "SnapshotOutcome"]]()
# section -> card -> HTML fragments that tests put in the report's summary
SUMMARY_SECTIONS = pytest.StashKey[dict[str, dict[str, list[str]]]]()
# (card, observation id) -> outcomes of the tests that check it
OBSERVATION_OUTCOMES = pytest.StashKey[dict[tuple[str, str], list[str]]]()
# card -> its row of the report's "Subjects" table, as sent by pytest-xdist workers
WORKER_SUBJECT_ROWS = pytest.StashKey[dict[str, dict[str, Any]]]()


# ------------------------------------------------------------------------- options


def _device(value: str) -> str:
    if not re.match(DEVICE_PATTERN, value):
        raise pytest.UsageError(f"--device {value!r}: use auto, cpu, cuda, cuda:N or mps")
    return value


def _seed(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise pytest.UsageError(f"--seed {value!r}: give a non-negative integer") from None
    if seed < 0:
        raise pytest.UsageError(f"--seed {value!r}: give a non-negative integer")
    return seed


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lm-probes", "behavioural tests of language models")
    group.addoption(
        "--card",
        action="append",
        metavar="NAME|PATH",
        help="run against this card (a name in a cards folder, or a YAML path); repeatable. "
        "Default: every card (GPU cards only with -m gpu).",
    )
    group.addoption(
        "--cards-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of your own cards, looked up by name before the shipped ones; repeatable. "
        "Default: the lm_probes_cards_dirs ini option, then the shipped cards only.",
    )
    parser.addini(
        "lm_probes_cards_dirs",
        type="paths",
        default=[],
        help="folders of your own cards (relative to the ini file), looked up before the shipped ones",
    )
    group.addoption(
        "--model",
        metavar="ID|PATH",
        help="load the single selected card's tokenizer and model from this hub id or local "
        "folder instead, keeping the card's expectations. Default: the card's own source.",
    )
    group.addoption(
        "--device",
        type=_device,
        metavar="auto|cpu|cuda|cuda:N|mps",
        help="device for every model. Default: each card's load.device.",
    )
    group.addoption(
        "--dtype",
        choices=DTYPES,
        help="dtype for every model. Default: each card's load.dtype.",
    )
    group.addoption(
        "--seed",
        type=_seed,
        default=0,
        metavar="N",
        help="seed for the sampling probes (a random-init card keeps its own seed). Default: 0.",
    )
    group.addoption(
        "--trust-remote-code",
        action="store_true",
        help="let transformers run model code from the hub or the model folder. Default: off "
        "(a card can turn it on for itself with trust_remote_code: true).",
    )
    group.addoption(
        "--allow-pickle",
        action="store_true",
        help="allow pickle checkpoints (.bin/.pt), which can run code when loaded. Default: safetensors and GGUF only.",
    )
    group.addoption(
        "--no-bnb-packed-cpu",
        action="store_true",
        help="keep bitsandbytes' 4-bit layers on their dequantize-then-matmul CPU path (in the compute "
        "dtype) where the CPU would take the packed AVX512-BF16 kernel: another machine class on this "
        "machine. Default: the kernels bitsandbytes picks.",
    )
    group.addoption(
        "--no-onednn",
        action="store_true",
        help="switch oneDNN off (torch.backends.mkldnn.enabled = False): another machine class for "
        "half-precision cards on CPUs with AVX512-FP16/AMX. Default: on where torch uses it.",
    )
    group.addoption(
        "--snapshot-update",
        action="store_true",
        help="record the snapshots of the selected cards, overwriting existing ones. "
        "Default: compare with them (a missing snapshot fails).",
    )
    group.addoption(
        "--snapshot-dir",
        metavar="DIR",
        default=None,
        help="where snapshots are read and written. Default: fixtures/snapshots.",
    )
    group.addoption(
        "--list-cards",
        action="store_true",
        help="list the known cards and exit.",
    )
    _OWN_OPTIONS.update({option.dest: option.attrs().get("default") for option in group.options})


# ----------------------------------------------------------------------- configure


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs CUDA; runs only with `-m gpu` (the GPU cards)")
    config.addinivalue_line("markers", "slow: an opt-in card (`marks: [slow]`); runs only with `-m slow`")
    config.addinivalue_line("markers", "benchmark: timing benchmark; runs only with `-m benchmark`")
    config.addinivalue_line(
        "markers",
        "observation(*ids, expects=None): the SPEC observations a test checks and the card field it "
        "needs (or a tuple of fields, any one of which); parametrizes `subject`/`model_subject` over "
        "the cards having it",
    )
    if hasattr(config, "workerinput"):
        # A pytest-xdist worker: one torch thread. Two workers of two spinning OpenMP
        # threads each on two cores ran slower than one process; set before torch loads.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        # A test that asks for another thread count (a harmless change) must not spin
        # on the core the other worker is using: idle OpenMP threads sleep.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config.stash[SUBJECTS] = {}
    config.stash[SUMMARY_SECTIONS] = {}
    config.stash[OBSERVATION_OUTCOMES] = {}
    config.stash[SNAPSHOT_RESULTS] = {}
    config.stash[WORKER_SUBJECT_ROWS] = {}
    config.stash[IN_USE] = _options_given(config)
    if config.stash[IN_USE]:
        # selected now, so a bad --card is a usage error before anything runs; otherwise
        # on first use (_selected_cards), and not at all in a session that never uses them
        config.stash[SELECTED_CARDS] = _select_cards(config)


# lm-probes' own options (dest -> default), read from its option group as declared in
# pytest_addoption: one that differs from its default makes a session an lm-probes one at once
_OWN_OPTIONS: dict[str, Any] = {}


def _options_given(config: pytest.Config) -> bool:
    given = any(config.getoption(name) != default for name, default in _OWN_OPTIONS.items())
    return given or bool(config.getini("lm_probes_cards_dirs"))


def _selected_cards(config: pytest.Config) -> list[Card]:
    """The session's cards, read and validated the first time something needs them."""
    if SELECTED_CARDS not in config.stash:
        config.stash[SELECTED_CARDS] = _select_cards(config)
    return config.stash[SELECTED_CARDS]


def _uses_lm_probes(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return any(f in fixtures for f in (*SUBJECT_FIXTURES, "snapshot")) or item.get_closest_marker("observation")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # At session start, not configure: a usage error then exits before torch is imported.
    # (tryfirst: pytest-html reads the metadata in its own sessionstart.) The controller of
    # a pytest-xdist run loads no torch for it (the workers send theirs); a session not yet
    # known to use lm-probes fills it in once its collected tests say so.
    config = session.config
    if config.stash[IN_USE] or _is_xdist_controller(config):
        _add_environment_metadata(config)
    if config.getoption("no_onednn"):
        import torch

        torch.backends.mkldnn.enabled = False  # read back into every subject's numerics fingerprint


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter asks for the collection report lines
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if not config.stash[IN_USE] and any(_uses_lm_probes(item) for item in session.items):
        config.stash[IN_USE] = True
        _add_environment_metadata(config)  # the same dict pytest-html renders at the end


def _user_cards_dirs(config: pytest.Config) -> list[Path]:
    """The user's card folders: --cards-dir, then the ini option; each must exist."""
    folders = [Path(d).expanduser() for d in config.getoption("cards_dir")] + list(
        config.getini("lm_probes_cards_dirs")
    )
    for folder in folders:
        if not folder.is_dir():
            raise pytest.UsageError(
                f"cards folder {folder}: no such folder. Give a folder holding <name>.yaml card files."
            )
    return folders


def _select_cards(config: pytest.Config) -> list[Card]:
    folders = _user_cards_dirs(config)
    names = config.getoption("card") or list(available_cards(folders))
    try:
        cards = [find_card(name, folders) for name in names]
    except CardError as exc:
        raise pytest.UsageError(str(exc)) from None
    model = config.getoption("model")
    if model:
        if len(cards) != 1:
            raise pytest.UsageError(
                f"--model {model}: replaces the model of exactly one card, but {len(cards)} are selected "
                f"({', '.join(c.name for c in cards)}). Add --card NAME."
            )
        looks_local = looks_like_local_path(model)
        if looks_local and not Path(model).expanduser().is_dir():
            raise pytest.UsageError(
                f"--model {model}: no such folder. Give a folder holding a model or tokenizer, or a hub id."
            )
        cards = [cards[0].with_model(str(Path(model).expanduser()) if looks_local else model)]
    return cards


def _add_environment_metadata(config: pytest.Config, runtime: dict[str, str] | None = None) -> None:
    """The report's environment table. The controller of a pytest-xdist run runs no test
    and loads no torch: its torch entries say so until a worker that finishes sends its
    own (``runtime``), which are what the tests ran with."""
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:  # pytest-html not installed: no report to fill
        return
    metadata = config.stash[metadata_key]  # pytest-html renders this same dict at the end
    for noisy in ("Plugins", "Packages", "JAVA_HOME"):
        metadata.pop(noisy, None)
    if runtime is None and _is_xdist_controller(config):
        runtime = dict.fromkeys(TORCH_RUNTIME_KEYS, "(not reported by a worker)")
    # pytest-metadata already shows Python and Platform
    metadata.update({k: v for k, v in environment_info(runtime).items() if k not in ("python", "platform")})


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("list_cards"):
        folders = _user_cards_dirs(config)
        for name, path in available_cards(folders).items():
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
    if config.get_verbosity() < 0 or not config.stash.get(IN_USE, False) or SELECTED_CARDS not in config.stash:
        return []  # (-q hides it, as it hides the session header)
    cards = config.stash[SELECTED_CARDS]
    lines = [
        f"lm-probes cards: {', '.join(c.name + ('[' + ','.join(c.marks) + ']' if c.marks else '') for c in cards)}"
    ]
    if cards and cards[0].model_override:
        lines.append(f"lm-probes --model: {cards[0].model_override} (expectations from card {cards[0].name})")
    return lines


# ---------------------------------------------------------------- parametrization


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    fixture = next((f for f in SUBJECT_FIXTURES if f in metafunc.fixturenames), None)
    if fixture is None:
        return
    marker = metafunc.definition.get_closest_marker("observation")
    expects = marker.kwargs.get("expects") if marker else None
    # expects: one card field, or a tuple of fields of which a card needs any one
    alternatives = (expects,) if isinstance(expects, str) else tuple(expects or ())
    for path in alternatives:
        problem = unknown_expect_path(path)
        if problem:  # the test's mistake, not the cards': fail its collection
            raise pytest.Collector.CollectError(f"{metafunc.definition.nodeid}: @observation(expects=...): {problem}")
    needs_model = fixture == "model_subject"
    cards = [
        c
        for c in _selected_cards(metafunc.config)
        if (c.has_model or not needs_model) and (not alternatives or any(c.has_expectation(p) for p in alternatives))
    ]
    if "case" in metafunc.fixturenames:
        if len(alternatives) != 1:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: a test with `case` needs @observation(expects=...) naming one list"
            )
        params = [
            pytest.param(card.name, case, id=f"{card.name}-{_case_id(case)}", marks=_card_marks(card))
            for card in cards
            for case in card.cases(alternatives[0])
        ]
        metafunc.parametrize(
            (fixture, "case"), params or [_not_covered(expects, needs_model, None)], indirect=[fixture]
        )
    else:
        params = [pytest.param(card.name, id=card.name, marks=_card_marks(card)) for card in cards]
        metafunc.parametrize(fixture, params or [_not_covered(expects, needs_model)], indirect=True)


def _case_id(case: Any) -> str:
    """A case is a mapping with an ``id`` or a plain value (a group name) that is its own id."""
    return str(case["id"]) if isinstance(case, dict) else str(case)


def _not_covered(expects: str | None, needs_model: bool, *extra: Any) -> Any:
    """One skipped item saying why no selected card runs this test."""
    fields = (expects,) if isinstance(expects, str) else tuple(expects or ())
    wanted = " or ".join(f"`expect.{f}`" for f in fields) if fields else "a model"
    if expects and needs_model:
        wanted += " and a model"
    reason = f"no selected card has {wanted}; add it to a card (fixtures/cards/) to run this check"
    return pytest.param(None, *extra, id="no-card", marks=pytest.mark.skip(reason=reason))


def _card_marks(card: Card) -> list[pytest.MarkDecorator]:
    return [getattr(pytest.mark, mark) for mark in card.marks]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(_uses_lm_probes(item) for item in items):
        return  # no test of ours: nothing to mark, no card to read
    cards = {c.name: c for c in _selected_cards(config)}
    for item in items:
        card = cards.get(_card_of(item) or "")
        if card is None:
            continue
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        test, case_id = getattr(item, "originalname", item.name), _case_id(case) if case is not None else None
        reason = card.xfail_reason(test, case_id)
        if reason:
            item.add_marker(pytest.mark.xfail(reason=f"{card.name}: {reason}", strict=True))
        left_out = card.leave_out_reason(test, case_id)
        if left_out:
            item.add_marker(pytest.mark.skip(reason=f"{card.name} leaves this out: {left_out}"))
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    device = config.getoption("device")
    if device and not device.startswith("cuda"):
        return  # `pytest -m gpu --device cpu`: a GPU card's checks run on the CPU (slowly)
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(
            reason="requires CUDA; none found (torch.cuda.is_available() is False). "
            "`--device cpu` runs a GPU card on the CPU instead"
        )
        for item in gpu_items:
            item.add_marker(skip)


# ------------------------------------------------------------------------ fixtures


def _subject_for(request: pytest.FixtureRequest, name: str) -> Subject:
    subjects = request.config.stash[SUBJECTS]
    if name not in subjects:
        # a selected card, or one that a selected card names as its reference
        card = next((c for c in _selected_cards(request.config) if c.name == name), None) or find_card(
            name, _user_cards_dirs(request.config)
        )
        subjects[name] = Subject(
            card,
            device=request.config.getoption("device"),
            dtype=request.config.getoption("dtype"),
            seed=request.config.getoption("seed"),
            trust_remote_code=request.config.getoption("trust_remote_code"),
            allow_pickle=request.config.getoption("allow_pickle"),
            bnb_cpu_packed=not request.config.getoption("no_bnb_packed_cpu"),
        )
    return subjects[name]


def _loaded(request: pytest.FixtureRequest, what: str) -> Subject:
    if not hasattr(request, "param"):  # e.g. request.getfixturevalue("subject") in a test of its own
        pytest.fail(
            f"`{request.fixturename}` is parametrized by lm-probes; use it in a test under tests/behaviour",
            pytrace=False,
        )
    subject = _subject_for(request, request.param)
    try:
        getattr(subject, what)  # load now, so a failure is reported once, here
    except SubjectLoadError as exc:
        message = f"lm-probes: {exc}"
    else:
        return subject
    if subject.card.model_override is None:
        # The card's own files: its tests fail with the message, the other cards still run
        # (the subject remembers the failure, so each of its tests reports it, none retries).
        pytest.fail(message, pytrace=False)
    # --model named something that cannot be loaded: a usage error, one message for the
    # session instead of a traceback in every test.
    if hasattr(request.config, "workerinput"):
        # pytest.exit inside a pytest-xdist worker ends in an INTERNALERROR: fail this
        # test with the message and stop the worker; the controller then stops the
        # session ("Interrupted: lm-probes: ...").
        request.session.shouldstop = message
        pytest.fail(message, pytrace=False)
    pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture
def subject(request: pytest.FixtureRequest) -> Subject:
    """A selected card with its tokenizer loaded (once per session)."""
    return _loaded(request, "tokenizer")


@pytest.fixture
def model_subject(request: pytest.FixtureRequest) -> Subject:
    """A selected card that has a model, with tokenizer and model loaded (once per session)."""
    _loaded(request, "tokenizer")
    return _loaded(request, "model")


@pytest.fixture
def loaded_subject(request: pytest.FixtureRequest) -> Subject:
    """Any selected card, with its model loaded too when it has one."""
    subject = _loaded(request, "tokenizer")
    return _loaded(request, "model") if subject.card.has_model else subject


@pytest.fixture
def reference_subject(request: pytest.FixtureRequest, model_subject: Subject) -> Subject:
    """The full-precision card that ``model_subject``'s card names as its `reference`,
    loaded once per session like any subject (shared with its own tests when selected)."""
    name = model_subject.card.reference
    if not name:
        pytest.fail(f"card '{model_subject.name}' names no `reference` card to compare with", pytrace=False)
    try:
        reference = _subject_for(request, name)
    except CardError as exc:
        pytest.fail(f"card '{model_subject.name}': reference: {exc}", pytrace=False)
    try:
        method = reference.quantization.method  # loads the model
    except SubjectLoadError as exc:
        pytest.fail(f"card '{model_subject.name}': its reference cannot be loaded: {exc}", pytrace=False)
    if method != "none":
        pytest.fail(
            f"card '{model_subject.name}': its reference '{name}' loaded as {method}; "
            "a reference must be full precision",
            pytrace=False,
        )
    return reference


@pytest.fixture
def snapshot(request: pytest.FixtureRequest) -> SnapshotCheck:
    """Records (--snapshot-update) or compares a subject's observations with its snapshot
    (--snapshot-dir, default fixtures/snapshots); the outcomes feed the report."""
    from probes.paths import SNAPSHOT_DIR
    from probes.snapshots.check import SnapshotCheck

    directory = request.config.getoption("snapshot_dir")
    return SnapshotCheck(
        directory=Path(directory) if directory else SNAPSHOT_DIR,
        update=request.config.getoption("snapshot_update"),
        dir_option=f" --snapshot-dir {directory}" if directory else "",
        outcomes=request.config.stash[SNAPSHOT_RESULTS],
    )


@pytest.fixture
def attach(request: pytest.FixtureRequest):
    """Attach HTML, text or a PNG to this test's row in the HTML report (and, with
    ``summary=``, to that section of the report's summary, under the test's card)."""
    return _Attachments(request)


class _Attachments:
    def __init__(self, request: pytest.FixtureRequest):
        self._request = request
        try:
            self._extras = request.getfixturevalue("extras")
            import pytest_html

            self._html = pytest_html.extras
        except pytest.FixtureLookupError:  # pytest-html disabled: attachments are no-ops
            self._extras = None

    def html(self, content: str, summary: str | None = None) -> None:
        if self._extras is not None:
            self._extras.append(self._html.html(content))
        if summary:
            self._summary(summary, content)

    def table(self, headers: list, rows: list, caption: str | None = None, summary: str | None = None) -> None:
        """A table from data (cells are escaped; ``probes.report.Cell`` for emphasis)."""
        from probes.report.html import table

        self.html(table(headers, rows, caption), summary=summary)

    def texts(self, items: list[str], caption: str | None = None, summary: str | None = None) -> None:
        """Numbered texts (e.g. the runs of a generation) under a caption."""
        from probes.report.html import texts

        self.html(texts(items, caption), summary=summary)

    def text(self, content: str, name: str = "") -> None:
        if self._extras is not None:
            self._extras.append(self._html.text(content, name=name))

    def png(self, data: bytes, name: str = "", summary: str | None = "Figures") -> None:
        import base64

        encoded = base64.b64encode(data).decode("ascii")
        if self._extras is not None:
            self._extras.append(self._html.png(encoded, name=name))
        if summary:
            self._summary(summary, report.figure(encoded, name))

    def _summary(self, section: str, content: str) -> None:
        card = _card_of(self._request.node) or "-"
        sections = self._request.config.stash[SUMMARY_SECTIONS]
        sections.setdefault(section, {}).setdefault(card, []).append(content)


def _card_of(item: pytest.Item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    # an empty parameter set (no selected card has the field) leaves a non-str NOTSET here
    return next((params[f] for f in SUBJECT_FIXTURES if isinstance(params.get(f), str)), None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("observation")
    card = _card_of(item)
    if marker is None or card is None:
        return
    # the call phase decides, unless setup already failed or skipped
    if report.when == "call" or (report.when == "setup" and not report.passed):
        state = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
        if hasattr(report, "wasxfail") and report.passed:
            state = "xpassed"
        # a case may name its own observation (encode cases: T1, T2 or T3)
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        observations = [case["observation"]] if isinstance(case, dict) and case.get("observation") else marker.args
        for observation in observations:
            item.config.stash[OBSERVATION_OUTCOMES].setdefault((card, observation), []).append(state)


# ------------------------------------------------------------ pytest-xdist workers
#
# Under `pytest -n N` (make test) the tests run in worker processes. Two things keep
# that as cheap and as complete as one process:
# - every test of one card runs in one worker, so its model loads once and each probe
#   result is computed once (the scheduler below);
# - the report is written by the controller: each worker sends what its tests gathered
#   for it (as JSON, which execnet can carry), and the controller merges it.


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """A scheduler that hands out all the tests of one card as one unit of work and every
    other test on its own. (xdist's own `--dist loadgroup` would do it with marks, but
    xdist 3.8 cannot rename node ids under pytest 9, so those marks have no effect.)"""
    if config.getoption("dist") == "each":  # every test on every worker: nothing to group
        return None
    from xdist.scheduler import LoadScopeScheduling

    @functools.cache
    def cards() -> tuple[list[str], dict[str, str]]:
        # read on the first parametrized test id: a session without one reads no card
        selected = {c.name: c for c in _selected_cards(config)}
        # longest first: a card whose name starts with another card's name is matched whole
        names = sorted(selected, key=len, reverse=True)
        # a quantized card runs beside its selected reference: the drift probe then reuses
        # the reference's loaded model and results instead of loading it in a second worker
        return names, {n: (c.reference if c.reference in selected else n) for n, c in selected.items()}

    class OneWorkerPerCard(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            # a behaviour test's id starts with its card: test_x[smollm2-135m-instruct-bos]
            params = nodeid.partition("[")[2]
            if not params:
                return nodeid
            names, unit = cards()
            card = next((n for n in names if params.startswith((n + "-", n + "]"))), None)
            return f"card {unit[card]}" if card else nodeid

    return OneWorkerPerCard(config, log)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if not hasattr(config, "workeroutput") or not config.stash[IN_USE]:  # not an xdist worker of ours
        return
    import json

    config.workeroutput["lm_probes"] = json.dumps(
        {
            "torch_runtime": torch_runtime_info(),
            "subject_rows": {name: _subject_row(subject) for name, subject in config.stash[SUBJECTS].items()},
            "sections": config.stash[SUMMARY_SECTIONS],
            "outcomes": [[card, obs, states] for (card, obs), states in config.stash[OBSERVATION_OUTCOMES].items()],
            "snapshots": {card: outcome.as_json() for card, outcome in config.stash[SNAPSHOT_RESULTS].items()},
        },
        default=str,
    )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A worker finished (pytest-xdist's hook, run in the controller): merge its report data."""
    import json

    sent = getattr(node, "workeroutput", {}).get("lm_probes")
    if not sent:
        return
    data, stash = json.loads(sent), node.config.stash
    stash[IN_USE] = True  # a worker ran tests of ours: the controller's report shows them
    _add_environment_metadata(node.config, data["torch_runtime"])  # the workers share one machine
    stash[WORKER_SUBJECT_ROWS].update(data["subject_rows"])
    for section, by_card in data["sections"].items():
        for card, fragments in by_card.items():
            stash[SUMMARY_SECTIONS].setdefault(section, {}).setdefault(card, []).extend(fragments)
    for card, obs, states in data["outcomes"]:
        stash[OBSERVATION_OUTCOMES].setdefault((card, obs), []).extend(states)
    from probes.snapshots.check import SnapshotOutcome

    stash[SNAPSHOT_RESULTS].update({card: SnapshotOutcome.from_json(o) for card, o in data["snapshots"].items()})


# -------------------------------------------------------------------------- report


def pytest_html_report_title(report: Any) -> None:
    report.title = "lm-probes: behavioural tests of language models"


def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
) -> None:
    """The report's own sections, rendered from data by probes/report.py's template."""
    config = session.config
    if not config.stash.get(IN_USE, False):
        return  # another project's session: its report stays its own
    subjects = {name: _subject_row(subject) for name, subject in config.stash.get(SUBJECTS, {}).items()}
    subjects |= config.stash.get(WORKER_SUBJECT_ROWS, {})
    prefix.append(
        report.summary_html(
            subjects=[subjects[name] for name in sorted(subjects)],
            observations=config.stash.get(OBSERVATION_OUTCOMES, {}),
            snapshots=config.stash.get(SNAPSHOT_RESULTS, {}),
            benchmarks=_benchmark_table(getattr(getattr(config, "_benchmarksession", None), "benchmarks", [])),
            sections=config.stash.get(SUMMARY_SECTIONS, {}),
        )
    )


_RATES = ("tokens_per_s", "chars_per_s", "sequential_over_batched")


def _benchmark_table(benchmarks: list[Any]) -> tuple[list[str], list[list[object]]] | None:
    """The latest pytest-benchmark figures, with the rates from extra_info: (headers, rows)."""
    rows = []
    for bench in benchmarks:
        if getattr(bench, "has_error", False) or not getattr(bench, "stats", None):
            continue
        data = bench.as_dict(include_data=False)
        stats, extra = data["stats"], data.get("extra_info", {})
        rate = "; ".join(f"{k.replace('_', ' ')} {extra[k]}" for k in _RATES if k in extra)
        memory = extra.get("peak_gpu_memory_mb", extra.get("peak_rss_mb", "-"))
        rows.append(
            [
                data["fullname"].split("::")[-1],
                f"{stats['mean'] * 1e3:.3f}",
                f"{stats['min'] * 1e3:.3f}",
                f"{stats['stddev'] * 1e3:.3f}",
                stats["rounds"],
                rate,
                memory,
                extra.get("torch_threads", "-"),
            ]
        )
    if not rows:
        return None
    headers = ["benchmark", "mean ms", "min ms", "stddev ms", "rounds", "rate", "peak MB (GPU, else RSS)", "threads"]
    return headers, rows


def _subject_row(subject: Subject) -> dict[str, Any]:
    """A loaded card's row of the Subjects table, as data (sent as JSON by an xdist worker)."""
    p = subject.provenance
    row = {k: str(v) for k, v in (("card", p.card), ("model_source", p.model_source), ("device", p.device))}
    row |= {"dtype": str(p.dtype), "quantization": str(p.quantization), "revision": str(p.revision or "-")}
    # the numerics fingerprint once the model is loaded (reading it never loads one)
    numerics = subject.loaded_numerics
    row |= {
        "machine_class": subject.machine_class if numerics else "-",
        "numerics": numerics.describe() if numerics else "-",
    }
    return row | {"files": dict(p.files)}
