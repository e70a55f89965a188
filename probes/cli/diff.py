"""``lm-probes diff``: two recorded observation sets compared (snapshots/sets.py), as a page,
lines for the terminal and JSON, with the exit code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probes.report.diff import output_paths_problem, report_comparisons
from probes.snapshots import sets as diff


def run_diff(args: argparse.Namespace) -> int:
    a, b = Path(args.a), Path(args.b)
    # the report's paths first: a page that cannot be written is known before anything is read
    problem = output_paths_problem(args.html, args.json)
    if problem:
        print(f"lm-probes diff: {problem}", file=sys.stderr)
        return diff.BAD_INPUT
    try:
        comparisons = diff.compare_sets(a, b, args.card or None)
    except diff.DiffInputError as exc:
        print(f"lm-probes diff: {exc}", file=sys.stderr)
        return diff.BAD_INPUT
    return report_comparisons(comparisons, args.label_a or str(a), args.label_b or str(b), Path(args.html), args.json)
