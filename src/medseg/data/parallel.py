"""Run a per-case function over many cases on every core, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm.auto import tqdm

from medseg.device import available_cpus

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """Worker count: the CPUs this process may use."""
    return available_cpus()


def map_cases(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    jobs: int | None = None,
    desc: str = "cases",
    progress: bool = True,
) -> list[R]:
    """``[fn(item) for item in items]`` in worker processes, in order, with a progress bar.

    ``fn`` must be picklable (a module-level function or ``functools.partial``). With
    ``jobs=1`` (or a single item) it runs in this process, which keeps tracebacks simple.
    """
    jobs = default_jobs() if jobs is None else max(1, jobs)
    bar_kwargs: dict[str, Any] = {"total": len(items), "desc": desc, "disable": not progress, "leave": False}
    if jobs == 1 or len(items) <= 1:
        return [fn(item) for item in tqdm(items, **bar_kwargs)]
    chunk = max(1, len(items) // (jobs * 8))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(tqdm(pool.map(fn, items, chunksize=chunk), **bar_kwargs))
