"""Shared by the snapshot tests (test_snapshot_*.py): a small recorded observation set laid out as
``observe`` lays it, edits of it, and comparisons of it."""

from __future__ import annotations

import json

from lm_probes.snapshots.compare import compare
from lm_probes.snapshots.record import observe, provenance


def errors(diffs):
    return [d for d in diffs if d.severity == "error"]


def compare_with(subject, recorded, recorded_prov=None):
    return compare(
        recorded,
        observe(subject),
        subject=subject,
        recorded_provenance=recorded_prov or {},
        current_provenance=provenance(subject),
    )


def observed() -> dict:
    """A small recorded observation set, as ``observe`` lays it out."""
    return {
        "tokenizer": {"vocab_size": 100, "bos_token_id": 1, "ids": {"hi": {"special": [1, 5, 6], "plain": [5, 6]}}},
        "next_token": {"prompt": "p", "prompt_ids": [1, 5], "top_ids": [7, 8, 9], "top_probs": [0.5, 0.3, 0.1]},
        "temperature": {"entropy": {"0.4": 1.0, "1.0": 2.0}},
        "greedy": {"bos": {"prompt_ids": [1, 5], "ids": [7, 3, 4], "text": "a b c", "margins": [1.0, 1.0, 1.0]}},
        "embedding": {
            "words": ["x", "y"],
            "sub_ids": {"x": [10], "y": [11, 12]},
            "row_norms": {"x": [1.0], "y": [2.0, 3.0]},
            "cosine": [[1.0, 0.5], [0.5, 1.0]],
        },
        "sampled": {"seed": 0, "hot": {"ids": [[1, 2], [3, 4]], "texts": ["u", "v"]}},
    }


def changed(path: str, value) -> dict:
    current = observed()
    *parents, last = path.split("/")
    node = current
    for key in parents:
        node = node[key]
    node[last] = value
    return current


def diffs_of(current, recorded=None, tolerances=None, rec_prov=None, cur_prov=None) -> list[str]:
    return [
        str(d)
        for d in compare(
            recorded or observed(),
            current,
            tolerances=tolerances or {},
            recorded_provenance=rec_prov,
            current_provenance=cur_prov,
        )
    ]


# ------------------------------------------------------------ the snapshot fuzzing's oracles (tests/unit/test_fuzz.py)


def known_break(snapshot: dict) -> dict:
    """The snapshot with every recorded token id list of its tokenizer section shifted by one: a
    tokenizer that changed every id, which any usable baseline of the card catches."""
    broken = json.loads(json.dumps(snapshot))
    for case in broken["observed"]["tokenizer"]["ids"].values():
        for kind, ids in case.items():
            case[kind] = [i + 1 for i in ids]
    return broken


def names_another_card(raw: bytes, card: str) -> bool:
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except ValueError:  # (UnicodeDecodeError is one) not readable: refused for that
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("card"), str) and parsed["card"] != card
