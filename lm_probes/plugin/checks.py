"""The session's outputs and server, checked once at configure time, before any card is read or
model loaded: the snapshot folder, the HTML report's folder, --lm-probes-model with --lm-probes-snapshot-update, and
--lm-probes-endpoint's form and answer. Each problem is one pytest.UsageError sentence (exit 4), where it
would otherwise be a traceback or a failing test after minutes of work. Nothing here writes:
pytest-html creates the report's folder itself, a snapshot its own on --lm-probes-snapshot-update."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# --lm-probes-endpoint: how long the check waits for an answer (a server that takes longer to say
# anything would time every served test out too)
ENDPOINT_ANSWER_TIMEOUT_S = 3.0


def check_session_options(config: pytest.Config) -> None:
    """Every check below, for the options this session was given."""
    from lm_probes.plugin.options import options_of

    options = options_of(config)
    if options.snapshot_dir_given or options.snapshot_update:
        check_snapshot_dir(options.snapshot_dir_given, options.snapshot_dir, options.snapshot_update)
    if options.model and options.snapshot_update:
        check_model_snapshot_update(options.model, options.snapshot_dir)
    html_path = config.getoption("htmlpath", None)
    if html_path:
        check_html_path(html_path)
    if options.summary:
        check_summary_path(options.summary)
    if options.endpoint:
        check_endpoint(options.endpoint)


def _unwritable(path: Path) -> str | None:
    """Why ``path`` (a folder, made if absent) cannot be written, or None."""
    from lm_probes.paths import write_blocker

    blocker = write_blocker(path)
    if blocker is None:
        return None
    existing, kind = blocker
    return (
        f"{existing} is a file, so no folder can be made there" if kind == "file" else f"{existing} is read-only here"
    )


def check_snapshot_dir(given: str | None, folder: Path, update: bool) -> None:
    """``folder`` is the resolved snapshot folder (``given`` as typed, ``~`` expanded, or the default)."""
    option = f"--lm-probes-snapshot-dir {given}" if given else f"the snapshot folder {folder}"
    if folder.exists() and not folder.is_dir():
        raise pytest.UsageError(f"{option}: is a file, not a folder. Give a folder of snapshots (or a new one).")
    problem = _unwritable(folder) if update else None
    if problem:
        raise pytest.UsageError(
            f"{option}: --lm-probes-snapshot-update cannot write there ({problem}). Give a folder you can write with "
            "--lm-probes-snapshot-dir DIR."
        )


def check_model_snapshot_update(model: str, folder: Path) -> None:
    """--lm-probes-model loads another build under the card's expectations; its observations recorded
    into the shipped snapshot folder would replace the card's baseline, and the next plain run of the
    card would fail against them. (In a folder of the user's, the recording itself refuses to replace
    a baseline of another model: lm_probes/snapshots/record.py.)"""
    from lm_probes.paths import SNAPSHOT_DIR

    if folder.resolve() != SNAPSHOT_DIR.resolve():
        return
    raise pytest.UsageError(
        f"--lm-probes-model {model} with --lm-probes-snapshot-update would overwrite the card's own snapshot "
        f"({SNAPSHOT_DIR}) with "
        "another model's observations. Pass --lm-probes-snapshot-dir DIR, a folder of its own, to record that model's."
    )


def check_html_path(given: str) -> None:
    # as pytest-html reads it: relative to the current folder, ~ and $VAR expanded
    path = Path.cwd() / Path(os.path.expandvars(given)).expanduser()
    _check_output_file(f"--html {given}", path, f"{given}/report.html", "the report")


def check_summary_path(path: Path) -> None:
    """--lm-probes-summary: a file whose folder can be made and written (checked before any work)."""
    _check_output_file(f"--lm-probes-summary {path}", path, f"{path}/summary.md", "the summary")


def _check_output_file(option: str, path: Path, example: str, what: str) -> None:
    """A file an option names: not a folder, its folder creatable and writable, itself writable."""
    if path.is_dir():
        raise pytest.UsageError(f"{option}: is a folder. Give {what}'s file name, e.g. {example}.")
    problem = _unwritable(path.parent)
    if problem is None and path.exists() and not os.access(path, os.W_OK):
        problem = f"{path} is read-only here"
    if problem:
        raise pytest.UsageError(f"{option}: {what} cannot be written ({problem}). Give another path.")


def endpoint_form_problem(url: str) -> str | None:
    """Why ``url`` is not a server's address (http or https, a host, an optional port), or None."""
    import urllib.parse  # (here: the checks run in every session, an endpoint in few)

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "give an http:// or https:// address, e.g. http://127.0.0.1:8000"
    try:
        port = parts.port  # raises ValueError for one that is not a number from 0 to 65535
    except ValueError:
        port = 0
    if port == 0 and parts.netloc.rpartition("@")[2].rpartition("]")[2].count(":"):
        return "its port is not a number from 1 to 65535"
    if not parts.hostname:
        return "it names no host; give e.g. http://127.0.0.1:8000"
    if parts.query or parts.fragment:
        return "give the server's address alone, without ?query or #fragment"
    return None


def check_endpoint(url: str) -> None:
    """The form, then that something answers at ``url`` within ENDPOINT_ANSWER_TIMEOUT_S: any
    HTTP answer will do (the served tests say what is wrong with one); silence is refused
    here, once, instead of failing every served test after its request times out."""
    import urllib.error
    import urllib.request

    problem = endpoint_form_problem(url)
    if problem:
        raise pytest.UsageError(f"--lm-probes-endpoint {url}: {problem}.")
    models = url.rstrip("/") + "/v1/models"
    try:
        with urllib.request.urlopen(models, timeout=ENDPOINT_ANSWER_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise pytest.UsageError(
            f"--lm-probes-endpoint {url}: nothing answered {models} within {ENDPOINT_ANSWER_TIMEOUT_S:g} s "
            f"({reason}). Start "
            "the server (or check its host and port), or use --lm-probes-serve."
        ) from None
