"""Run a function over cases, in spawned worker processes when asked: the one pool behind
``medseg evaluate`` and ``medseg measure``."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from tqdm import tqdm

from medseg.data.parallel import exit_with_parent, map_cases
from medseg.device import available_cpus
from medseg.errors import ConfigError

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count(jobs: int | None, n_cases: int) -> int:
    """Worker processes for ``n_cases``: ``jobs`` (default the CPU count), at most one per case.

    Raises:
        ConfigError: ``jobs < 1``.
    """
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    return max(1, min(jobs or available_cpus(), n_cases))


def run_cases(
    worker: Callable[[Item], Result],
    items: Sequence[Item],
    *,
    jobs: int,
    desc: str,
    show_progress: bool = False,
    executor: str = "local",
    address: str | None = None,
) -> list[Result]:
    """``[worker(item) for item in items]``, in ``jobs`` spawned worker processes when > 1.

    ``executor="ray"`` (and a Ray ``address``) runs each item as a Ray task instead
    (``medseg.data.parallel.map_cases``), with the same results.

    The first error of any worker is raised at once (pending items are cancelled); workers
    exit when this process dies. ``worker`` must be picklable (a module-level function or a
    ``functools.partial`` of one).

    Returns:
        The results in the order of ``items``.
    """
    if executor != "local" or address is not None:
        return map_cases(
            worker, items, desc=desc, progress=show_progress, executor=executor, address=address
        )
    # disable=None: draw the bar only when stderr is a terminal, so logs and pipes stay clean
    bar = tqdm(total=len(items), desc=desc, unit="case", disable=None if show_progress else True)
    with bar:
        if jobs == 1:
            results = []
            for item in items:
                results.append(worker(item))
                bar.update()
            return results
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=context,
            initializer=exit_with_parent,  # no orphaned worker after a kill -9
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(worker, item) for item in items]
            try:
                for future in as_completed(futures):
                    future.result()  # re-raise the first error at once
                    bar.update()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
            return [future.result() for future in futures]
