"""Timing helpers shared by the benchmark scripts (imported from beside them)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(function: Callable[[], object], repeats: int) -> float:
    """The smallest wall time of ``repeats`` calls, in seconds (the run least disturbed by
    other processes on a shared machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
