"""What a user adds from outside the package (issue 36): a snapshot section, a tokenizer
source and a serving engine, each registered by a test-local pytest plugin (``-p``) as a
user's conftest or plugin package would (an installed package's entry point:
test_installed_plugins.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lm_probes import registry
from lm_probes.cards.card import CardError, load_card
from lm_probes.cards.schema import MODEL_SOURCES, TOKENIZER_SOURCES
from lm_probes.paths import CARDS_DIR
from lm_probes.section_specs import REGISTRY as SECTION_SPECS
from lm_probes.served import engines
from lm_probes.snapshots import sections
from lm_probes.snapshots.compare import compare
from lm_probes.subjects.subject import Subject

# A user's plugin: it registers when imported, before the lm-probes plugin reads the cards
# (a conftest.py does the same). Its pytest_unconfigure is the test's own: run_suite's runs
# share this interpreter, so it removes what it added and lets the next -p import it again.
PLUGIN = '''
import os
import sys
from typing import Literal

from lm_probes.cards.schema import register_source, unregister_source
from lm_probes.cards.sources import MistralCommonTokenizer, Source
from lm_probes.report.section_changes import changed_values
from lm_probes.section_specs import Tolerance
from lm_probes.served import engines
from lm_probes.snapshots import sections
from lm_probes.snapshots.compare import compare
from lm_probes.snapshots.differences import Difference


class SentencePieceFile(Source):
    """A SentencePiece file of mistral-common's, under a source tag of the plugin's own."""

    source: Literal["sentencepiece-file"]
    file: str = "tokenizer.model.v1"

    def describe(self):
        return f"sentencepiece {self.file}"

    def load_tokenizer(self, options, files):
        return MistralCommonTokenizer(source="mistral-common", file=self.file).load_tokenizer(options, files)


def observe_vocab_head(subject):
    pieces = subject.tokenizer.convert_ids_to_tokens(list(range(10)))
    if os.environ.get("VOCAB_HEAD_BREAK"):  # the test's stand-in for an upgrade that renames a piece
        pieces[3] = "<edited>"
    return {"pieces": pieces}


def compare_vocab_head(recorded, current, context):
    changed = sum(a != b for a, b in zip(recorded["pieces"], current["pieces"]))
    if changed > context.tolerances["vocab_head_changes"]:
        return [Difference("error", "vocab_head.pieces", f"{changed} of the first ten pieces changed")]
    return []


def stub_command(environment, model, port, name, arguments):
    # answers /health; writes what it was started with to its log (the session's served-<card>.log)
    return [sys.executable, "-c", STUB, str(port), model, name, *arguments]


STUB = (
    "import http.server, sys\\n"
    "print('stub engine serving', sys.argv[2], 'as', sys.argv[3], 'with', sys.argv[4:], flush=True)\\n"
    "class H(http.server.BaseHTTPRequestHandler):\\n"
    "    def do_GET(self):\\n"
    "        self.send_response(200); self.end_headers()\\n"
    "    def log_message(self, *a): pass\\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\\n"
)


sections.register(
    sections.Section(
        "vocab_head",
        "the first ten vocabulary pieces",
        observe_vocab_head,
        compare_vocab_head,
        changed_values,
        tolerances={"vocab_head_changes": Tolerance("pieces that may change", 0.0)},
        leavable=True,
        needs_model=False,
    )
)
register_source(SentencePieceFile, tokenizer=True)
engines.register(
    engines.Engine("stub", "a stand-in engine", environment=lambda: Path(os.getcwd()), command=stub_command)
)


def pytest_unconfigure(config):
    sections.unregister("vocab_head")
    unregister_source(SentencePieceFile)
    engines.unregister("stub")
    sys.modules.pop(__name__, None)
'''.replace("from typing import Literal\n", "from pathlib import Path\nfrom typing import Literal\n")


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The plugin module on sys.path; ``-p <name>`` loads it."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "lm_probes_user_plugin.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield "lm_probes_user_plugin"
    sys.modules.pop("lm_probes_user_plugin", None)


def _nothing_left_registered() -> None:
    assert "vocab_head" not in SECTION_SPECS and sections.find("vocab_head") is None
    assert "sentencepiece-file" not in TOKENIZER_SOURCES and "stub" not in engines.REGISTRY


def test_a_section_and_a_source_from_a_plugin_are_recorded_and_a_change_in_the_section_fails(
    run_suite, plugin, tmp_path
):
    """A card of the user's names the plugin's tokenizer source, leaves out the plugin's
    section in one copy and overrides its tolerance in another: the snapshot records the
    section, a change in it fails the snapshot test naming it, and a tolerance that allows
    the change passes. Without the plugin, the card is refused naming the unknown source."""
    cards = tmp_path / "cards"
    cards.mkdir()
    base = "tokenizer:\n  source: sentencepiece-file\n"
    (cards / "user-tokenizer.yaml").write_text(
        "name: user-tokenizer\ndescription: a plugin's source\n" + base, encoding="utf-8"
    )
    (cards / "user-lenient.yaml").write_text(
        "name: user-lenient\ndescription: the same, one changed piece allowed\n"
        + base
        + "tolerances:\n  vocab_head_changes: 1.0\n",
        encoding="utf-8",
    )
    snapshots = tmp_path / "snapshots"
    args = [
        "tests/behaviour/test_snapshot.py",
        "-p",
        plugin,
        "--lm-probes-cards-dir",
        str(cards),
        "--lm-probes-snapshot-dir",
        str(snapshots),
    ]
    both = ["--lm-probes-card", "user-tokenizer", "--lm-probes-card", "user-lenient"]
    recorded = run_suite(*args, *both, "--lm-probes-snapshot-update")
    assert recorded.returncode == 0, recorded.stdout[-3000:]
    observed = json.loads((snapshots / "user-tokenizer" / "cpu.json").read_text(encoding="utf-8"))["observed"]
    assert observed["vocab_head"]["pieces"][:3] == ["<unk>", "<s>", "</s>"]  # the Mistral tokenizer's
    assert run_suite(*args, *both).returncode == 0

    changed = run_suite(*args, *both, env={"VOCAB_HEAD_BREAK": "1"})
    assert changed.returncode == 1, changed.stdout[-3000:]
    assert "1 failed, 1 passed" in changed.stdout
    assert "test_matches_snapshot[user-tokenizer]" in changed.stdout and "vocab_head.pieces" in changed.stdout
    _nothing_left_registered()

    # the plugin's recording read by a run without the plugin: a warning naming it, not a silent pass
    current = {name: value for name, value in observed.items() if name != "vocab_head"}
    (unread,) = compare(observed, current)
    assert unread.severity == "warning" and "no registered section reads 'vocab_head'" in unread.message
    without = run_suite(*args[:1], *args[3:], "--lm-probes-card", "user-tokenizer")
    assert without.returncode == 4
    assert (
        "tokenizer.source: 'sentencepiece-file' is not one of mistral-common, hf, model"
        in without.stdout + without.stderr
    )


def test_an_engine_from_a_plugin_is_what_serve_starts(run_suite, plugin, tmp_path, monkeypatch):
    """A served card that names the plugin's engine: --lm-probes-serve starts it (its log shows the
    card's model folder, name and arguments) and stops it at the end of the session."""
    cards = tmp_path / "cards"
    cards.mkdir()
    text = (
        (CARDS_DIR / "tiny-mistral.yaml")
        .read_text(encoding="utf-8")
        .replace("name: tiny-mistral\n", "name: tiny-stub\n", 1)
    )
    text += "\nserved:\n  engine: stub\n  args: [--max-model-len, '64']\n"
    text += "  parity: {prob_atol: 1.0e-4, kl_max: 1.0e-6}\n  bare_request: sampled\n"
    (cards / "tiny-stub.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setattr(Subject, "model_folder", lambda self: str(tmp_path))  # random-init: as if it had a folder
    started: list = []
    start = engines.server.RunningServer.start

    def recorded_start(self):
        started.append(self)
        return start(self)

    monkeypatch.setattr(engines.server.RunningServer, "start", recorded_start)
    run = run_suite(
        "tests/behaviour/test_parity.py", "-p", plugin, "-m", "served", "-k", "defaults_are_the_cards",
        "--lm-probes-cards-dir", str(cards), "--lm-probes-card", "tiny-stub", "--lm-probes-serve",
    )  # fmt: skip
    assert len(started) == 1, run.stdout[-3000:]
    log = started[0].log.read_text(encoding="utf-8")
    assert f"stub engine serving {tmp_path} as tiny-stub with ['--max-model-len', '64']" in log
    assert not engines.server.group_alive(started[0].process.pid), "the stub engine outlived the session"
    # the stub answers nothing but /health: the test that asked fails on the endpoint, not on the engine's name
    assert "unknown serving engine" not in run.stdout and run.returncode == 1, run.stdout[-3000:]
    _nothing_left_registered()


def test_a_name_taken_twice_is_refused_and_an_unknown_one_says_what_is_known(tmp_path):
    with pytest.raises(ValueError, match="a model source named 'hf' is already registered; pass replace=True"):
        MODEL_SOURCES.register("hf", object())
    with pytest.raises(
        registry.UnknownName, match=r"unknown serving engine 'vlm'; did you mean 'vllm'\? \(known: vllm\)"
    ):
        engines.REGISTRY.get("vlm")
    # a section whose spec is taken keeps the registries in step: neither half is added
    with pytest.raises(ValueError, match="already registered"):
        sections.register(sections.all_sections()[0])
    assert [s.name for s in sections.all_sections()] == list(SECTION_SPECS.names())
    # a card's misspelt name gets the registry's hint
    path = tmp_path / "typo.yaml"
    path.write_text("name: typo\ndescription: d\ntokenizer: {source: mistral-comon}\n", encoding="utf-8")
    with pytest.raises(
        CardError, match=r"tokenizer.source: 'mistral-comon' is not one of .*; did you mean 'mistral-common'\?"
    ):
        load_card(path)


def test_a_replaced_entry_comes_back_and_a_plugins_removal_leaves_the_built_ins():
    """Unregistering a plugin's entry brings back the one it replaced, and removes a source
    class only from the roles it holds: a built-in under the same tag in another role stays."""
    from typing import Literal

    from lm_probes.cards.schema import register_source, unregister_source
    from lm_probes.cards.sources import Source

    vllm = engines.REGISTRY.get("vllm")
    mine = engines.Engine("vllm", "my vLLM build", environment=lambda: Path("."), command=lambda *a: [])
    engines.register(mine, replace=True)
    assert engines.REGISTRY.get("vllm") is mine
    engines.unregister("vllm")
    assert engines.REGISTRY.get("vllm") is vllm and "vllm" in engines.ENGINE_NAMES

    class CommonWeights(Source):  # the tag of a built-in tokenizer source, as a model source
        source: Literal["mistral-common"]

        def load_model(self, options, files, device):
            raise NotImplementedError

    tokenizer_source = TOKENIZER_SOURCES.get("mistral-common")
    register_source(CommonWeights, model=True)
    unregister_source(CommonWeights)
    assert "mistral-common" not in MODEL_SOURCES and TOKENIZER_SOURCES.get("mistral-common") is tokenizer_source


def test_a_tolerance_name_another_section_uses_is_refused():
    """One card key would set both: a plugin's prob_atol would silently move next_token's."""
    from lm_probes.section_specs import Tolerance

    taken = sections.Section(
        "mine", "m", lambda s: None, lambda r, c, x: [], lambda *a: [], tolerances={"prob_atol": Tolerance("t", 1.0)}
    )
    with pytest.raises(ValueError, match="the tolerance name 'prob_atol' is taken by section 'next_token'"):
        sections.register(taken)
    assert sections.find("mine") is None and "mine" not in SECTION_SPECS


def test_a_plugin_model_source_without_its_files_is_one_message_where_they_are_needed(tmp_path):
    """`tokenizer: {source: model}` and --lm-probes-serve read the model's folder: a plugin's source
    without folder() is said as a load error, not an AttributeError."""
    from typing import Literal

    from lm_probes.cards.files import SubjectLoadError
    from lm_probes.cards.schema import register_source, unregister_source
    from lm_probes.cards.sources import Source

    class Opaque(Source):
        source: Literal["opaque"]

        def load_model(self, options, files, device):
            raise NotImplementedError

    register_source(Opaque, model=True)
    try:
        path = tmp_path / "opaque.yaml"
        path.write_text("name: opaque\ndescription: d\ntokenizer: {source: model}\nmodel: {source: opaque}\n")
        subject = Subject(load_card(path))
        with pytest.raises(SubjectLoadError, match=r"tokenizer: \{source: model\} needs the model's files, and source"):
            subject.tokenizer
        with pytest.raises(SubjectLoadError, match=r"a server \(--lm-probes-serve\) needs the model's files"):
            subject.model_folder()
    finally:
        unregister_source(Opaque)
