"""The plugin's part of pytest-html's report: its title, and the summary sections that
lm_probes/report/html.py renders from the session record (subjects, observations, snapshot
changes, benchmarks, what the tests attached)."""

from __future__ import annotations

from typing import Any

import pytest

from lm_probes.environment import TORCH_RUNTIME_KEYS, environment_info
from lm_probes.plugin.session import RECORD, is_xdist_controller


def add_environment_metadata(config: pytest.Config, runtime: dict[str, str] | None = None) -> None:
    """The report's environment table. The controller of a pytest-xdist run runs no test
    and loads no torch: its torch entries say so until a worker that finishes sends its
    own (``runtime``), which are what the tests ran with."""
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:  # pytest-html not installed: no report to fill
        return
    metadata = config.stash[metadata_key]  # pytest-html renders this same dict at the end
    for noisy in ("Plugins", "Packages", "JAVA_HOME"):
        metadata.pop(noisy, None)
    if runtime is None and is_xdist_controller(config):
        runtime = dict.fromkeys(TORCH_RUNTIME_KEYS, "(not reported by a worker)")
    # pytest-metadata already shows Python and Platform
    metadata.update({k: v for k, v in environment_info(runtime).items() if k not in ("python", "platform")})


def report_title(report: Any) -> None:
    report.title = "lm-probes: behavioural tests of language models"


def results_summary(prefix: list[str], session: pytest.Session) -> None:
    record = session.config.stash.get(RECORD, None)
    if record is None or not record.in_use:
        return  # another project's session: its report stays its own
    from lm_probes.report import html as report

    prefix.append(
        report.summary_html(
            subjects=record.subject_rows(),
            observations=record.outcomes,
            snapshots=record.snapshots,
            benchmarks=benchmark_table(record.benchmarks),
            fragments=record.fragments,
        )
    )


_RATES = ("tokens_per_s", "chars_per_s", "sequential_over_batched")


def benchmark_table(benchmarks: list[Any]) -> tuple[list[str], list[list[object]]] | None:
    """The latest pytest-benchmark figures, with the rates from extra_info: (headers, rows)."""
    rows = []
    for bench in benchmarks:
        if getattr(bench, "has_error", False) or not getattr(bench, "stats", None):
            continue
        data = bench.as_dict(include_data=False)
        stats, extra = data["stats"], data.get("extra_info", {})
        rate = "; ".join(f"{k.replace('_', ' ')} {extra[k]}" for k in _RATES if k in extra)
        memory = extra.get("peak_gpu_memory_mb", extra.get("peak_rss_mb", "-"))
        rows.append(
            [
                data["fullname"].split("::")[-1],
                f"{stats['mean'] * 1e3:.3f}",
                f"{stats['min'] * 1e3:.3f}",
                f"{stats['stddev'] * 1e3:.3f}",
                stats["rounds"],
                rate,
                memory,
                extra.get("torch_threads", "-"),
            ]
        )
    if not rows:
        return None
    headers = ["benchmark", "mean ms", "min ms", "stddev ms", "rounds", "rate", "peak MB (GPU, else RSS)", "threads"]
    return headers, rows
