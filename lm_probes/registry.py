"""Registries: the named things a plugin may add from outside the package.

Three kinds of thing are looked up by the name a card or a snapshot writes: a snapshot
section (lm_probes/section_specs.py, lm_probes/snapshots/sections.py), a model source
(``source:`` in a card; lm_probes/cards/sources.py) and a serving engine (``served.engine``;
lm_probes/served/engines.py). Each is a ``Registry``: the built-in entries are registered the
way a plugin registers its own, so nothing in the package is a closed list.

A plugin registers from any module Python imports before the names are used:
- the ``conftest.py`` at the root of your tests, or a ``-p`` plugin, for a pytest session
  (the cards are read when the session configures: a conftest further down loads too late);
- an installed package's entry point in the ``lm_probes`` group, loaded (``load_plugins``)
  when a card is read, when an ``lm-probes`` command starts (they run no conftest) and when a
  pytest session configures::

      [project.entry-points.lm_probes]
      my_sections = "my_package.lm_probes_plugin"

A registry tells whoever listens (the card schema) when it changes, and answers an unknown
name with "did you mean" and the names it knows, as lm-evaluation-harness's model registry
does (a card's unknown name gets the same hint). This is the bottom of the house: it imports
nothing of probes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

ENTRY_POINT_GROUP = "lm_probes"

T = TypeVar("T")


class UnknownName(LookupError):
    """A name no entry of a registry has; the message says which ones it has."""


class PluginLoadError(RuntimeError):
    """An installed ``lm_probes`` plugin failed to import; the message names it and why.
    (Not an ImportError: pydantic reads one raised while it evaluates an annotation as a name
    not defined yet, and would swallow it.)"""


class Registry(Generic[T]):
    """Entries by name, in the order they were registered. Reading one never imports
    anything: installed plugins are loaded at set points (``load_plugins``: reading a card,
    the ``lm-probes`` commands, a pytest session), not while a module is being imported."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "snapshot section", "model source", ...: what the messages call an entry
        self._entries: dict[str, T] = {}
        self._replaced: dict[str, list[T]] = {}  # what a replace=True registration set aside, to restore
        self._listeners: list[Callable[[], None]] = []

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add ``entry`` under ``name``. A name already taken is refused unless ``replace``:
        two plugins that pick one name would otherwise depend on import order. A replaced
        entry comes back when its replacement is unregistered."""
        self.ensure_free(name, replace)
        if name in self._entries:
            self._replaced.setdefault(name, []).append(self._entries[name])
        self._entries[name] = entry
        self._changed()
        return entry

    def ensure_free(self, name: str, replace: bool = False) -> None:
        """Refuse a taken ``name`` unless ``replace``: what ``register`` checks, for a caller
        that registers one thing in several registries and must add it to all or none."""
        if name in self._entries and not replace:
            raise ValueError(f"a {self.kind} named '{name}' is already registered; pass replace=True to replace it")

    def unregister(self, name: str, entry: T | None = None) -> None:
        """Remove the entry under ``name`` (only if it is ``entry``, when given), bringing back
        the one it replaced, if any (a plugin's teardown; a test's own entry)."""
        if name not in self._entries or (entry is not None and self._entries[name] is not entry):
            return
        previous = self._replaced.get(name)
        if previous:
            self._entries[name] = previous.pop()
        else:
            del self._entries[name]
        self._changed()

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownName(self.unknown(name))
        return self._entries[name]

    def find(self, name: str) -> T | None:
        """The entry, or None (e.g. a section only a newer version records)."""
        return self._entries.get(name)

    def unknown(self, name: str) -> str:
        """What to say of a name this registry does not have."""
        return f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)} (known: {', '.join(self._entries)})"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[T, ...]:
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self.entries())

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every change (the card schema rebuilds its choices)."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known name, or ""."""
    near = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean '{near[0]}'?" if near else ""


_plugins_loaded = False
_plugin_failure: PluginLoadError | None = None


def load_plugins() -> list[str]:
    """Import each installed package's ``lm_probes`` entry point, once per process; returns
    their names. A plugin that fails to import fails loudly, and again at every later call:
    its names would otherwise be "unknown" with no word of why."""
    global _plugins_loaded, _plugin_failure
    if _plugin_failure is not None:
        raise _plugin_failure
    if _plugins_loaded:
        return []
    _plugins_loaded = True  # first: a plugin's own registrations may read the registries
    loaded = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry_point.load()
            if callable(target) and not isinstance(target, type):
                target()  # an entry point may name a function that registers, not a module that does on import
        except Exception as exc:
            _plugin_failure = PluginLoadError(
                f"the lm_probes plugin '{entry_point.name}' ({entry_point.value}) failed to import: "
                f"{type(exc).__name__}: {exc}; fix or uninstall the package that provides it"
            )
            raise _plugin_failure from exc
        loaded.append(entry_point.name)
    return loaded


def reset_plugins() -> None:
    """Let the next call load the entry points again (a test that installs one)."""
    global _plugins_loaded, _plugin_failure
    _plugins_loaded, _plugin_failure = False, None
