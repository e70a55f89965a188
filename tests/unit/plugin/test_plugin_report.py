"""The plugin's report: self-contained, with the environment, each model subject's figures
and texts under two workers, the benchmarks' table, and a failure naming card, field,
expected and obtained (split from test_plugin.py, issue 36)."""

from __future__ import annotations

import html
import json
import os
import re

import pytest
import torch
import yaml

from lm_probes import numerics
from lm_probes.paths import REPO_ROOT


def test_report_is_self_contained_with_environment_and_token_table(run_suite, tmp_path):
    result = run_suite(
        "tests/behaviour/test_tokenizer.py",
        "tests/behaviour/test_model.py",
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-card",
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
    result = run_suite("tests/behaviour/test_model.py", "--lm-probes-card", str(card_file), "-k", "embedding")
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
        "--lm-probes-card",
        str(tmp_path / "tiny-mistral.yaml"),
        "--lm-probes-card",
        str(tmp_path / "tiny-mistral-tok.yaml"),
        "--lm-probes-snapshot-dir",
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
        "--lm-probes-card",
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


@pytest.mark.parametrize("fixture", ["lm_probes_subject", "lm_probes_model_subject", "lm_probes_loaded_subject"])
def test_a_subject_fixture_outside_the_parametrization_fails_with_advice(run_suite, tmp_path, fixture):
    test_file = tmp_path / f"test_dynamic_{fixture}.py"  # a module name of its own: runs share sys.modules
    test_file.write_text(f"def test_dynamic(request):\n    request.getfixturevalue({fixture!r})\n", encoding="utf-8")
    result = run_suite(str(test_file))
    assert result.returncode == 1, result.stdout
    assert f"`{fixture}` is parametrized by lm-probes; use it in a test under tests/behaviour" in result.stdout
    assert "Traceback" not in result.stdout
