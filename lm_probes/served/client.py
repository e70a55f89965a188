"""The HTTP side of a served subject: an OpenAI-compatible endpoint (vLLM's dialect where the
API leaves it open), with every request field that decides the result written out. A server
that is unreachable or answers something else than the API raises ``ServedError``, saying
what was asked, of which URL, and what came back."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# Every field that changes what a completion is, set explicitly: a request that leaves one
# out gets the engine's default (the OpenAI default samples at temperature 1; vLLM merges the
# model's generation_config.json into every request since early 2025, vLLM PR #12622).
NEUTRAL_SAMPLING = {
    "repetition_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "min_p": 0.0,
    "min_tokens": 0,
    "ignore_eos": False,
    "skip_special_tokens": False,
    "spaces_between_special_tokens": False,
    "return_tokens_as_token_ids": True,  # logprobs keyed "token_id:123": ids, not pieces
}


class ServedError(RuntimeError):
    """The endpoint cannot be reached, or did not answer as the API says."""


@dataclass(frozen=True)
class Completion:
    """One generated sequence: its token ids, its text and, per step, the top ids with their
    log-probabilities (as many as ``logprobs`` asked for)."""

    ids: tuple[int, ...]
    text: str
    top: tuple[dict[int, float], ...] = ()
    finish_reason: str | None = None  # "stop" (a stop id or string), "length" (max_tokens), as the server says

    def top_ids(self, k: int) -> list[list[int]]:
        return [[i for i, _ in sorted(step.items(), key=lambda kv: -kv[1])[:k]] for step in self.top]


def _token_id(key: str) -> int:
    # return_tokens_as_token_ids writes each token as "token_id:123"
    if not key.startswith("token_id:"):
        raise ServedError(
            f"a token came back as {key!r}, not 'token_id:N': the server ignores return_tokens_as_token_ids"
        )
    return int(key.split(":", 1)[1])


class Endpoint:
    """An OpenAI-compatible server at ``url`` (``http://127.0.0.1:8000``) serving ``model``
    (default: the first one its /v1/models lists)."""

    def __init__(self, url: str, model: str | None = None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._model = model

    # ------------------------------------------------------------------ transport

    def _request(self, path: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"}, method="POST" if data else "GET"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ServedError(f"{self.url}{path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServedError(f"{self.url}{path}: cannot reach the server ({reason}); is it running?") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ServedError(f"{self.url}{path}: the answer is not JSON: {raw[:200]!r}") from None

    def healthy(self, timeout: float = 5.0) -> bool:
        try:
            request = urllib.request.Request(self.url + "/health")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def version(self) -> str | None:
        """The engine's version where it says one (vLLM: GET /version), else None."""
        try:
            found = self._request("/version", timeout=10.0)
        except ServedError:
            return None
        return str(found["version"]) if isinstance(found, dict) and found.get("version") else None

    @property
    def model(self) -> str:
        if self._model is None:
            listed = self._request("/v1/models").get("data") or []
            if not listed:
                raise ServedError(f"{self.url}/v1/models lists no model")
            self._model = listed[0]["id"]
        return self._model

    # ---------------------------------------------------------------- the probes' calls

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        answer = self._request(
            "/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": add_special_tokens}
        )
        if "tokens" not in answer:
            raise ServedError(f"{self.url}/tokenize answered without 'tokens': {str(answer)[:200]}")
        return [int(t) for t in answer["tokens"]]

    def tokenize_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
        """The ids the server's chat template gives ``messages`` (vLLM's /tokenize with
        ``messages``): what its /v1/chat/completions feeds the model, special tokens
        included as the template writes them and none added on top."""
        answer = self._request(
            "/tokenize",
            {
                "model": self.model,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "add_special_tokens": False,
            },
        )
        if "tokens" not in answer:
            raise ServedError(f"{self.url}/tokenize (messages) answered without 'tokens': {str(answer)[:200]}")
        return [int(t) for t in answer["tokens"]]

    def chat(self, messages: list[dict[str, str]], *, max_tokens: int, top_logprobs: int = 0) -> Completion:
        """A greedy chat completion of ``messages``, its ids (and each step's top
        ``top_logprobs``) from the per-token logprobs."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": -1,
            "n": 1,
            "seed": None,
            "logprobs": True,
            "top_logprobs": top_logprobs,
            "stream": False,
            "add_generation_prompt": True,
            **NEUTRAL_SAMPLING,
        }
        answer = self._request("/v1/chat/completions", body)
        try:
            (choice,) = answer["choices"]
            content = choice["logprobs"]["content"]
        except (KeyError, TypeError, ValueError):
            raise ServedError(
                f"{self.url}/v1/chat/completions: expected one choice with logprobs.content, got {str(answer)[:200]}"
            ) from None
        ids = tuple(_token_id(step["token"]) for step in content)
        top = tuple(
            {_token_id(t["token"]): float(t["logprob"]) for t in step.get("top_logprobs") or []} for step in content
        )
        return Completion(ids, (choice.get("message") or {}).get("content") or "", top if top_logprobs else ())

    def time_to_first_token(self, prompt_ids: list[int], *, max_tokens: int) -> tuple[float, float, int]:
        """A streamed greedy completion: (seconds to its first token, seconds to its last,
        tokens streamed), each chunk read as the server sends it (server-sent events)."""
        import time

        body = {
            "model": self.model,
            "prompt": list(prompt_ids),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": -1,
            "stream": True,
            **{k: v for k, v in NEUTRAL_SAMPLING.items() if k != "return_tokens_as_token_ids"},
        }
        request = urllib.request.Request(
            self.url + "/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        start, first, tokens = time.perf_counter(), None, 0
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                for line in response:
                    if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                        continue
                    if first is None:
                        first = time.perf_counter() - start
                    tokens += 1
        except (urllib.error.URLError, OSError) as exc:
            raise ServedError(f"{self.url}/v1/completions (stream): {getattr(exc, 'reason', exc)}") from None
        if first is None:
            raise ServedError(f"{self.url}/v1/completions (stream) sent no token")
        return first, time.perf_counter() - start, tokens

    def complete_with(self, prompt_ids: list[int], fields: dict[str, Any]) -> list[Completion]:
        """A completion with only ``fields`` besides the prompt and the token ids: what a
        request gets from the server's defaults where it leaves a field out."""
        body = {"model": self.model, "prompt": list(prompt_ids), "logprobs": 0, "return_tokens_as_token_ids": True}
        answer = self._request("/v1/completions", {**body, **fields})
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ServedError(f"{self.url}/v1/completions: no choices in {str(answer)[:200]}")
        return [self._completion(choice, 0) for choice in sorted(choices, key=lambda c: c.get("index", 0))]

    def complete(
        self,
        prompt_ids: list[int],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        top_k: int = -1,
        n: int = 1,
        seed: int | None = None,
        logprobs: int | None = None,
    ) -> list[Completion]:
        """``n`` completions of a prompt given as ids (so the server's tokenizer adds nothing)."""
        body = {
            "model": self.model,
            "prompt": list(prompt_ids),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "n": n,
            "seed": seed,
            "logprobs": logprobs,
            "echo": False,
            "stream": False,
            **NEUTRAL_SAMPLING,
        }
        answer = self._request("/v1/completions", body)
        choices = answer.get("choices")
        if not isinstance(choices, list) or len(choices) != n:
            raise ServedError(f"{self.url}/v1/completions: expected {n} choice(s), got {str(answer)[:200]}")
        return [self._completion(choice, logprobs) for choice in sorted(choices, key=lambda c: c.get("index", 0))]

    def _completion(self, choice: dict[str, Any], logprobs: int | None) -> Completion:
        found = choice.get("logprobs") or {}
        tokens = found.get("tokens")
        if tokens is None:
            raise ServedError(
                f"{self.url}/v1/completions returned no token ids (logprobs.tokens); this client needs them"
            )
        top = tuple(
            {_token_id(k): float(v) for k, v in (step or {}).items() if not math.isnan(float(v))}
            for step in (found.get("top_logprobs") or [])
        )
        return Completion(
            tuple(_token_id(t) for t in tokens),
            choice.get("text", ""),
            top if logprobs else (),
            choice.get("finish_reason"),
        )
