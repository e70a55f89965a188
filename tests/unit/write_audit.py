"""The fuzzing's write audit (tests/unit/test_fuzz.py): every change to the file system this
process makes outside the folders a test named, seen through Python's audit hooks
(docs.python.org/3/library/audit_events.html)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# the audit events of a change to the file system (docs.python.org/3/library/audit_events.html)
_CHANGES = {
    "os.mkdir",
    "os.rename",  # also os.replace
    "os.remove",  # also os.unlink
    "os.rmdir",
    "os.truncate",
    "os.symlink",
    "os.link",
    "os.utime",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.move",
    "tempfile.mkstemp",
    "tempfile.mkdtemp",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_TORCH_CACHE = os.path.join(tempfile.gettempdir(), "torchinductor_")  # + the user's name


class WriteAudit:
    """The file-system changes this process makes outside ``allowed`` while watching."""

    def __init__(self) -> None:
        self.allowed: tuple[str, ...] | None = None  # None: not watching
        self.touched: list[str] = []  # "event path" of a path outside that existed before
        self.made: list[str] = []  # paths outside that did not
        self._local = threading.local()  # per thread: the sides are resolved in threads

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.allowed is None or getattr(self._local, "inside", False) or (event != "open" and event not in _CHANGES):
            return
        self._local.inside = True  # the checks below must not audit themselves
        try:
            if event == "open":
                path, mode, flags = args
                writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
                # a folder opened to write in is O_TMPFILE: an unnamed file, gone when closed
                # (tempfile.TemporaryFile, as pytest's capture uses)
                unnamed = isinstance(path, (str, bytes, os.PathLike)) and os.path.isdir(path)
                paths = [path] if writes and not unnamed else []
            else:
                paths = list(args[:2])
            for path in paths:
                if isinstance(path, (str, bytes, os.PathLike)):
                    self._note(event, os.path.abspath(os.fsdecode(path)))
        finally:
            self._local.inside = False

    def _note(self, event: str, path: str) -> None:
        # bytecode caches are the interpreter's, /dev/null and the like are no files, nor is
        # /proc (lm_probes/memory.py resets the process's peak RSS through /proc/self/clear_refs)
        # torch's compile cache folder (made by its first import of torch._inductor in a process)
        if "__pycache__" in path or path.startswith(("/dev/", "/proc/", _TORCH_CACHE)):
            return
        # a path made while watching (a scratch folder) is the door's own to change again
        if not _under(path, (*(self.allowed or ()), *self.made)):
            self.touched.append(f"{event} {path}") if os.path.lexists(path) else self.made.append(path)

    @contextlib.contextmanager
    def watching(self, *allowed: Path) -> Iterator[list[str]]:
        """Yields the list the changes outside ``allowed`` go in, filled on leaving: a path
        that existed and was written or removed, or one made and still there (a scratch
        folder made and removed again, as tempfile's, leaves nothing)."""
        found: list[str] = []
        self.allowed, self.touched, self.made = tuple(str(Path(p).resolve()) for p in allowed), [], []
        try:
            yield found
        finally:
            self.allowed = None
            found += self.touched
            found += [f"made {path}" for path in self.made if os.path.lexists(path)]


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in roots)
