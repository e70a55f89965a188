"""The fixtures lm-probes gives a test: the subjects (parametrized over the cards by
plugin/selection.py, each loaded once per session), the reference subject of a quantized
card, ``lm_probes_snapshot`` and ``lm_probes_attach`` (figures, tables and texts into the HTML
report). Every name starts with ``lm_probes_``: the plugin's fixtures are visible in every pytest
session of the environment, beside syrupy's ``snapshot`` and a host project's own ``subject``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from lm_probes.plugin.items import card_of
from lm_probes.plugin.options import options_of
from lm_probes.plugin.session import record_of

# The cards, subjects and snapshots load pydantic, numpy and torch: each fixture imports
# what it uses, so that registering the fixtures (every pytest session) costs nothing.
if TYPE_CHECKING:
    from lm_probes.snapshots.check import SnapshotCheck
    from lm_probes.subjects.subject import Subject


def _subject_for(request: pytest.FixtureRequest, name: str) -> Subject:
    from lm_probes.cards.card import find_card
    from lm_probes.plugin.selection import selected_cards, user_cards_dirs
    from lm_probes.subjects.subject import Subject

    subjects = record_of(request.config).subjects
    if name not in subjects:
        # a selected card, or one that a selected card names as its reference
        card = next((c for c in selected_cards(request.config) if c.name == name), None) or find_card(
            name, user_cards_dirs(request.config)
        )
        options = options_of(request.config)
        subjects[name] = Subject(
            card,
            device=options.device,
            dtype=options.dtype,
            seed=options.seed,
            trust_remote_code=options.trust_remote_code,
            allow_pickle=options.allow_pickle,
            bnb_cpu_packed=options.bnb_cpu_packed,
        )
    return subjects[name]


def end_session(request: pytest.FixtureRequest, message: str):
    """Stop the session with one message, a usage error (not a traceback in every test)."""
    if hasattr(request.config, "workerinput"):
        # pytest.exit inside a pytest-xdist worker ends in an INTERNALERROR: fail this test
        # with the message and stop the worker; the controller then stops the session
        request.session.shouldstop = message
        pytest.fail(message, pytrace=False)
    pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


def _loaded(request: pytest.FixtureRequest, what: str) -> Subject:
    from lm_probes.cards.files import SubjectLoadError

    if not hasattr(request, "param"):  # e.g. request.getfixturevalue("lm_probes_subject") in a test of its own
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
    # --lm-probes-model named something that cannot be loaded: a usage error, one message for the
    # session instead of a traceback in every test.
    end_session(request, message)


@pytest.fixture
def lm_probes_subject(request: pytest.FixtureRequest) -> Subject:
    """A selected card with its tokenizer loaded (once per session)."""
    return _loaded(request, "tokenizer")


@pytest.fixture
def lm_probes_model_subject(request: pytest.FixtureRequest) -> Subject:
    """A selected card that has a model, with tokenizer and model loaded (once per session)."""
    _loaded(request, "tokenizer")
    return _loaded(request, "model")


@pytest.fixture
def lm_probes_loaded_subject(request: pytest.FixtureRequest) -> Subject:
    """Any selected card, with its model loaded too when it has one."""
    subject = _loaded(request, "tokenizer")
    return _loaded(request, "model") if subject.card.has_model else subject


@pytest.fixture
def lm_probes_reference_subject(request: pytest.FixtureRequest, lm_probes_model_subject: Subject) -> Subject:
    """The full-precision card that ``lm_probes_model_subject``'s card names as its `reference`,
    loaded once per session like any subject (shared with its own tests when selected)."""
    from lm_probes.cards.card import CardError
    from lm_probes.cards.files import SubjectLoadError

    name = lm_probes_model_subject.card.reference
    if not name:
        pytest.fail(f"card '{lm_probes_model_subject.name}' names no `reference` card to compare with", pytrace=False)
    try:
        reference = _subject_for(request, name)
    except CardError as exc:
        pytest.fail(f"card '{lm_probes_model_subject.name}': reference: {exc}", pytrace=False)
    try:
        method = reference.quantization.method  # loads the model
    except SubjectLoadError as exc:
        pytest.fail(f"card '{lm_probes_model_subject.name}': its reference cannot be loaded: {exc}", pytrace=False)
    if method != "none":
        pytest.fail(
            f"card '{lm_probes_model_subject.name}': its reference '{name}' loaded as {method}; "
            "a reference must be full precision",
            pytrace=False,
        )
    return reference


@pytest.fixture
def lm_probes_served_endpoint(request: pytest.FixtureRequest, lm_probes_model_subject: Subject):
    """The selected card's model behind a server: --lm-probes-endpoint URL (one the user runs), or
    --lm-probes-serve (the card's engine, vLLM or one a plugin registers, started here once per card and
    session, stopped at the end)."""
    from lm_probes.served.client import Endpoint

    card, config = lm_probes_model_subject.card, request.config
    if card.served is None:
        pytest.skip(f"card '{card.name}' has no served: section (its engine, arguments and parity bounds)")
    options = options_of(config)
    if options.endpoint:
        return Endpoint(options.endpoint)
    if not options.serve:
        pytest.skip(
            "no server: give --lm-probes-endpoint URL (a server of this card's model that you run) or "
            "--lm-probes-serve (lm-probes "
            "starts vLLM's CPU build, built once into ~/.cache/lm-probes/served, about 3.4 GB)"
        )
    from lm_probes.served.server import ServerFailed

    record = record_of(config)
    if card.name not in record.servers:
        from lm_probes.cards.files import SubjectLoadError
        from lm_probes.paths import REPO_ROOT
        from lm_probes.served import engines

        try:
            folder = lm_probes_model_subject.model_folder()
        except SubjectLoadError as exc:
            end_session(
                request,
                f"lm-probes --lm-probes-serve ({card.name}): {exc}: an engine loads a folder or hub id. Serve "
                "such a card, or "
                "start a server yourself and give --lm-probes-endpoint URL",
            )
        try:
            running = engines.start_server(
                card.served.engine,
                folder,
                card.name,
                card.served.args,
                REPO_ROOT / "reports" / f"served-{card.name}.log",
            )
        except ServerFailed as exc:
            end_session(request, f"lm-probes --lm-probes-serve ({card.name}): {exc}")
        record.servers[card.name] = running

    server = record.servers[card.name]
    try:
        server.check_alive()
    except ServerFailed as exc:  # it died during the session
        end_session(request, f"lm-probes --lm-probes-serve ({card.name}): {exc}")
    return server.endpoint


@pytest.fixture
def lm_probes_snapshot(request: pytest.FixtureRequest) -> SnapshotCheck:
    """Records (--lm-probes-snapshot-update) or compares a subject's observations with its snapshot
    (--lm-probes-snapshot-dir, default fixtures/snapshots); the outcomes feed the report."""
    from lm_probes.numerics import nearest_class
    from lm_probes.snapshots.check import SnapshotCheck

    config = request.config
    options = options_of(config)

    def compare_with(own_class: str, recorded: list[str]) -> str | None:
        chosen = config.hook.pytest_lm_probes_compare_with(
            config=config, own_class=own_class, recorded_classes=recorded
        )
        return chosen if chosen is not None else nearest_class(own_class, recorded)

    return SnapshotCheck(
        directory=options.snapshot_dir,
        update=options.snapshot_update,
        dir_option=options.snapshot_dir_option,
        outcomes=record_of(config).snapshots,
        machine_class_of=lambda subject: config.hook.pytest_lm_probes_machine_class(
            config=config, subject=subject, fingerprint_class=subject.machine_class
        ),
        compare_with=compare_with,
    )


@pytest.fixture
def lm_probes_attach(request: pytest.FixtureRequest):
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
        """A table from data (cells are escaped; ``lm_probes.report.Cell`` for emphasis)."""
        from lm_probes.report.html import table

        self.html(table(headers, rows, caption), summary=summary)

    def texts(self, items: list[str], caption: str | None = None, summary: str | None = None) -> None:
        """Numbered texts (e.g. the runs of a generation) under a caption."""
        from lm_probes.report.html import texts

        self.html(texts(items, caption), summary=summary)

    def text(self, content: str, name: str = "") -> None:
        if self._extras is not None:
            self._extras.append(self._html.text(content, name=name))

    def png(self, data: bytes, name: str = "", summary: str | None = "Figures") -> None:
        import base64

        from lm_probes.report import html as report

        encoded = base64.b64encode(data).decode("ascii")
        if self._extras is not None:
            self._extras.append(self._html.png(encoded, name=name))
        if summary:
            self._summary(summary, report.figure(encoded, name))

    def _summary(self, heading: str, content: str) -> None:
        card = card_of(self._request.node) or "-"
        record_of(self._request.config).add_fragment(heading, card, content)
