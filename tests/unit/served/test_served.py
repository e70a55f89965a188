"""A served subject without vLLM: a replay server speaking vLLM's dialect of the OpenAI API
from a committed snapshot stands in for the engine, so the client, the parity rules, the
``--lm-probes-endpoint`` path and a server that fails are shown in the default suite. (The real engine:
``make parity``, docs/served.md.)"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lm_probes.cards.card import find_card
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.served.client import Endpoint, ServedError
from lm_probes.served.parity import (
    parity_differences,
    parity_view,
    repeat_differences,
    served_observations,
    served_provenance,
    write_parity_snapshots,
)
from lm_probes.snapshots.observe import observe_tokenizer
from lm_probes.subjects.subject import Subject
from tests.unit.served.test_served_server import _served_card

RECORDED = json.loads((SNAPSHOT_DIR / "tiny-mistral" / "cpu.json").read_text(encoding="utf-8"))


@functools.cache
def replayed() -> dict:
    """What the replay serves: the recorded next token and greedy runs, and the tokenizer as
    observed now, so that it answers every text the suite asks, also the card's cases added
    after the snapshot was recorded (tokenizer only: no model loads; on first use, not at
    collection)."""
    recorded = {name: RECORDED["observed"][name] for name in ("next_token", "greedy", "answer_ends")}
    return {"tokenizer": observe_tokenizer(Subject(find_card("tiny-mistral"))), **recorded}


BOUNDS = {"prob_atol": 1e-4, "kl_max": 1e-6}


def _replay(observed: dict, mode: str):
    """A handler answering /health, /v1/models, /tokenize and /v1/completions from ``observed``;
    ``mode`` breaks it the way a server can differ: adds-bos (its tokenizer adds BOS where the
    in-process one does not, or a second one), drops-bos (it adds none where the in-process
    one does: lm-evaluation-harness #1854), shifted (the top next token 0.01 more likely), diverges (greedy
    picks a token outside its own top-k), batch-variant (another greedy token when a request
    shares the server with another), flaky (every second greedy answer differs), stops-early
    (an answer that ran to max_tokens ends after 5 tokens with finish_reason "stop", no stop id
    among them: a stop id or string of the server's own), noise (logprobs moved by 1e-9:
    harmless). Every answer says its finish_reason: "length" at max_tokens, else "stop"."""
    state = {"in_flight": 0, "answers": 0}
    lock = threading.Lock()
    texts = observed["tokenizer"]["ids"]
    runs = {tuple(r["prompt_ids"]): r for r in observed["greedy"].values()}
    ends = {tuple(r["prompt_ids"]): r for r in observed["answer_ends"].values()}  # U8's requests
    nt = observed["next_token"]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, body, status=200):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                return self._send({})
            return self._send({"data": [{"id": "replay"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/tokenize":
                found = texts[body["prompt"]]["special" if body["add_special_tokens"] else "plain"]
                if mode == "drops-bos" and found[:1] == [1]:
                    found = found[1:]  # the reverse: transformers' tokenizer adds one, the server's none
                elif mode == "adds-bos" and body["add_special_tokens"] and found[:1] != [1]:
                    found = [1, *found]
                elif mode == "adds-bos" and body["add_special_tokens"]:
                    found = [1, *found]  # a second BOS
                return self._send({"tokens": found, "count": len(found)})
            assert body["temperature"] == 0.0 and body["repetition_penalty"] == 1.0  # every field written out
            prompt = tuple(body["prompt"])
            if body["max_tokens"] == 1 and prompt == tuple(nt["prompt_ids"]):
                probs = list(nt["top_probs"])
                if mode == "shifted":
                    probs[0] += 0.01
                shift = 1e-9 if mode == "noise" else 0.0
                top = {f"token_id:{i}": math.log(p) + shift for i, p in zip(nt["top_ids"], probs)}
                choice = {"text": "", "logprobs": {"tokens": [f"token_id:{nt['top_ids'][0]}"], "top_logprobs": [top]}}
                return self._send({"choices": [{"index": 0, **choice}]})
            if prompt in ends:
                end = ends[prompt]
                chosen, tops = list(end["ids"]), end["top_ids"]
                if mode == "stops-early" and end["end"] == "budget":
                    chosen, tops = chosen[:5], tops[:5]
                finish = "length" if len(chosen) >= body["max_tokens"] else "stop"
                tops = [{f"token_id:{t}": -float(k) for k, t in enumerate(step)} for step in tops]
                logprobs = {"tokens": [f"token_id:{t}" for t in chosen], "top_logprobs": tops}
                return self._send(
                    {"choices": [{"index": 0, "text": "", "logprobs": logprobs, "finish_reason": finish}]}
                )
            run = runs[prompt]
            chosen = list(run["ids"])
            with lock:
                state["in_flight"] += 1
                state["answers"] += 1
                answer = state["answers"]
            if mode == "batch-variant":
                time.sleep(0.3)  # requests sent together (within ms of each other) overlap here, even on a busy CI
            with lock:
                shared = state["in_flight"] > 1
                state["in_flight"] -= 1
            outside = max(max(step) for step in run["top_ids"]) + 1
            if mode == "diverges" or (mode == "batch-variant" and shared) or (mode == "flaky" and answer % 2 == 0):
                chosen[3] = outside
            tops = [{f"token_id:{t}": -float(k) for k, t in enumerate(step)} for step in run["top_ids"]]
            choice = {
                "text": run["text"],
                "logprobs": {"tokens": [f"token_id:{t}" for t in chosen], "top_logprobs": tops},
            }
            return self._send({"choices": [{"index": 0, **choice}]})

    return Handler


@pytest.fixture
def replay():
    servers = []

    def start(mode: str = "faithful") -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _replay(replayed(), mode))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _differences(url: str) -> list:
    served = served_observations(Endpoint(url), replayed())
    return parity_differences(replayed(), served, BOUNDS, RECORDED["provenance"])


def test_a_faithful_server_and_a_harmless_difference_pass(replay):
    assert _differences(replay()) == []
    assert _differences(replay("noise")) == []  # and another port: each replay has its own


@pytest.mark.parametrize(
    "mode, where",
    [
        ("adds-bos", "tokenizer.ids"),
        ("drops-bos", "tokenizer.ids"),
        ("shifted", "next_token.probs"),
        ("diverges", "greedy.bos"),
        ("stops-early", "answer_ends.cat"),
    ],
)
def test_each_served_difference_is_caught_naming_its_section(replay, mode, where):
    found = [d for d in _differences(replay(mode)) if d.severity == "error"]
    assert any(d.where.startswith(where) for d in found), found
    if mode == "diverges":
        assert any("not in the recorded top-k" in d.message for d in found), found
    if mode == "stops-early":  # where its tokens end, and a finish_reason they do not explain
        assert any("now ended after 5 new tokens without a stop id" in d.message for d in found), found
        assert any("finish_reason 'stop', but its tokens show it ended after 5" in d.message for d in found), found


@pytest.mark.parametrize(
    "mode, where", [("faithful", None), ("batch-variant", "served.concurrency"), ("flaky", "served.determinism")]
)
def test_greedy_asked_again_and_at_once_must_not_change(replay, mode, where):
    found = repeat_differences(Endpoint(replay(mode)), replayed()["greedy"], repeats=3, concurrent=4)
    assert [d.where.rsplit(".", 1)[0] for d in found][:1] == ([where] if where else []), found


def test_lm_probes_diff_compares_the_transformers_side_with_the_served_one(replay, tmp_path):
    """The two files the parity test writes (reports/served/<card>/), compared by
    ``lm-probes diff`` under the cross-class rules: a faithful server gives exit 0, one whose
    tokenizer adds a BOS exit 1, naming tokenizer.ids in the JSON."""
    from types import SimpleNamespace

    from lm_probes.cli import main as cli

    card = SimpleNamespace(served=SimpleNamespace(engine="vllm", args=["--dtype", "float32"]))
    for mode, code in (("faithful", 0), ("adds-bos", 1)):
        endpoint = Endpoint(replay(mode))
        served = served_observations(endpoint, replayed())
        a, b = write_parity_snapshots(
            tmp_path / mode,
            "tiny-mistral",
            (RECORDED["provenance"], parity_view(replayed(), served)),
            (served_provenance(endpoint, card), served),
        )
        assert (a.name, b.name) == ("cpu.json", "served.json")
        found = tmp_path / f"{mode}.json"
        assert (
            cli.main(["diff", str(a), str(b), "--html", str(tmp_path / f"{mode}.html"), "--json", str(found)]) == code
        )
        if code:
            assert "tokenizer.ids" in found.read_text(encoding="utf-8")


def test_an_unreachable_or_garbled_server_says_so(replay, tmp_path):
    with pytest.raises(ServedError, match=r"cannot reach the server .*is it running\?"):
        Endpoint("http://127.0.0.1:9", timeout=2).tokenize("x", True)

    class Garbled(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>not an API</html>")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Garbled)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ServedError, match="the answer is not JSON"):
            Endpoint(f"http://127.0.0.1:{server.server_address[1]}", model="m").tokenize("x", True)
    finally:
        server.shutdown()
        server.server_close()


def test_endpoint_gives_the_verdicts_of_the_parity_test(replay, run_suite, tmp_path):
    """--lm-probes-endpoint against a server the user runs: the behavioural parity test (S1; the replay
    answers only what it recorded, so not S3-S6) passes on a faithful one and fails, naming
    the section, on one whose tokenizer adds a BOS."""
    folder = _served_card(tmp_path)
    args = ("tests/behaviour/test_parity.py::test_served_model_matches_transformers", "-m", "served")
    args += ("--lm-probes-cards-dir", str(folder), "--lm-probes-card", "tiny-served")
    passed = run_suite(*args, "--lm-probes-endpoint", replay())
    assert passed.returncode == 0 and "1 passed" in passed.stdout, passed.stdout[-2000:]
    broken = run_suite(*args, "--lm-probes-endpoint", replay("adds-bos"))
    assert broken.returncode == 1 and "tokenizer.ids" in broken.stdout, broken.stdout[-2000:]


def test_the_served_side_is_what_each_sections_entry_says_a_server_shows():
    """served_observations asks the section list, not a list of its own: a registered section
    with observe_served is asked, one without (temperature) is not, and one the in-process side
    did not record is not either."""
    from lm_probes.snapshots import sections

    asked = sections.Section(
        "served_echo",
        "a stand-in",
        lambda s: None,
        lambda r, c, x: [],
        lambda *a: [],
        observe_served=lambda e, r: [e, r],
    )
    sections.register(asked)
    try:
        in_process = {"served_echo": {"a": 1}, "temperature": {"entropy": {}}}
        assert served_observations("endpoint", in_process) == {"served_echo": ["endpoint", {"a": 1}]}
        assert served_observations("endpoint", {"temperature": {}}) == {}
    finally:
        sections.unregister("served_echo")
    assert [s.name for s in sections.all_sections() if s.observe_served] == [
        "tokenizer",
        "next_token",
        "greedy",
        "answer_ends",
    ]
