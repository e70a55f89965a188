"""Registries: the named things a plugin may add from outside the package.

Three kinds of thing are looked up by the name a card or a snapshot writes: a snapshot
section (probes/section_specs.py, probes/snapshots/sections.py), a model source
(``source:`` in a card; probes/cards/sources.py) and a serving engine (``served.engine``;
probes/served/engines.py). Each is a ``Registry``: the built-in entries are registered the
way a plugin registers its own, so nothing in the package is a closed list.

A plugin registers from any module Python imports before the names are used:
- a ``conftest.py`` or a ``-p`` plugin, for a pytest session;
- an installed package's entry point in the ``lm_probes`` group, which every lookup loads
  first (also for the ``lm-probes`` commands, which run no conftest)::

      [project.entry-points.lm_probes]
      my_sections = "my_package.lm_probes_plugin"

A registry tells whoever listens (the card schema) when it changes, and answers an unknown
name with "did you mean" and the names it knows, as lm-evaluation-harness's model registry
does. This is the bottom of the house: it imports nothing of probes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, TypeVar

ENTRY_POINT_GROUP = "lm_probes"

T = TypeVar("T")


class UnknownName(LookupError):
    """A name no entry of a registry has; the message says which ones it has."""


class PluginLoadError(ImportError):
    """An installed ``lm_probes`` plugin failed to import; the message names it and why."""


class Registry(Generic[T]):
    """Entries by name, in the order they were registered."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "snapshot section", "model source", ...: what the messages call an entry
        self._entries: dict[str, T] = {}
        self._listeners: list[Callable[[], None]] = []

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add ``entry`` under ``name``. A name already taken is refused unless ``replace``:
        two plugins that pick one name would otherwise depend on import order."""
        if name in self._entries and not replace:
            raise ValueError(f"a {self.kind} named '{name}' is already registered; pass replace=True to replace it")
        self._entries[name] = entry
        self._changed()
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (a plugin's teardown; a test's own entry)."""
        self._entries.pop(name, None)
        self._changed()

    def get(self, name: str) -> T:
        load_plugins()
        if name not in self._entries:
            raise UnknownName(self.unknown(name))
        return self._entries[name]

    def find(self, name: str) -> T | None:
        """The entry, or None (e.g. a section only a newer version records)."""
        load_plugins()
        return self._entries.get(name)

    def unknown(self, name: str) -> str:
        """What to say of a name this registry does not have."""
        near = difflib.get_close_matches(name, list(self._entries), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        return f"unknown {self.kind} '{name}'{hint} (known: {', '.join(self._entries)})"

    def names(self) -> tuple[str, ...]:
        load_plugins()
        return tuple(self._entries)

    def entries(self) -> tuple[T, ...]:
        load_plugins()
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self.entries())

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every change (the card schema rebuilds its choices)."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()


_plugins_loaded = False


def load_plugins() -> list[str]:
    """Import each installed package's ``lm_probes`` entry point, once per process; returns
    their names. A plugin that fails to import fails loudly: its names would otherwise be
    "unknown" with no word of why."""
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True  # first: a plugin's own registrations look names up too
    loaded = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry_point.load()
        except Exception as exc:
            raise PluginLoadError(
                f"the lm_probes plugin '{entry_point.name}' ({entry_point.value}) failed to import: "
                f"{type(exc).__name__}: {exc}; fix or uninstall the package that provides it"
            ) from exc
        if callable(target) and not isinstance(target, type):
            target()  # an entry point may name a function that registers, instead of a module that does on import
        loaded.append(entry_point.name)
    return loaded


def reset_plugins() -> None:
    """Let the next lookup load the entry points again (a test that installs one)."""
    global _plugins_loaded
    _plugins_loaded = False
