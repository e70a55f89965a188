"""What a benchmark records besides its time: memory and threads, and a clock that
waits for the GPU. (pytest-benchmark does the timing and statistics.)"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from typing import Any


def synchronized(fn: Callable[[], Any], device_type: str) -> Callable[[], Any]:
    """``fn`` followed by a CUDA synchronize, so the clock stops when the GPU is done."""
    if device_type != "cuda":
        return fn
    import torch

    def run() -> Any:
        result = fn()
        torch.cuda.synchronize()
        return result

    return run


def resource_info(device_type: str) -> dict[str, Any]:
    """Peak memory and threads, for a benchmark's extra_info."""
    import torch

    info: dict[str, Any] = {"device": device_type, "torch_threads": torch.get_num_threads()}
    if device_type == "cuda":
        info["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info["peak_rss_mb"] = round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)
    return info


def reset_peak(device_type: str) -> None:
    if device_type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def current_rss_mb() -> float | None:
    """This process's resident memory now (Linux /proc), or None elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
