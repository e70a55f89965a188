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
    # the peak: psutil has none on Linux, getrusage does (ru_maxrss: KiB on Linux, bytes on macOS)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info["peak_rss_mb"] = round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)
    return info


def reset_peak(device_type: str) -> None:
    if device_type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def current_rss_mb() -> float:
    """This process's resident memory now, in MiB (psutil: Linux, macOS, Windows)."""
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)
