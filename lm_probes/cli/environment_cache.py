"""The cached environments' size bound: least recently used ones go first.

Environments built by uv share most of their files with uv's cache through hard links, so a
folder's own size says little: the bound counts every file once, by inode, across all the
environments and uv's cache, and removing an environment frees only the files no other
environment or the cache still links. The limit is ``LM_PROBES_ENV_CACHE_GB`` (20 GB unless
set; 0 turns the bound off). "Used" is a build or a reuse by any command: the ready marker's
modification time. One used within the last hour is never removed (a run, in this process or
another, may be recording in it), so the bound can be exceeded for that long, and says so."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lm_probes.cards.files import cache_dir

DEFAULT_LIMIT_GB = 20.0
READY = ".lm-probes-ready"  # environments.py writes it last into a built environment
IN_USE_SECONDS = 3600  # an environment used this recently is never removed: a recording may be running in it


def limit_bytes() -> float:
    """The bound, from ``LM_PROBES_ENV_CACHE_GB``; ValueError (one sentence) if it is not a number."""
    given = os.environ.get("LM_PROBES_ENV_CACHE_GB", "").strip()
    try:
        gigabytes = float(given) if given else DEFAULT_LIMIT_GB
    except ValueError:
        raise ValueError(
            f"LM_PROBES_ENV_CACHE_GB={given!r} is not a number of gigabytes (e.g. 20, or 0 for no bound)"
        ) from None
    return gigabytes * 1e9


def used(env: Path) -> None:
    """Mark an environment as used now (its ready marker's time)."""
    marker = env / READY
    if marker.is_file():
        os.utime(marker)


@dataclass(frozen=True)
class Footprint:
    """Every file under the cache's roots once: its size on disk and which roots link it."""

    sizes: dict[tuple[int, int], int]
    owners: dict[tuple[int, int], set[Path]]

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def without(self, root: Path) -> int:
        """The bytes freed by removing ``root``: the files nothing else links."""
        return sum(self.sizes[inode] for inode, roots in self.owners.items() if roots == {root})

    def remove(self, root: Path) -> None:
        for inode in [inode for inode, roots in self.owners.items() if root in roots]:
            self.owners[inode].discard(root)
            if not self.owners[inode]:
                del self.owners[inode], self.sizes[inode]


def footprint(roots: Iterable[Path]) -> Footprint:
    sizes: dict[tuple[int, int], int] = {}
    owners: dict[tuple[int, int], set[Path]] = {}
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                try:
                    stat = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                inode = (stat.st_dev, stat.st_ino)
                sizes[inode] = stat.st_blocks * 512
                owners.setdefault(inode, set()).add(root)
    return Footprint(sizes, owners)


def last_used(env: Path) -> float | None:
    """When the environment was last used; None once it is gone (another build's bound, in
    this process or another, may remove it at any moment)."""
    try:
        return (env / READY).stat().st_mtime
    except OSError:
        return None


def environments() -> list[Path]:
    """The built environments, least recently used first (half-built ones are left alone:
    the next build of that side removes them)."""
    folder = cache_dir() / "envs"
    used_at = {env: last_used(env) for env in (folder.iterdir() if folder.is_dir() else [])}
    return sorted((env for env, at in used_at.items() if at is not None), key=used_at.__getitem__)


def bound(keep: Path | None = None, limit: float | None = None) -> list[Path]:
    """Remove least recently used environments (never ``keep``) until the cache, uv's
    included, is within the limit; the removed ones, each said in one line."""
    limit = limit_bytes() if limit is None else limit
    if limit <= 0:
        return []
    with _BOUNDING:  # changelog builds --jobs environments at once: one bound at a time
        return _bound(keep, limit)


_BOUNDING = threading.Lock()


def _bound(keep: Path | None, limit: float) -> list[Path]:
    envs = environments()
    uv_cache = cache_dir() / "uv"
    found = footprint([*envs, *([uv_cache] if uv_cache.is_dir() else [])])
    removed = []
    for env in envs:
        if found.total <= limit:
            break
        if keep is not None and env.resolve() == keep.resolve():
            continue
        at = last_used(env)
        if at is None:  # removed meanwhile by another process
            found.remove(env)
            continue
        if time.time() - at < IN_USE_SECONDS:  # built or reused within the hour: a run may be in it now
            continue
        freed = found.without(env)
        idle_days = (time.time() - at) / 86400
        shutil.rmtree(env, ignore_errors=True)
        found.remove(env)
        removed.append(env)
        print(
            f"removed the cached environment {env.name} (unused for {idle_days:.1f} days, {freed / 1e9:.2f} GB) "
            f"to keep the cache within LM_PROBES_ENV_CACHE_GB={limit / 1e9:g}"
        )
    if found.total > limit:
        print(
            f"the environments' cache holds {found.total / 1e9:.1f} GB, over LM_PROBES_ENV_CACHE_GB={limit / 1e9:g}, "
            "with nothing left to remove but environments used within the hour and uv's cache"
        )
    return removed
