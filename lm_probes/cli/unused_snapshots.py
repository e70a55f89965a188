"""``lm-probes unused-snapshots [--snapshot-dir DIR] [--cards-dir DIR ...] [--delete]``: the
recorded snapshots nothing reads any more (snapshots/unused.py), one line each. Exit 0: none;
1: some found (with ``--delete``: the whole unused files removed, and exit 0 when nothing
else is left); 4: a folder that does not exist."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lm_probes.cards.card import CardError, available_cards, load_card
from lm_probes.exit_codes import BAD_INPUT
from lm_probes.paths import SNAPSHOT_DIR
from lm_probes.snapshots.unused import unused_snapshots


def run_unused_snapshots(args: argparse.Namespace) -> int:
    folder = Path(args.snapshot_dir or SNAPSHOT_DIR)
    if not folder.is_dir():
        print(f"lm-probes unused-snapshots: {folder} is not a folder of snapshots", file=sys.stderr)
        return BAD_INPUT
    try:
        cards = available_cards(args.cards_dir)
    except CardError as exc:
        print(f"lm-probes unused-snapshots: {exc}", file=sys.stderr)
        return BAD_INPUT

    def left_out_of(card: str) -> tuple[str, ...] | None:
        if card not in cards:
            return None
        return tuple(load_card(cards[card]).snapshot.leave_out)

    found = unused_snapshots(folder, left_out_of)
    for unused in found:
        print(unused.line())
    if args.delete:
        for unused in (u for u in found if u.whole_file):
            unused.path.unlink()
            print(f"removed {unused.path}")
        found = [u for u in found if not u.whole_file]
    print(f"{len(found)} unused in {folder}" if found else f"nothing unused in {folder}")
    return 1 if found else 0
