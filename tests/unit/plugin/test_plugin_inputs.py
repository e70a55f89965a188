"""Issue 32, the pytest plugin's doors: every option checked when the session is configured,
before a card's model loads, with one usage error (exit 4) that says what to do; each with a
harmless twin the check lets through (shown by a --collect-only run that exits 0)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lm_probes.plugin import checks
from lm_probes.plugin.options import MAX_SEED

USAGE_ERROR = pytest.ExitCode.USAGE_ERROR
# a quick session that uses lm-probes and loads no model: one tokenizer test, collected only
COLLECT = ("tests/behaviour/test_tokenizer.py", "-k", "vocab_size", "--collect-only", "-q")

TOKENIZER_CARD = "name: {name}\ndescription: my card\ntokenizer: {{source: mistral-common}}\n"


def _card(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(TOKENIZER_CARD.format(name=name), encoding="utf-8")
    return path


# ------------------------------------------------------------- unreadable cards


def test_list_cards_marks_an_undecodable_card_invalid_and_lists_the_rest(run_suite, tmp_path):
    (tmp_path / "latin.yaml").write_bytes(b"name: latin\ndescription: caf\xe9\ntokenizer: {source: mistral-common}\n")
    (tmp_path / "folder.yaml").mkdir()
    listed = run_suite("--lm-probes-cards-dir", str(tmp_path), "--lm-probes-list-cards")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"latin: INVALID: card file {tmp_path / 'latin.yaml'} is not UTF-8 text" in listed.stdout
    assert "folder: INVALID: card file" in listed.stdout and "is a folder" in listed.stdout
    assert "tiny-mistral:" in listed.stdout and "mistral-tokenizer:" in listed.stdout


def test_selecting_an_undecodable_card_refuses_it_alone(run_suite, tmp_path):
    (tmp_path / "latin.yaml").write_bytes(b"name: latin\ndescription: caf\xe9\n")
    refused = run_suite("--lm-probes-cards-dir", str(tmp_path), "--lm-probes-card", "latin", *COLLECT)
    assert refused.returncode == USAGE_ERROR, refused.stdout + refused.stderr
    assert "latin.yaml is not UTF-8 text" in refused.stderr and "INTERNALERROR" not in refused.stdout
    other = run_suite("--lm-probes-cards-dir", str(tmp_path), "--lm-probes-card", "mistral-tokenizer", *COLLECT)
    assert other.returncode == 0, other.stdout + other.stderr  # the folder's other cards still run


# ------------------------------------------------------------- one name, one card


def test_one_name_in_two_cards_folders_is_a_usage_error_naming_both(run_suite, tmp_path):
    first, second = _card(tmp_path / "a", "dup"), _card(tmp_path / "b", "dup")
    args = ("--lm-probes-cards-dir", str(first.parent), "--lm-probes-cards-dir", str(second.parent))
    for run in (run_suite(*args, "--lm-probes-card", "dup", *COLLECT), run_suite(*args, "--lm-probes-list-cards")):
        assert run.returncode == USAGE_ERROR, run.stdout + run.stderr
        assert f"two cards named 'dup': {first} and {second}" in run.stderr


def test_the_same_card_selected_twice_runs_once(run_suite):
    twice = run_suite(
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-card",
        "fixtures/cards/mistral-tokenizer.yaml",
        *COLLECT,
    )  # fmt: skip
    assert twice.returncode == 0, twice.stdout + twice.stderr
    assert twice.stdout.count("test_vocab_size[mistral-tokenizer") == 1, twice.stdout


def test_two_files_of_one_card_name_selected_are_refused(run_suite, tmp_path):
    """The harmless side of running once: two different files are not the same card."""
    other = _card(tmp_path, "mistral-tokenizer")
    run = run_suite("--lm-probes-card", "mistral-tokenizer", "--lm-probes-card", str(other), *COLLECT)
    assert run.returncode == USAGE_ERROR
    assert "two cards named 'mistral-tokenizer' are selected" in run.stderr and str(other) in run.stderr


# ------------------------------------------------- --lm-probes-model and the card's own baseline


def test_model_with_snapshot_update_is_refused_without_a_snapshot_dir_of_its_own(run_suite, tmp_path):
    from lm_probes.paths import SNAPSHOT_DIR

    base = (
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-model",
        str(tmp_path),
        "--lm-probes-snapshot-update",
        *COLLECT,
    )
    for extra in ((), ("--lm-probes-snapshot-dir", str(SNAPSHOT_DIR))):
        run = run_suite(*base, *extra)
        assert run.returncode == USAGE_ERROR, run.stdout + run.stderr
        assert (
            f"--lm-probes-model {tmp_path} with --lm-probes-snapshot-update would overwrite the card's own snapshot"
            in run.stderr
        )
        assert "Pass --lm-probes-snapshot-dir DIR" in run.stderr


def test_model_with_snapshot_update_into_another_folder_and_a_plain_update_are_accepted(run_suite, tmp_path):
    elsewhere = run_suite(
        "--lm-probes-card", "mistral-tokenizer", "--lm-probes-model", str(tmp_path), "--lm-probes-snapshot-update",
        "--lm-probes-snapshot-dir", str(tmp_path / "other-build"), *COLLECT,
    )  # fmt: skip
    assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr
    plain = run_suite("--lm-probes-card", "mistral-tokenizer", "--lm-probes-snapshot-update", *COLLECT)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert not (tmp_path / "other-build").exists()  # checked, not created


# --------------------------------------------------------------- output paths


def test_a_snapshot_dir_that_is_a_file_is_a_usage_error(run_suite, tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    run = run_suite(
        "--lm-probes-card", "mistral-tokenizer", "--lm-probes-snapshot-dir", str(tmp_path / "file"), *COLLECT
    )
    assert run.returncode == USAGE_ERROR
    assert f"--lm-probes-snapshot-dir {tmp_path / 'file'}: is a file, not a folder" in run.stderr


def test_a_snapshot_dir_that_cannot_be_written_is_refused_with_snapshot_update(run_suite, tmp_path):
    """A folder under a regular file cannot be made, as root too (chmod would not stop root)."""
    (tmp_path / "file").write_text("x", encoding="utf-8")
    under = tmp_path / "file" / "snaps"
    run = run_suite(
        "--lm-probes-card",
        "mistral-tokenizer",
        "--lm-probes-snapshot-update",
        "--lm-probes-snapshot-dir",
        str(under),
        *COLLECT,
    )
    assert run.returncode == USAGE_ERROR
    assert (
        f"--lm-probes-snapshot-dir {under}: --lm-probes-snapshot-update cannot write there ({tmp_path / 'file'} "
        "is a file" in run.stderr
    )
    readonly = run_suite("--lm-probes-card", "mistral-tokenizer", "--lm-probes-snapshot-dir", str(under), *COLLECT)
    assert readonly.returncode == 0, readonly.stderr  # only read: a missing folder is a missing snapshot


def test_a_read_only_snapshot_dir_is_refused_for_an_update(tmp_path, monkeypatch):
    """Read-only as os.access reports it (running as root, chmod does not make a folder
    read-only, so the answer is given here); a writable one, new or not, passes."""
    checks.check_snapshot_dir(str(tmp_path / "new" / "folder"), tmp_path / "new" / "folder", update=True)
    monkeypatch.setattr(checks.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(pytest.UsageError, match=rf"cannot write there \({tmp_path} is read-only here\)"):
        checks.check_snapshot_dir(str(tmp_path), tmp_path, update=True)
    checks.check_snapshot_dir(str(tmp_path), tmp_path, update=False)  # reading needs no write access


def test_an_html_path_that_cannot_be_written_is_a_usage_error_up_front(run_suite, tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    under = tmp_path / "file" / "report.html"
    run = run_suite("--lm-probes-card", "mistral-tokenizer", f"--html={under}", *COLLECT)
    assert run.returncode == USAGE_ERROR, run.stdout + run.stderr
    assert f"--html {under}: the report cannot be written ({tmp_path / 'file'} is a file" in run.stderr
    folder = run_suite("--lm-probes-card", "mistral-tokenizer", f"--html={tmp_path}", *COLLECT)
    assert folder.returncode == USAGE_ERROR and f"--html {tmp_path}: is a folder" in folder.stderr
    new = run_suite("--lm-probes-card", "mistral-tokenizer", f"--html={tmp_path / 'new' / 'report.html'}", *COLLECT)
    assert new.returncode == 0, new.stderr  # a folder pytest-html makes is fine


def test_a_read_only_html_folder_is_refused(tmp_path, monkeypatch):
    checks.check_html_path(str(tmp_path / "report.html"))
    monkeypatch.setattr(checks.os, "access", lambda path, mode: False)
    with pytest.raises(pytest.UsageError, match="the report cannot be written .* is read-only here"):
        checks.check_html_path(str(tmp_path / "report.html"))


# ---------------------------------------------------------------------- --lm-probes-seed


def test_a_seed_past_what_the_sampling_probes_take_is_refused(run_suite):
    run = run_suite("--lm-probes-seed", str(2**64), *COLLECT)
    assert run.returncode == USAGE_ERROR
    assert f"--lm-probes-seed {2**64}: past the largest seed the sampling probes can use ({MAX_SEED}" in run.stderr
    largest = run_suite("--lm-probes-seed", str(MAX_SEED), "--lm-probes-card", "mistral-tokenizer", *COLLECT)
    assert largest.returncode == 0, largest.stderr


def test_the_largest_seed_is_one_every_consumer_takes():
    import torch

    from lm_probes.plugin.options import SEED_DRAWS_PER_REQUEST
    from lm_probes.served.checks import SAMPLED_DRAWS

    assert SEED_DRAWS_PER_REQUEST == SAMPLED_DRAWS
    torch.manual_seed(MAX_SEED)
    torch.Generator().manual_seed(MAX_SEED)
    assert MAX_SEED * SAMPLED_DRAWS + SAMPLED_DRAWS - 1 <= 2**63 - 1  # the served request's draws
    assert (MAX_SEED + 1) * SAMPLED_DRAWS + SAMPLED_DRAWS - 1 > 2**63 - 1  # the bound is the largest


# -------------------------------------------------------------------- --lm-probes-model


def test_model_as_a_gguf_file_is_accepted_and_another_file_is_refused(run_suite, tmp_path):
    gguf = tmp_path / "weights.gguf"
    gguf.write_bytes(b"GGUF" + bytes(20))
    accepted = run_suite("--lm-probes-card", "mistral-tokenizer", "--lm-probes-model", str(gguf), *COLLECT)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    text = run_suite(
        "--lm-probes-card", "mistral-tokenizer", "--lm-probes-model", str(tmp_path / "notes.txt"), *COLLECT
    )
    assert text.returncode == USAGE_ERROR and "is a file, not a folder" in text.stderr
    (tmp_path / "fake.gguf").write_bytes(b"<html>")
    fake = run_suite(
        "--lm-probes-card", "mistral-tokenizer", "--lm-probes-model", str(tmp_path / "fake.gguf"), *COLLECT
    )
    assert fake.returncode == USAGE_ERROR and "is not a GGUF file" in fake.stderr


# ------------------------------------------------------------------- --lm-probes-endpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "url, message",
    [
        ("localhost:8000", "give an http:// or https:// address"),
        ("ftp://127.0.0.1:8000", "give an http:// or https:// address"),
        ("http://127.0.0.1:99999", "its port is not a number from 1 to 65535"),
        ("http://:8000", "it names no host"),
    ],
)
def test_an_endpoint_of_the_wrong_form_is_a_usage_error(run_suite, url, message):
    run = run_suite("--lm-probes-endpoint", url, *COLLECT)
    assert run.returncode == USAGE_ERROR
    assert f"--lm-probes-endpoint {url}: {message}" in run.stderr


def test_an_endpoint_where_nothing_answers_is_refused_before_the_served_tests(run_suite):
    url = f"http://127.0.0.1:{_free_port()}"
    run = run_suite("--lm-probes-endpoint", url, *COLLECT)
    assert run.returncode == USAGE_ERROR
    assert f"--lm-probes-endpoint {url}: nothing answered {url}/v1/models within 3 s" in run.stderr


def test_an_endpoint_that_listens_but_never_answers_is_refused_after_the_short_timeout(monkeypatch):
    monkeypatch.setattr(checks, "ENDPOINT_ANSWER_TIMEOUT_S", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(pytest.UsageError, match=r"nothing answered .* within 0.3 s \(timed out\)"):
            checks.check_endpoint(url)


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_endpoint_that_answers_anything_is_accepted(run_suite):
    """The harmless twin: any HTTP answer means a server is there (the served tests then say
    what is wrong with it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = run_suite("--lm-probes-endpoint", f"http://127.0.0.1:{server.server_address[1]}/", *COLLECT)
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, run.stdout + run.stderr
