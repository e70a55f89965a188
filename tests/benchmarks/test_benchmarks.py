"""Timing benchmarks (pytest-benchmark), run with `pytest -m benchmark`; never part of
the default run, never timed assertions. Each records tokens/s or chars/s, peak memory
and threads in extra_info; see docs/benchmarks.md for saving and comparing runs."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
import torch

from lm_probes import generate_calls
from lm_probes import sampling as sp
from lm_probes.cards.files import package_file
from lm_probes.plugin.options import options_of
from lm_probes.subjects.subject import Subject
from lm_probes.timing import current_rss_mb, reset_peak, resource_info, synchronized

pytestmark = pytest.mark.benchmark

# English and Japanese, about 1,000 characters: a fixed text for tokenizer throughput.
MULTILINGUAL = (
    "The capital of Japan is Tokyo. It is the largest city in the country and one of the most "
    "populous metropolitan areas in the world. Language models read text as tokens: a tokenizer "
    "splits words into pieces from a fixed vocabulary and maps each piece to an id. "
    "日本の首都は東京です。東京は日本で最も大きな都市であり、世界でも有数の人口を抱える大都市圏です。"
    "言語モデルはテキストをトークンとして読み込みます。トークナイザーは単語を語彙の断片に分割し、"
    "それぞれに番号を割り当てます。"
) * 4

LONG_PROMPT = (
    "Language models are evaluated with tests that state what the model should do. "
    "A tokenizer turns text into ids, an embedding turns ids into vectors, and decoding "
    "turns the model's next-token distribution into text, one token at a time. "
) * 3  # about 150 tokens: a prefill long enough to measure

NEW_TOKENS = 16
BATCH = 5
STRATEGIES = {
    "greedy": {},
    "top-k": {"do_sample": True, "top_k": 50, "top_p": 1.0, "temperature": 1.0},
    "top-p": {"do_sample": True, "top_p": 0.9, "top_k": 0, "temperature": 1.0},
    "temperature": {"do_sample": True, "temperature": 1.4, "top_k": 0, "top_p": 1.0},
    "beam-4": {"num_beams": 4},
}


def _info(benchmark, device_type: str, **extra) -> None:
    benchmark.extra_info.update(resource_info(device_type))
    benchmark.extra_info.update(extra)


# --------------------------------------------------------------------- tokenizer


def _benchmark_throughput(benchmark, fn, ids: list[int]) -> None:
    """Time ``fn`` (encode or decode of MULTILINGUAL) and record characters per second."""
    benchmark(fn)
    _info(
        benchmark,
        "cpu",
        chars=len(MULTILINGUAL),
        tokens=len(ids),
        chars_per_s=round(len(MULTILINGUAL) / benchmark.stats.stats.mean),
    )


@pytest.mark.observation(expects="tokenizer.vocab_size")
@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_tokenizer_throughput_transformers(benchmark, lm_probes_subject, direction):
    tokenizer = lm_probes_subject.tokenizer
    ids = tokenizer.encode(MULTILINGUAL, add_special_tokens=False)
    fn = (
        (lambda: tokenizer.encode(MULTILINGUAL, add_special_tokens=False))
        if direction == "encode"
        else (lambda: tokenizer.decode(ids))
    )
    _benchmark_throughput(benchmark, fn, ids)


@pytest.mark.parametrize("direction", ["encode", "decode"])
def test_tokenizer_throughput_sentencepiece(benchmark, direction):
    """The Mistral SentencePiece model used directly, without transformers around it."""
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(
        model_file=str(package_file("mistral_common", "tokenizer.model.v1"))
    )
    ids = processor.encode(MULTILINGUAL)
    fn = (lambda: processor.encode(MULTILINGUAL)) if direction == "encode" else (lambda: processor.decode(ids))
    _benchmark_throughput(benchmark, fn, ids)


# ------------------------------------------------------------------ model timing


def test_prefill_latency(benchmark, lm_probes_model_subject):
    tokenizer, model = lm_probes_model_subject.tokenizer, lm_probes_model_subject.model
    enc = tokenizer(LONG_PROMPT, return_tensors="pt").to(model.device)
    reset_peak(model.device.type)

    def prefill():
        with torch.no_grad():
            return model(**enc).logits

    benchmark.pedantic(synchronized(prefill, model.device.type), rounds=5, warmup_rounds=1)
    _info(benchmark, model.device.type, prompt_tokens=int(enc.input_ids.shape[1]))


@pytest.mark.parametrize("batch", [1, BATCH], ids=["batch1", f"batch{BATCH}"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_decode_tokens_per_second(benchmark, lm_probes_model_subject, strategy, batch):
    tokenizer, model = lm_probes_model_subject.tokenizer, lm_probes_model_subject.model
    settings = dict(STRATEGIES[strategy])
    prompts = ["The capital of Japan is"] * batch
    reset_peak(model.device.type)

    def decode():
        # min_new_tokens: every row makes exactly NEW_TOKENS tokens, so tokens/s is exact
        return generate_calls.generate_many(
            tokenizer, model, prompts, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, seed=0, **settings
        )

    benchmark.pedantic(synchronized(decode, model.device.type), rounds=3, warmup_rounds=1)
    tokens = batch * NEW_TOKENS
    _info(
        benchmark,
        model.device.type,
        batch=batch,
        new_tokens=tokens,
        tokens_per_s=round(tokens / benchmark.stats.stats.mean, 2),
    )


def test_batched_against_sequential_sampling(benchmark, lm_probes_model_subject):
    """The sampling probe's 5 samples in one generate call, against 5 calls; the ratio
    (sequential time / batched time) goes to extra_info and the README."""
    tokenizer, model = lm_probes_model_subject.tokenizer, lm_probes_model_subject.model
    settings = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=True, top_p=0.9, temperature=1.4)

    def sequential() -> float:
        start = time.perf_counter()
        for seed in range(BATCH):
            generate_calls.generate(tokenizer, model, "The capital of Japan is", runs=1, seed=seed, **settings)
        return time.perf_counter() - start

    batched = benchmark.pedantic(
        lambda: generate_calls.generate(tokenizer, model, "The capital of Japan is", runs=BATCH, seed=0, **settings),
        rounds=3,
        warmup_rounds=1,
    )
    assert len(batched.texts) == BATCH
    sequential_s = min(sequential() for _ in range(2))
    _info(
        benchmark,
        model.device.type,
        samples=BATCH,
        sequential_s=round(sequential_s, 3),
        sequential_over_batched=round(sequential_s / benchmark.stats.stats.min, 2),
    )


# ---------------------------------------------------------------- sampling steps


@pytest.mark.parametrize("vocab", [32000, 49152])
@pytest.mark.parametrize("impl", ["own", "transformers"])
@pytest.mark.parametrize("method", ["top-p", "top-k"])
def test_sampling_step(benchmark, vocab, impl, method):
    """One filtering step on (1, vocab) logits: the own functions against the warpers."""
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(1, vocab, generator=torch.Generator().manual_seed(0)) * 3
    if impl == "own":
        fn = (lambda: sp.top_p_filter(logits, 0.9)) if method == "top-p" else (lambda: sp.top_k_filter(logits, 50))
    else:
        warper = TopPLogitsWarper(0.9) if method == "top-p" else TopKLogitsWarper(50)
        fn = lambda: warper(None, logits)  # noqa: E731
    benchmark(fn)
    _info(benchmark, "cpu", vocab=vocab)


# --------------------------------------------------------------------- loading


@pytest.mark.parametrize("source", ["gguf", "cached-safetensors"])
def test_model_load_time(benchmark, source):
    """SmolLM2 from its GGUF (de-quantised on every load) against the cached copy."""
    from transformers import AutoModelForCausalLM

    from lm_probes.cards.card import find_card

    card = find_card("smollm2-135m-instruct")
    gguf = package_file(card.model.package, card.model.file)
    if source == "gguf":
        load = lambda: AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)  # noqa: E731
        rounds = 1  # ~25 s each on 2 cores
    else:
        folder = Subject(card).model_folder()  # converts once if not cached yet
        load = lambda: AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)  # noqa: E731
        rounds = 3
    benchmark.pedantic(load, rounds=rounds, warmup_rounds=0)
    _info(benchmark, "cpu", source=source)


@pytest.mark.parametrize("card_name", ["smollm2-135m-instruct", "smollm2-135m-instruct-nf4"], ids=["float32", "nf4"])
def test_load_float32_against_nf4(benchmark, card_name):
    """The same SmolLM2 weights loaded in float32 and in the article's NF4 (bitsandbytes
    on CPU), side by side: load time, the model's footprint and the memory the load
    added to the process. Decode speed of both: test_decode_tokens_per_second."""
    from lm_probes.cards.card import find_card

    card = find_card(card_name)
    Subject(card).model_folder()  # the GGUF conversion is cached first, not timed
    loaded: list[Any] = []

    def load():
        loaded.clear()  # the previous round's model is freed before the next load
        before = current_rss_mb()
        loaded.append((Subject(card).load_model_anew(), before, current_rss_mb()))

    benchmark.pedantic(load, rounds=3, warmup_rounds=1)
    model, before, after = loaded[0]
    _info(
        benchmark,
        "cpu",
        quantization=card.quantization,
        dtype=card.dtype,
        footprint_mb=round(model.get_memory_footprint() / 2**20, 1),
        rss_added_mb=round(after - before, 1) if before is not None and after is not None else "-",
    )


def test_nf4_load_time(benchmark, request):
    """4-bit NF4 load of the GPU card's model (CUDA and bitsandbytes only)."""
    if not torch.cuda.is_available():
        pytest.skip("requires CUDA; none found (torch.cuda.is_available() is False)")
    from lm_probes.cards.card import find_card

    card = find_card("mistral-7b-v0.1")
    model = options_of(request.config).model
    if model:
        card = card.with_model(model)
    reset_peak("cuda")
    benchmark.pedantic(synchronized(lambda: Subject(card).load_model_anew(), "cuda"), rounds=1, warmup_rounds=0)
    _info(benchmark, "cuda", quantization="nf4")


