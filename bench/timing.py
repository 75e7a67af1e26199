"""Wall-clock timing for the benchmarks: device-synchronised, alternating, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (CUDA launches return before the work is done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn`` takes, including the device work it queued."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def median_times(
    fns: dict[str, Callable[[], object]], reps: int, device: torch.device, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each function; every rep visits all of them, the order reversing.

    Alternating keeps slow drifts (clocks, other work on the machine) from favouring one
    contender; ``warmup`` untimed rounds absorb compilation, autotuning and allocator growth.
    """
    order = list(fns)
    for _ in range(warmup):
        for name in order:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(reps):
        for name in order:
            times[name].append(timed(fns[name], device))
        order.reverse()
    return {name: statistics.median(t) for name, t in times.items()}
