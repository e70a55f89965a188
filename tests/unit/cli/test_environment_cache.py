"""Issue 35: cached environments are bounded by size, least recently used first, counting
each hard-linked file once (uv's environments share torch's files with uv's cache)."""

from __future__ import annotations

import os

import pytest

from lm_probes.cli import environment_cache
from lm_probes.cli import main as cli
from lm_probes.exit_codes import BAD_INPUT

MB = 1_000_000


def _environment(cache, name: str, used_at: float, own_mb: int = 0, linked=None):
    """A built stand-in environment: ``own_mb`` of its own, plus a hard link to ``linked``."""
    env = cache / "envs" / name
    (env / "lib").mkdir(parents=True)
    if own_mb:
        (env / "lib" / "own.bin").write_bytes(os.urandom(own_mb * MB))
    if linked is not None:
        os.link(linked, env / "lib" / "shared.bin")
    marker = env / environment_cache.READY
    marker.write_text("{}", encoding="utf-8")
    os.utime(marker, (used_at, used_at))
    return env


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LM_PROBES_CACHE", str(tmp_path))
    shared = tmp_path / "uv" / "torch.bin"  # uv's cache: the file every environment links
    shared.parent.mkdir(parents=True)
    shared.write_bytes(os.urandom(8 * MB))
    return tmp_path, shared


def test_the_least_recently_used_environments_go_first_and_hard_links_count_once(cache):
    root, shared = cache
    oldest = _environment(root, "a", 1_000, own_mb=2, linked=shared)
    middle = _environment(root, "b", 2_000, own_mb=2, linked=shared)
    newest = _environment(root, "c", 3_000, own_mb=2, linked=shared)
    # 8 MB shared once + 3 x 2 MB = 14 MB (counted per folder it would be 30 MB): a 12 MB
    # bound removes the oldest only, freeing its own 2 MB and not the shared file
    removed = environment_cache.bound(limit=12.5 * MB)
    assert removed == [oldest] and middle.is_dir() and newest.is_dir() and shared.is_file()
    assert environment_cache.footprint([middle, newest, shared.parent]).total < 12.5 * MB


def test_a_reuse_makes_an_environment_recent_and_the_one_in_use_is_kept(cache):
    root, shared = cache
    old = _environment(root, "a", 1_000, own_mb=2, linked=shared)
    new = _environment(root, "b", 2_000, own_mb=2, linked=shared)
    environment_cache.used(old)  # reused just now: b is the least recently used
    assert environment_cache.bound(limit=1 * MB, keep=old) == [new]
    assert old.is_dir()


def test_within_the_bound_nothing_is_removed_and_zero_turns_it_off(cache):
    root, shared = cache
    envs = [_environment(root, name, t, own_mb=1, linked=shared) for name, t in (("a", 1), ("b", 2))]
    assert environment_cache.bound(limit=100 * MB) == []
    assert environment_cache.bound(limit=0) == []
    assert all(env.is_dir() for env in envs)


def test_a_limit_that_is_not_a_number_is_bad_input_before_anything_is_built(cache, monkeypatch, capsys):
    monkeypatch.setenv("LM_PROBES_ENV_CACHE_GB", "twenty")
    assert cli.main(["run-with", "transformers==5.23.0"]) == BAD_INPUT
    assert "LM_PROBES_ENV_CACHE_GB='twenty' is not a number of gigabytes" in capsys.readouterr().err


def test_an_environment_used_within_the_hour_is_not_removed_and_the_excess_is_said(cache, capsys):
    """changelog records --jobs releases at once: another job's environment may be in use."""
    import time

    root, shared = cache
    busy = _environment(root, "a", time.time() - 60, own_mb=2, linked=shared)
    assert environment_cache.bound(limit=1 * MB) == [] and busy.is_dir()
    assert "nothing left to remove but environments used within the hour" in capsys.readouterr().out
