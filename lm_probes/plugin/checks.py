"""The session's outputs and server, checked once at configure time, before any card is read or
model loaded: the snapshot folder, the HTML report's folder, --model with --snapshot-update, and
--endpoint's form and answer. Each problem is one pytest.UsageError sentence (exit 4), where it
would otherwise be a traceback or a failing test after minutes of work. Nothing here writes:
pytest-html creates the report's folder itself, a snapshot its own on --snapshot-update."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

# --endpoint: how long the check waits for an answer (a server that takes longer to say
# anything would time every served test out too)
ENDPOINT_ANSWER_TIMEOUT_S = 3.0


def check_session_options(config: pytest.Config) -> None:
    """Every check below, for the options this session was given."""
    snapshot_dir = config.getoption("snapshot_dir")
    update = config.getoption("snapshot_update")
    if snapshot_dir or update:
        check_snapshot_dir(snapshot_dir, update)
    if config.getoption("model") and update:
        check_model_snapshot_update(config.getoption("model"), snapshot_dir)
    html_path = config.getoption("htmlpath", None)
    if html_path:
        check_html_path(html_path)
    endpoint = config.getoption("endpoint")
    if endpoint:
        check_endpoint(endpoint)


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


def check_snapshot_dir(given: str | None, update: bool) -> None:
    from lm_probes.paths import SNAPSHOT_DIR

    folder = Path(given).expanduser() if given else SNAPSHOT_DIR
    option = f"--snapshot-dir {given}" if given else f"the snapshot folder {folder}"
    if folder.exists() and not folder.is_dir():
        raise pytest.UsageError(f"{option}: is a file, not a folder. Give a folder of snapshots (or a new one).")
    problem = _unwritable(folder) if update else None
    if problem:
        raise pytest.UsageError(
            f"{option}: --snapshot-update cannot write there ({problem}). Give a folder you can write with "
            "--snapshot-dir DIR."
        )


def check_model_snapshot_update(model: str, given: str | None) -> None:
    """--model loads another build under the card's expectations; its observations recorded into
    the card's own snapshot folder would replace the card's baseline, and the next plain run of
    the card would fail against them."""
    from lm_probes.paths import SNAPSHOT_DIR

    if given and Path(given).expanduser().resolve() != SNAPSHOT_DIR.resolve():
        return
    raise pytest.UsageError(
        f"--model {model} with --snapshot-update would overwrite the card's own snapshot ({SNAPSHOT_DIR}) with "
        "another model's observations. Pass --snapshot-dir DIR, a folder of its own, to record that model's."
    )


def check_html_path(given: str) -> None:
    # as pytest-html reads it: relative to the current folder, ~ and $VAR expanded
    path = Path.cwd() / Path(os.path.expandvars(given)).expanduser()
    if path.is_dir():
        raise pytest.UsageError(f"--html {given}: is a folder. Give the report's file name, e.g. {given}/report.html.")
    problem = _unwritable(path.parent)
    if problem is None and path.exists() and not os.access(path, os.W_OK):
        problem = f"{path} is read-only here"
    if problem:
        raise pytest.UsageError(f"--html {given}: the report cannot be written ({problem}). Give another path.")


def endpoint_form_problem(url: str) -> str | None:
    """Why ``url`` is not a server's address (http or https, a host, an optional port), or None."""
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
    problem = endpoint_form_problem(url)
    if problem:
        raise pytest.UsageError(f"--endpoint {url}: {problem}.")
    models = url.rstrip("/") + "/v1/models"
    try:
        with urllib.request.urlopen(models, timeout=ENDPOINT_ANSWER_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise pytest.UsageError(
            f"--endpoint {url}: nothing answered {models} within {ENDPOINT_ANSWER_TIMEOUT_S:g} s ({reason}). Start "
            "the server (or check its host and port), or use --serve."
        ) from None
