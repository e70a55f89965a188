"""The same card served and in-process (issue 26): tokenizer ids exactly, the next-token
distribution within the card's measured ``served.parity`` bounds, greedy by the cross-class
top-k rule (probes/served/parity.py), and greedy the same when asked again and when asked
several times at once. Opt-in: ``pytest -m served --serve`` (lm-probes starts
the card's engine) or ``-m served --endpoint URL`` (a server you run)."""

from __future__ import annotations

import pytest

from probes.expect import check_that
from probes.report.html import Cell
from probes.served.parity import parity_differences, repeat_differences, served_observations
from probes.snapshots import sections
from probes.snapshots.record import provenance
from probes.subjects import results

PARITY_SECTIONS = ("tokenizer", "next_token", "greedy")
REPEATS, CONCURRENT = 3, 4  # greedy asked again one after another, then this many at once


@pytest.mark.served
@pytest.mark.observation("S1")
def test_served_model_matches_transformers(model_subject, served_endpoint, attach):
    card = model_subject.card
    in_process = {name: sections.find(name).observe(model_subject, results) for name in PARITY_SECTIONS}
    served = served_observations(served_endpoint, in_process)
    bounds = card.served.parity.model_dump()
    differences = parity_differences(in_process, served, bounds, provenance(model_subject))
    differences += repeat_differences(served_endpoint, in_process["greedy"], REPEATS, CONCURRENT)
    rows = [[Cell(d.where, code=True), d.severity, d.message] for d in differences] or [["-", "-", "no difference"]]
    attach.table(
        ["where", "severity", "served against transformers"],
        rows,
        caption=f"{card.name} at {served_endpoint.url}: cross-class rules, bounds {bounds}",
        summary="Served parity",
    )
    errors = [d for d in differences if d.severity == "error"]
    check_that(
        card,
        not errors,
        expected=f"the served model as transformers' (bounds {bounds})",
        obtained="; ".join(str(d) for d in errors),
    )
