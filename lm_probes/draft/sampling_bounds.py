"""The draft's sampling bounds (D6-D8, K2's distinct openings): what a later run of the same
model reaches, set for far less than the suite's own samples cost many times over.

- The shares (D6: samples equal to greedy's text; D7: samples naming the answer) come from a
  measured probability: the chance that one sample begins with greedy's path, or with a
  beginning that named the answer in the suite's own samples, read from one forward pass with
  the processors generate() builds for that call, then a binomial tail with a stated false-alarm
  rate (``BinomialShare``).
- The counts (distinct samples of D7, D8 and K2) and D8's distinct bigrams are the smallest
  over ``--draws`` groups of samples: the suite's own seed-0 call, then one batched call with
  the next seed sharing the prompt's prefill; for the counts, that call stops as soon as every
  group's samples differ (generate_calls' ``until_groups_differ``), since no count can change after.

tests/unit/draft/test_draft_bounds.py sets the old rule (10 simulated draws, less one sample) beside
the new one on SmolLM2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lm_probes import decoding as dc
from lm_probes import generate_calls, generation, stopping
from lm_probes.draft.margins import DISTINCT, SHARE, BinomialShare
from lm_probes.draft.settings import Draft, DraftSettings
from lm_probes.draft.writer import Commented
from lm_probes.inputs import article_inputs
from lm_probes.subjects import results
from lm_probes.subjects.memo import RESULTS

if TYPE_CHECKING:
    from lm_probes.subjects.subject import Subject


def sample_groups(
    subject: Subject, regime: str, draws: int, *, until_groups_differ: bool = False
) -> list[generation.Generation]:
    """``draws`` groups of the regime's samples: the suite's own call (the session seed,
    0 by default, so the suite sees exactly the first group), then draws - 1 more groups
    from one batched call with the next seed, read group by group (rows of one call are
    independent samples: the same draws as draws - 1 calls, at a fraction of the time).
    ``until_groups_differ``: that call stops once no group holds two alike, which is all a
    count of distinct samples reads (its rows are then beginnings of the full samples)."""
    first = results.sampled(subject, regime)
    if draws <= 1:
        return [first]
    n = len(first.texts)
    more = results.sampled(
        subject,
        regime,
        seed=subject.seed + 1,
        runs=n * (draws - 1),
        until_groups_differ=n if until_groups_differ else 0,
    )
    return [first, *more.groups(n)]


def opening_groups(subject: Subject, draws: int) -> list[int]:
    """K2: distinct sampled continuations of the least varied opening, per group of runs
    (the suite's call first, then draws - 1 groups from one batched call that stops once
    every group's continuations differ: only their count is read)."""
    first = results.openings(subject, sampling=True)
    counts = [min(g.distinct for g in first)]
    if draws > 1:
        runs = len(first[0].texts)
        more = results.openings(
            subject, sampling=True, seed=subject.seed + 1, runs=runs * (draws - 1), until_groups_differ=runs
        )
        per_opening = [g.groups(runs) for g in more]
        counts += [min(len(set(groups[i].new_ids)) for groups in per_opening) for i in range(draws - 1)]
    return counts


def answer_paths(tokenizer: Any, samples: generation.Generation, answer: str) -> tuple[tuple[int, ...], ...]:
    """The shortest beginning of each sample whose text names ``answer``, each once, and none
    that extends another: disjoint events (a sample begins with one of them or with none),
    so their probabilities add up to at most the chance that a sample names the answer."""
    found: set[tuple[int, ...]] = set()
    for ids, text in zip(samples.new_ids, samples.texts):
        if answer not in text:
            continue
        for end in range(1, len(ids) + 1):
            if answer in tokenizer.decode(list(ids[:end]), skip_special_tokens=True):
                found.add(tuple(ids[:end]))
                break
    return tuple(sorted(p for p in found if not any(q != p and p[: len(q)] == q for q in found)))


def sampled_path_probabilities(
    subject: Subject, regime: str, paths: tuple[tuple[int, ...], ...]
) -> tuple[dc.PathProbability, ...]:
    """How likely one sample of the regime's call (``results.sampled``) is to begin with each
    of ``paths`` (new token ids): generate()'s own processors for that call applied to one
    forward pass (D6's greedy path, D7's answer)."""
    spec = article_inputs()["sampling"]
    prompt_ids = tuple(generate_calls.prompt_ids(subject.tokenizer, spec["prompt"]))
    call = {"do_sample": True, **spec["regimes"][regime]}
    # a row ends at the first stop id it emits (what follows is padding, never sampled)
    ends, _ = stopping.stop_ids(subject.tokenizer, subject.model.generation_config)
    paths = tuple(_through_first(path, set(ends)) for path in paths)
    return RESULTS.get(
        subject,
        ("sampling-paths", regime, paths),
        lambda: dc.path_probabilities(subject.model, prompt_ids, list(paths), call),
    )


def _through_first(path: tuple[int, ...], ends: set[int]) -> tuple[int, ...]:
    for i, token in enumerate(path):
        if token in ends:
            return path[: i + 1]
    return path


def share_from_probability(
    subject: Subject, regime: str, paths: tuple[tuple[int, ...], ...], suite_share: float, what: str
) -> tuple[float, str]:
    """A share bound of D6/D7 (BinomialShare) from the probability that a sample of the
    regime begins with one of ``paths`` (``what`` names them), and the words saying how it
    was set. The suite's own seed-0 call must pass as drafted: a bound above the share it
    measured is lowered to that share, and the words say so."""
    margin = BinomialShare(article_inputs()["sampling"]["samples"])
    found = sampled_path_probabilities(subject, regime, paths) if paths else ()
    p = min(1.0, sum(f.probability for f in found))
    steps = [q for f in found for q in f.step_probs]
    least = f", its least likely step {min(steps):.3g}" if steps else ""
    bound = margin.bound(p)
    words = f"p >= {p:.4g} per sample ({what} under generate()'s warpers{least}); "
    if bound == 0:
        words += f"so no share above 0 is reached in at least {1 - margin.rate:.0%} of runs"
    else:
        alarm = margin.false_alarm(p)
        words += f"the bound is {margin.describe()}: " + (f"{alarm:.2g} of runs" if alarm > 0 else "never, at p = 1")
    if bound > suite_share:
        words += f"; the suite's seed-0 share {suite_share:.2f} is below it, so the bound is that share"
        bound = suite_share
    return bound, words


def near_greedy_share(subject: Subject) -> tuple[float, str]:
    """D6: the share of samples equal to greedy's text, from the probability of greedy's
    path under the near-greedy regime's warpers (one forward pass)."""
    reference = results.greedy_reference(subject)
    suite = results.sampled(subject, "near-greedy")
    agreement = sum(t == reference.texts[0] for t in suite.texts) / len(suite.texts)
    path = reference.new_ids[0]
    return share_from_probability(subject, "near-greedy", (path,), agreement, f"greedy's {len(path)} tokens")


def warm_answer_share(subject: Subject) -> tuple[float, str]:
    """D7: the share of samples naming the answer, from the probability of the beginnings
    that named it in the suite's own samples (a lower bound of the chance to name it)."""
    answer = article_inputs()["sampling"]["answer"]
    suite = results.sampled(subject, "warm")
    paths = answer_paths(subject.tokenizer, suite, answer)
    what = (
        f"the {len(paths)} beginning(s) naming {answer!r} in the suite's samples"
        if paths
        else f"no sample of the suite's names {answer!r}"
    )
    return share_from_probability(subject, "warm", paths, suite.share_containing(answer), what)


def draft_sampling(subject: Subject, settings: DraftSettings, draft: Draft) -> Any:
    """D6-D8. The shares (D6: equal to greedy, D7: naming the answer) from measured
    probabilities: the chance that one sample is greedy's text (greedy's path under the
    regime's warpers) or names the answer (the beginnings that named it in the suite's
    samples), in one forward pass, and a binomial tail (BinomialShare). The counts (D7,
    D8's distinct samples) and D8's distinct bigrams over ``settings.draws`` groups of
    samples: the smallest over the groups less one (DISTINCT) or 0.1 (SHARE). A bound is
    written only where it can still fail."""
    spec = article_inputs()["sampling"]
    n = spec["samples"]
    over = f"over {settings.draws} draws of {n}"
    section: dict[str, Any] = {}

    bound, words = near_greedy_share(subject)
    if bound > 0:
        section["near-greedy"] = Commented({"min_greedy_agreement": bound}, f"equal to greedy: {words}")
    else:
        draft.skip("sampling.near-greedy", f"a sample equals greedy's text with {words}")

    answer = spec["answer"]
    share, words = warm_answer_share(subject)
    first, *more = sample_groups(subject, "warm", settings.draws, until_groups_differ=True)
    distinct = min([first.distinct] + [len(set(g.new_ids)) for g in more])
    if share > 0 and DISTINCT.can_fail(distinct):
        section["warm"] = Commented(
            {"answer": answer, "min_answer_share": share, "min_distinct": DISTINCT.bound(distinct)},
            f"naming {answer!r}: {words}; smallest distinct {over}: {distinct}, the bound {DISTINCT.describe()}",
        )
    else:
        draft.skip("sampling.warm", f"naming {answer!r}: {words}; smallest distinct {over}: {distinct}")

    runs = sample_groups(subject, "hot", settings.draws)
    distinct = min(g.distinct for g in runs)
    bigrams = min(g.distinct_n(2) for g in runs)
    if DISTINCT.can_fail(distinct):
        hot: dict[str, Any] = {"min_distinct": DISTINCT.bound(distinct)}
        if SHARE.can_fail(bigrams):
            hot["min_distinct_2"] = SHARE.bound(bigrams)
        section["hot"] = Commented(
            hot,
            f"smallest {over}: distinct {distinct}, distinct bigrams {bigrams:.3f}; bounds: the count "
            f"{DISTINCT.describe()}, the share {SHARE.describe()}",
        )
    else:
        draft.skip("sampling.hot", f"smallest distinct samples {over} is {distinct}")
    if not section:
        return None
    return Commented(
        section, f"D6-D8: shares from measured probabilities, counts over {settings.draws} draws of {n} samples"
    )
