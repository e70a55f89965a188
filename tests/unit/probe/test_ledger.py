"""The ledger counts what transformers' generate() really runs (lm_probes/ledger.py): one
prefill per call with its rows, one one-token step per further new token, to the probe
whose result is being computed."""

from __future__ import annotations

import time

import pytest

from lm_probes import generate_calls
from lm_probes.ledger import LEDGER, NO_PROBE, TOTAL, Ledger, Machine, Work, cost_rows, label_of, weight_bytes
from lm_probes.subjects import results
from lm_probes.subjects.memo import RESULTS
from tests.unit.conftest import tiny

PROMPT = "The capital of Japan is"


@pytest.fixture(scope="module")
def tiny_subject():
    return tiny()


def _watched(subject) -> Ledger:
    ledger = Ledger()
    ledger.watch(subject.model, subject.name)
    return ledger


def test_one_generate_of_3_rows_and_4_new_tokens_is_one_prefill_of_3_rows_and_3_steps(tiny_subject):
    """transformers' generate() as measured (transformers 5): the prefill yields every row's
    first token, then 3 one-token steps of 3 rows each; 12 new tokens in all."""
    import torch

    ledger = _watched(tiny_subject)
    ids = torch.tensor([generate_calls.prompt_ids(tiny_subject.tokenizer, PROMPT)] * 3)
    with ledger.probe("sampling", tiny_subject.name), torch.no_grad():
        tiny_subject.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, min_new_tokens=4, do_sample=True, pad_token_id=0
        )
    work = ledger.since({})["sampling"]
    assert (work.prefills, work.prefill_rows, work.prompt_tokens) == (1, 3, 3 * ids.shape[1])
    assert (work.generating_prefills, work.decode_steps, work.decode_rows) == (1, 3, 9)
    assert (work.new_tokens, work.forwards, work.rows_per_call, work.computes) == (12, 4, 3.0, 1)


def test_the_engines_samples_share_one_prompt_prefill_and_are_one_generate_call(tiny_subject):
    """generate_calls.generate's runs (issue 34, part 1): the prompt less its last token once, in one
    row, then one generate() call of 3 rows on the repeated cache."""
    ledger = _watched(tiny_subject)
    length = len(generate_calls.prompt_ids(tiny_subject.tokenizer, PROMPT))
    generate_calls.generate(
        tiny_subject.tokenizer,
        tiny_subject.model,
        PROMPT,
        max_new_tokens=4,
        min_new_tokens=4,
        runs=3,
        do_sample=True,
        seed=0,
    )
    work = ledger.since({})[NO_PROBE]
    assert (work.prefills, work.prefill_rows, work.prompt_tokens) == (2, 4, length - 1 + 3)
    assert (work.generating_prefills, work.rows_per_call, work.decode_rows, work.new_tokens) == (1, 3.0, 9, 12)


def test_the_same_rows_drawn_in_separate_calls_show_three_calls_of_one_row(tiny_subject):
    """The break the ledger exists to show: repeated sampling as separate generate() calls
    costs three calls of one row, not one of three."""
    ledger = _watched(tiny_subject)
    with ledger.probe("sampling", tiny_subject.name):
        for seed in range(3):
            generate_calls.generate(
                tiny_subject.tokenizer,
                tiny_subject.model,
                PROMPT,
                max_new_tokens=4,
                min_new_tokens=4,
                do_sample=True,
                seed=seed,
            )
    work = ledger.since({})["sampling"]
    assert (work.generating_prefills, work.rows_per_call, work.new_tokens) == (3, 1.0, 12)


def test_a_plain_forward_is_a_prefill_with_no_new_token_and_work_outside_a_probe_is_counted_apart(tiny_subject):
    ledger = _watched(tiny_subject)
    from lm_probes import decoding as dc

    dc.next_token(tiny_subject.tokenizer, tiny_subject.model, PROMPT)
    work = ledger.since({})[NO_PROBE]
    assert (work.prefills, work.prefill_rows, work.new_tokens, work.generating_prefills) == (1, 1, 0, 0)


