"""The served side's timings (pytest-benchmark), beside the in-process decode figures of
test_benchmarks.py: requests/s and tokens/s for greedy requests one at a time and N at
once, and the time to the first streamed token. Opt-in with a server: ``make parity``
(``-m served --lm-probes-serve``) or ``-m served --lm-probes-endpoint URL``. Never timed assertions."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lm_probes.snapshots import sections
from lm_probes.timing import resource_info

pytestmark = [pytest.mark.benchmark, pytest.mark.served]

NEW_TOKENS = 16  # as test_decode_tokens_per_second
ROUNDS = 3


def _prompt_ids(lm_probes_subject) -> list[int]:
    """The D1 prompt's ids, as the parity tests send them."""
    return list(sections.find("next_token").observe(lm_probes_subject)["prompt_ids"])


@pytest.mark.parametrize("concurrent", [1, 4])
def test_served_greedy_throughput(benchmark, lm_probes_model_subject, lm_probes_served_endpoint, concurrent):
    """``concurrent`` greedy requests of NEW_TOKENS tokens sent at once (1: one request)."""
    prompt = _prompt_ids(lm_probes_model_subject)

    def ask(_: int = 0) -> int:
        (c,) = lm_probes_served_endpoint.complete(prompt, max_tokens=NEW_TOKENS, temperature=0.0, logprobs=0)
        return len(c.ids)

    def together() -> int:
        with ThreadPoolExecutor(max_workers=concurrent) as pool:
            return sum(pool.map(ask, range(concurrent)))

    tokens = benchmark.pedantic(together, rounds=ROUNDS, warmup_rounds=1)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(resource_info("cpu"))
    benchmark.extra_info.update(
        engine=lm_probes_served_endpoint.version() or "unknown",
        url=lm_probes_served_endpoint.url,
        concurrent_requests=concurrent,
        requests_per_s=round(concurrent / mean, 3),
        tokens_per_s=round(tokens / mean, 2),
    )


def test_served_time_to_first_token(benchmark, lm_probes_model_subject, lm_probes_served_endpoint):
    """A streamed greedy request: the time to its first token (the benchmark's figure is
    the whole request; the first token's times are in extra_info)."""
    prompt = _prompt_ids(lm_probes_model_subject)
    firsts: list[float] = []

    def stream() -> None:
        first, _, _ = lm_probes_served_endpoint.time_to_first_token(prompt, max_tokens=NEW_TOKENS)
        firsts.append(first)

    started = time.perf_counter()
    benchmark.pedantic(stream, rounds=ROUNDS + 2, warmup_rounds=1)
    benchmark.extra_info.update(
        engine=lm_probes_served_endpoint.version() or "unknown",
        time_to_first_token_median_s=round(statistics.median(firsts[1:] or firsts), 4),
        time_to_first_token_min_s=round(min(firsts), 4),
        wall_s=round(time.perf_counter() - started, 2),
    )
