"""lm_probes/plugin/session.py: what a pytest-xdist worker sends the controller, and the merge
that builds the report from several workers (issue 36: a test file per module; the report
built end to end by two workers is test_plugin_report.py's)."""

from __future__ import annotations

import json

from lm_probes.plugin.session import SessionRecord
from lm_probes.snapshots.differences import Difference
from lm_probes.snapshots.outcome import SnapshotOutcome

TORCH = {"torch": "2.13.0", "threads": "1"}


def _worker(card: str, figure: str, state: str) -> str:
    record = SessionRecord(in_use=True)
    record.add_fragment("Figures", card, figure)
    record.add_outcome(card, "D1", state)
    record.snapshots[card] = SnapshotOutcome(
        card, "failed", "compared with cpu.json", differences=(Difference("error", "greedy.bos", "ids moved"),)
    )
    return record.to_json(TORCH)


def test_two_workers_records_merge_into_the_controllers_without_losing_or_mixing_anything():
    controller = SessionRecord()
    sent = [_worker("tiny-mistral", "<img a>", "passed"), _worker("smollm2", "<img b>", "failed")]
    assert all(json.loads(s)["fragments"] for s in sent)  # plain JSON: what execnet carries
    runtimes = [controller.merge(s) for s in sent]
    assert runtimes == [TORCH, TORCH] and controller.in_use  # the controller's report shows the workers' tests
    assert controller.fragments == {"Figures": {"tiny-mistral": ["<img a>"], "smollm2": ["<img b>"]}}
    assert controller.outcomes == {("tiny-mistral", "D1"): ["passed"], ("smollm2", "D1"): ["failed"]}
    outcome = controller.snapshots["smollm2"]
    assert (outcome.verdict, [d.where for d in outcome.errors]) == ("failed", ["greedy.bos"])


def test_one_cards_fragments_from_two_workers_keep_their_order():
    controller = SessionRecord()
    controller.merge(_worker("tiny-mistral", "<first>", "passed"))
    controller.merge(_worker("tiny-mistral", "<second>", "passed"))
    assert controller.fragments["Figures"]["tiny-mistral"] == ["<first>", "<second>"]
    assert controller.outcomes[("tiny-mistral", "D1")] == ["passed", "passed"]
