"""The served engine's process: a server that exits or never gets healthy fails with its log
and leaves nothing running, one that dies mid-run is reported, and a session that --lm-probes-serve
started ends with its server, whatever ends it (split from test_served.py, issue 36)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lm_probes.paths import CARDS_DIR
from lm_probes.served.server import RunningServer, ServerFailed, group_alive
from lm_probes.subjects.subject import Subject


def _gone(pid: int) -> bool:
    return not group_alive(pid)


# a server that forks a worker (as vLLM does) and never answers /health
FORKS_AND_HANGS = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "time.sleep(60)\n"
)


def test_a_server_that_exits_or_never_gets_healthy_fails_with_its_log_and_leaves_nothing(tmp_path):
    exits = RunningServer(
        [sys.executable, "-c", "print('CUDA out of memory'); raise SystemExit(3)"], 0, tmp_path / "a.log"
    )
    with pytest.raises(ServerFailed, match=r"(?s)exited with code 3 before it was ready.*CUDA out of memory"):
        exits.start()
    # a child that forks a worker and never answers /health: both stopped at the deadline
    hangs = RunningServer(
        [
            sys.executable,
            "-c",
            FORKS_AND_HANGS,
        ],
        port=9,
        log=tmp_path / "b.log",
        health_timeout=2.0,
    )
    with pytest.raises(ServerFailed, match=r"not healthy at http://127.0.0.1:9/health after 2 s and was stopped"):
        hangs.start()
    assert _gone(hangs.process.pid), "a process of the server's group is still running"


def _health_only(path: Path, forks_worker: bool = False) -> Path:
    """A stand-in engine at ``path``: answers GET /health on the port it is given (and, with
    ``forks_worker``, first forks a worker that sleeps, as vLLM forks its engine)."""
    worker = "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n" if forks_worker else ""
    path.write_text(
        "import http.server, subprocess, sys\n"
        f"{worker}"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n",
        encoding="utf-8",
    )
    return path


def test_a_server_that_dies_mid_run_is_reported(tmp_path):
    script = _health_only(tmp_path / "health.py")
    from lm_probes.served.server import free_port

    port = free_port()
    with RunningServer([sys.executable, str(script), str(port)], port, tmp_path / "c.log") as server:
        server.check_alive()
        os.killpg(server.process.pid, 9)
        server.process.wait()
        with pytest.raises(ServerFailed, match="died during the session"):
            server.check_alive()
    assert _gone(server.process.pid)


def _served_card(tmp_path: Path) -> Path:
    """tiny-mistral with a served: section, as a card of the user's."""
    folder = tmp_path / "cards"
    folder.mkdir(exist_ok=True)
    text = (
        (CARDS_DIR / "tiny-mistral.yaml")
        .read_text(encoding="utf-8")
        .replace("name: tiny-mistral\n", "name: tiny-served\n", 1)
    )
    text += "\nserved:\n  engine: vllm\n  parity: {prob_atol: 1.0e-4, kl_max: 1.0e-6}\n  bare_request: sampled\n"
    (folder / "tiny-served.yaml").write_text(text, encoding="utf-8")
    return folder


def test_serve_ends_the_session_with_the_servers_message_when_it_cannot_start(run_suite, tmp_path, monkeypatch):
    """--lm-probes-serve with a card whose model has no folder, then with an engine that exits at
    start: each ends the session with one message (the second with its log's words)."""
    from lm_probes.served import server as served

    folder = _served_card(tmp_path)
    args = (
        "tests/behaviour/test_parity.py",
        "-m",
        "served",
        "--lm-probes-cards-dir",
        str(folder),
        "--lm-probes-card",
        "tiny-served",
    )
    no_folder = run_suite(*args, "--lm-probes-serve")  # a random-init model: nothing an engine could load
    assert no_folder.returncode == 4 and "an engine loads a folder or hub id" in no_folder.stdout + no_folder.stderr
    monkeypatch.setattr(Subject, "model_folder", lambda self: str(tmp_path))  # as if it had one
    monkeypatch.setattr(served, "build_vllm_environment", lambda rebuild=False: tmp_path)

    def exits_at_start(env, model, port, name, arguments=()):
        return [sys.executable, "-c", "print('no AVX2 on this CPU'); raise SystemExit(1)", "--port", str(port)]

    monkeypatch.setattr(served, "vllm_command", exits_at_start)
    run = run_suite(*args, "--lm-probes-serve")
    said = run.stdout + run.stderr
    assert run.returncode == 4, said[-2000:]
    assert (
        "lm-probes --lm-probes-serve (tiny-served): the server exited with code 1" in said
        and "no AVX2 on this CPU" in said
    )