def test_a_shared_prompt_cache_counts_the_rows_continuing_it_as_one_generate_call(tiny_subject):
    """D5's 400 first tokens: the prompt less its last token once, then one generate() call
    of 400 one-token rows on the repeated cache."""
    ledger = _watched(tiny_subject)
    generate_calls.sample_first_tokens(
        tiny_subject.tokenizer, tiny_subject.model, PROMPT, runs=8, seed=0, top_p=0.9, temperature=1.4
    )
    work = ledger.since({})[NO_PROBE]
    assert (work.prefills, work.generating_prefills, work.generating_rows, work.new_tokens) == (2, 1, 8, 8)


def test_results_count_to_their_label_and_nested_ones_to_the_innermost():
    """Through the memo with the session's ledger: D6's samples to "sampling"; the
    temperature sweep computes the next token inside it: the forward is next_token's, and
    the sweep's seconds leave out next_token's."""
    subject = tiny()
    before = LEDGER.snapshot()
    results.sampled(subject, "warm")
    started = time.monotonic()
    results.temperature_sweep(subject)
    wall = time.monotonic() - started
    done = LEDGER.since(before, subject.name)
    assert done["sampling"].generating_prefills == 1 and done["sampling"].rows_per_call == 5
    assert 5 <= done["sampling"].new_tokens <= 5 * 20
    assert done["next_token"].forwards == 1 and done["temperature"].forwards == 0
    # each second counted once: the sweep's own and next_token's add up to no more than the call
    assert done["temperature"].computes == 1
    assert done["temperature"].seconds + done["next_token"].seconds <= wall
    # computed once: asking again does no work
    again = LEDGER.snapshot()
    results.sampled(subject, "warm")
    assert LEDGER.since(again, subject.name) == {}
    assert RESULTS.has(subject, ("sampling", "warm", 0, 5, 0))


def test_a_label_is_the_key_or_its_first_element():
    assert label_of("beam") == "beam" and label_of(("sampling", "hot", 0, 5)) == "sampling"


def test_the_cost_table_divides_the_bandwidth_by_the_weights_and_sums_the_labels():
    """1 GB/s over 100 MB of weights: 10 tokens/s at batch 1, 50 at 5 rows per call."""
    single = Work(prefills=2, prefill_rows=2, generating_prefills=2, generating_rows=2, decode_rows=18, seconds=4.0)
    batched = Work(prefills=1, prefill_rows=5, generating_prefills=1, generating_rows=5, decode_rows=95, seconds=2.5)
    rows = cost_rows({"greedy": single, "sampling": batched}, 100 * 10**6, Machine(1e9, 2))
    by_label = {r.label: r for r in rows}
    assert [r.label for r in rows] == ["greedy", "sampling", TOTAL]
    assert by_label["greedy"].limit_tokens_per_s == pytest.approx(10.0)
    assert by_label["greedy"].tokens_per_s == pytest.approx(5.0) and by_label["greedy"].share_of_limit == 0.5
    assert by_label["sampling"].limit_tokens_per_s == pytest.approx(50.0)
    total = by_label[TOTAL]
    assert (total.work.generating_prefills, total.work.new_tokens, total.work.seconds) == (3, 120, 6.5)
    # 20 tokens at 10/s and 100 at 50/s: 4 s at the limit for 120 tokens
    assert total.limit_tokens_per_s == pytest.approx(30.0)
    assert total.cells()[0] == TOTAL and total.cells()[-1] == f"{total.share_of_limit:.0%}"


def test_the_weights_a_step_reads_are_the_models_memory_footprint(tiny_subject):
    """Every parameter and buffer once: what transformers' get_memory_footprint counts."""
    assert weight_bytes(tiny_subject.model) == tiny_subject.model.get_memory_footprint()


def test_a_listener_that_fails_is_dropped_with_a_warning_and_the_probe_runs_on(tiny_subject):
    ledger = _watched(tiny_subject)

    def broken(*_):
        raise RuntimeError("terminal gone")

    with ledger.listening(broken), pytest.warns(UserWarning, match="progress display stopped: RuntimeError"):
        generate_calls.generate(tiny_subject.tokenizer, tiny_subject.model, PROMPT, max_new_tokens=3, min_new_tokens=3)
    assert ledger.since({})[NO_PROBE].new_tokens == 3
