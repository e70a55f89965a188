"""Serving engines: what ``--lm-probes-serve`` starts for a card's ``served.engine``.

An engine is how its environment is built (once, cached) and the command that serves a
model folder on a port with the card's arguments; lm_probes/served/server.py runs that command
(health deadline, process group, log). vLLM is the built-in engine. A plugin adds another
from outside the package with ``register`` (a conftest, a ``-p`` plugin or an ``lm_probes``
entry point; lm_probes/registry.py); its name becomes a value ``served.engine`` may take, and
the parity tests (tests/behaviour/test_parity.py) run against it through its
OpenAI-compatible endpoint as they do against vLLM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lm_probes.cards.schema import ENGINE_NAMES
from lm_probes.registry import Registry
from lm_probes.served import server


@dataclass(frozen=True)
class Engine:
    name: str  # what a card's served.engine says
    description: str  # what the card schema and its reference say of it
    environment: Callable[[], Path]  # builds the engine's environment once and returns its folder
    # (environment, model folder or hub id, port, the name to serve it under, the card's served.args) -> argv
    command: Callable[[Path, str, int, str, Sequence[str]], list[str]]
    health_timeout: float = server.HEALTH_TIMEOUT_S


REGISTRY: Registry[Engine] = Registry("serving engine")


def register(engine: Engine, *, replace: bool = False) -> Engine:
    """Add an engine: cards may then name it under ``served.engine`` and --lm-probes-serve starts it."""
    for registry in (ENGINE_NAMES, REGISTRY):  # the name and the engine, or neither
        registry.ensure_free(engine.name, replace)
    ENGINE_NAMES.register(engine.name, engine.description, replace=replace)
    return REGISTRY.register(engine.name, engine, replace=replace)


def unregister(name: str) -> None:
    REGISTRY.unregister(name)
    ENGINE_NAMES.unregister(name)


def start_server(engine_name: str, model: str, served_name: str, arguments: Sequence[str], log: Path):
    """The card's engine serving ``model`` on a free port of 127.0.0.1, healthy, and stopped
    when the process ends (also when the session is interrupted or terminated). Raises
    ServerFailed with the log's tail when it cannot be built or does not come up."""
    engine = REGISTRY.get(engine_name)
    environment = engine.environment()
    port = server.free_port()
    running = server.RunningServer(
        engine.command(environment, model, port, served_name, arguments),
        port=port,
        log=log,
        health_timeout=engine.health_timeout,
    )
    server.stop_at_exit(running)
    return running.start()  # a server that fails is stopped by start() itself


# vLLM's functions are looked up when called, not bound here, so that a test may replace
# them on lm_probes.served.server as it replaces any other part of the server's module
REGISTRY.register(
    "vllm",
    Engine(
        "vllm",
        ENGINE_NAMES.get("vllm"),
        environment=lambda: server.build_vllm_environment(),
        command=lambda env, model, port, name, arguments: server.vllm_command(env, model, port, name, arguments),
    ),
)