# an engine that is healthy, then dies at its first real request, saying why in its log
DIES_AT_FIRST_REQUEST = (
    "import http.server, os, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    '        body = b\'{"data": [{"id": "m"}]}\'\n'
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def do_POST(self):\n"
    "        print('EngineCore died: worker 0 segfaulted', flush=True); os._exit(1)\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[-1])), H).serve_forever()\n"
)


def test_serve_ends_the_session_when_the_server_dies_mid_run_and_leaves_no_process(run_suite, tmp_path, monkeypatch):
    """--lm-probes-serve, an engine that answers /health and dies at the first request: the test that
    asked fails saying the server cannot be reached, the next one ends the session (exit 4)
    with the log's last lines, and no process of the server's group is left."""
    from lm_probes.served import server as served

    folder = _served_card(tmp_path)
    monkeypatch.setattr(Subject, "model_folder", lambda self: str(tmp_path))
    monkeypatch.setattr(served, "build_vllm_environment", lambda rebuild=False: tmp_path)
    script = tmp_path / "dies.py"
    script.write_text(DIES_AT_FIRST_REQUEST, encoding="utf-8")
    monkeypatch.setattr(
        served, "vllm_command", lambda env, model, port, name, arguments=(): [sys.executable, str(script), str(port)]
    )
    started: list[served.RunningServer] = []
    start = served.RunningServer.start

    def recorded_start(self):
        started.append(self)
        return start(self)

    monkeypatch.setattr(served.RunningServer, "start", recorded_start)
    run = run_suite(
        "tests/behaviour/test_parity.py",
        "-m",
        "served",
        "--lm-probes-cards-dir",
        str(folder),
        "--lm-probes-card",
        "tiny-served",
        "--lm-probes-serve",
    )
    said = run.stdout + run.stderr
    assert run.returncode == 4, said[-3000:]
    assert "died during the session" in said and "EngineCore died: worker 0 segfaulted" in said, said[-3000:]
    assert "cannot reach the server" in said, said[-3000:]
    assert len(started) == 1 and _gone(started[0].process.pid)


def test_a_session_ended_by_sigterm_stops_its_server(tmp_path):
    """A process that started a server (as --lm-probes-serve does) and is then sent SIGTERM (a CI
    timeout): the server and the worker it forked are stopped before the process ends."""
    import signal
    import subprocess

    from lm_probes.paths import REPO_ROOT

    script = tmp_path / "session.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from lm_probes.served.server import RunningServer, free_port, stop_at_exit\n"
        "port = free_port()\n"
        f"health = {str(tmp_path / 'health.py')!r}\n"
        "running = RunningServer([sys.executable, health, str(port)], port, Path(health + '.log'))\n"
        "stop_at_exit(running)\n"
        "running.start()\n"
        "print(running.process.pid, flush=True)\n"
        "time.sleep(60)\n",
        encoding="utf-8",
    )
    _health_only(tmp_path / "health.py", forks_worker=True)
    session = subprocess.Popen([sys.executable, str(script)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pgid = int(session.stdout.readline())
        assert group_alive(pgid)
        session.send_signal(signal.SIGTERM)
        assert session.wait(timeout=30) == -signal.SIGTERM  # it still ends as SIGTERM ends it
        assert _gone(pgid), "the server's group outlived the session"
    finally:
        session.kill()
        session.wait()
