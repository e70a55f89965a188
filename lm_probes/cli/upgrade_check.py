"""``lm-probes upgrade-check``: record the same cards in two environments (e.g. transformers 4 and
5), each a cached virtual environment built once, then compare the two sets (snapshots/sets.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lm_probes.cli import environments
from lm_probes.cli.diff import report_comparisons
from lm_probes.paths import REPO_ROOT
from lm_probes.report.diff import output_paths_problem
from lm_probes.snapshots import sets


def run_upgrade_check(args: argparse.Namespace) -> int:
    if not (REPO_ROOT / "pyproject.toml").is_file():
        print(
            "lm-probes upgrade-check: needs a source checkout of lm-probes (it installs it into each side's "
            f"environment); {REPO_ROOT} has no pyproject.toml. Use `lm-probes diff` on two recorded sets instead.",
            file=sys.stderr,
        )
        return sets.BAD_INPUT
    sides = (environments.Side("from", tuple(args.from_)), environments.Side("to", tuple(args.to)))
    torch_pin = environments.torch_pin()
    output = Path(args.output).resolve()  # the recording runs in the repository root
    html = Path(args.html or output / "report.html")
    # the report's paths checked before minutes of building and recording, not after them
    problem = output_paths_problem(html, args.json, args.summary)
    if problem:
        print(f"lm-probes upgrade-check: {problem}", file=sys.stderr)
        return sets.BAD_INPUT
    if args.dry_run:
        for side in sides:
            env = environments.environment_dir(side, torch_pin)
            environments.print_plan(side, torch_pin, environments.record_command(env, output / side.label, args.card))
        return sets.SAME
    started = time.monotonic()
    try:
        # both sides resolved (pip's dry run, seconds) before either is built (minutes)
        resolutions = environments.resolve_sides(sides, torch_pin, rebuild=args.rebuild)
        for side in sides:
            env = environments.prepare(side, torch_pin, rebuild=args.rebuild, resolution=resolutions.get(side.label))
            folder = output / side.label
            print(f"[{side.label}] recording the cards' observations into {folder}")
            environments.run(environments.record_command(env, folder, args.card), f"recording under {side.describe()}")
    except environments.SideFailed as exc:
        print(f"lm-probes upgrade-check: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        comparisons = sets.compare_sets(output / "from", output / "to", args.card or None)
    except sets.DiffInputError as exc:  # a side recorded nothing readable: say so, no traceback
        print(f"lm-probes upgrade-check: {exc}", file=sys.stderr)
        return sets.BAD_INPUT
    code = report_comparisons(
        comparisons, " ".join(args.from_), " ".join(args.to), html, args.json, ("upgrade-check", args.summary)
    )
    print(f"upgrade check took {time.monotonic() - started:.0f} s")
    return code