# ------------------------------------------------------------ performance model

PERFORMANCE_CARD = "smollm2-135m-instruct"  # the default card of the performance model (--lm-probes-card: another)


def test_performance_model_of_the_suite(
    benchmark, lm_probes_model_subject, request, lm_probes_attach, tmp_path, monkeypatch
):
    """The behavioural suite on the card, in this process, as the ledger (lm_probes/ledger.py)
    saw it: per probe (a result of lm_probes/subjects/results.py, or a test's own work) its
    generate calls, rows per call, prompt and new tokens, seconds and tokens/s, against the
    bandwidth limit (weights read per decode step / the measured memory bandwidth; a step
    of n rows reads them once, so the limit is n times batch 1's). The sum is the suite."""
    from lm_probes.ledger import COST_HEADERS, LEDGER, TOTAL, Work, cost_rows, measure_bandwidth, weight_bytes
    from lm_probes.paths import REPO_ROOT

    card = lm_probes_model_subject.card
    if not options_of(request.config).cards and card.name != PERFORMANCE_CARD:
        pytest.skip(f"the performance model runs on {PERFORMANCE_CARD} unless --lm-probes-card names others")
    machine = measure_bandwidth()
    weights = weight_bytes(lm_probes_model_subject.model)
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    before = LEDGER.snapshot()
    outcome: list[int] = []

    def suite() -> None:
        args = ["-p", "no:cacheprovider", "-q", f"--html={tmp_path / 'suite.html'}"]
        outcome.append(int(pytest.main([*args, "tests/behaviour", "--lm-probes-card", str(card.path)])))

    benchmark.pedantic(suite, rounds=1, iterations=1, warmup_rounds=0)
    wall = benchmark.stats.stats.max
    assert outcome[0] in (0, 1), f"the suite did not run on {card.name} (exit {outcome[0]})"
    work = LEDGER.since(before)
    # the suite's time outside any probe: collection, the model's load, the report
    outside = max(wall - sum(w.seconds for w in work.values()), 0.0)
    work["(outside probes: collection, load, report)"] = Work(seconds=outside)
    rows = cost_rows(_fold_small(work), weights, machine)
    total = rows[-1]
    assert total.label == TOTAL and total.work.new_tokens > 0
    table = [row.cells() for row in rows]
    caption = (
        f"{card.name}: weights {weights / 1e6:.0f} MB read per decode step, memory bandwidth "
        f"{machine.bandwidth_bytes_per_s / 1e9:.1f} GB/s on {machine.threads} threads: at most "
        f"{machine.bandwidth_bytes_per_s / weights:.1f} tokens/s at batch 1; the suite {wall:.0f} s, exit {outcome[0]}"
    )
    lm_probes_attach.table(
        COST_HEADERS, table, caption=caption, summary="Where a model's time goes (performance model)"
    )
    _print_table(request.config, caption, COST_HEADERS, table)
    _info(
        benchmark,
        lm_probes_model_subject.model.device.type,
        card=card.name,
        suite_exit=outcome[0],
        weight_mb=round(weights / 1e6, 1),
        bandwidth_gb_s=round(machine.bandwidth_bytes_per_s / 1e9, 2),
        limit_tokens_per_s_batch1=round(machine.bandwidth_bytes_per_s / weights, 2),
        generate_calls=total.work.prefills,
        rows_per_call=round(total.work.rows_per_call, 2),
        prompt_tokens=total.work.prompt_tokens,
        new_tokens=total.work.new_tokens,
        tokens_per_s=round(total.work.new_tokens / wall, 2),
        share_of_limit=round(total.share_of_limit, 3),
        per_probe={row.label: dict(zip(COST_HEADERS[1:], row.cells()[1:])) for row in rows},
    )


def _fold_small(work: dict[str, Any], seconds: float = 0.5) -> dict[str, Any]:
    """Labels of no model work and under ``seconds`` (most tests' own checks) as one row."""
    from lm_probes.ledger import Work

    kept, folded, count = {}, Work(), 0
    for label, w in work.items():
        if w.forwards or w.seconds >= seconds:
            kept[label] = w
        else:
            folded.add(w)
            count += 1
    if count:
        kept[f"{count} more, no model work, each < {seconds} s"] = folded
    return kept


def _print_table(config: pytest.Config, caption: str, headers: list[str], rows: list[list[Any]]) -> None:
    """The table on the terminal too, past pytest's capture (pytest-benchmark's own table
    comes at the end of the session)."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if terminal is None:
        return
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        terminal.write_line("")
        terminal.write_line(caption)
        for row in cells:
            terminal.write_line("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
