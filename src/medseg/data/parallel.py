"""Run a per-case function over many cases on every core, with a progress bar.

``map_cases``/``imap_cases`` take ``executor="local"`` (this module's process pool, the
default) or ``"ray"`` (Ray Core tasks, ``medseg.data.executor``); the results are the same
whichever runs them.

Worker processes end with their parent: ``exit_with_parent`` (the pools' initializer) makes
the kernel kill a worker when the process that started it dies, even by ``kill -9``, so no
orphaned worker keeps running (and holding memory, files or a GPU) after an interrupted run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm.auto import tqdm

from medseg.device import available_cpus
from medseg.errors import MedsegError

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
    executor: str = "local",
    address: str | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` in worker processes, in order, with a progress bar.

    ``fn`` must be picklable (a module-level function or ``functools.partial``). With
    ``jobs=1`` (or a single item) it runs in this process, which keeps tracebacks simple.
    Workers exit when this process dies (``exit_with_parent``). ``executor="ray"`` (with an
    optional Ray ``address``) runs each item as a Ray task instead (``imap_cases``).
    """
    if executor != "local" or address is not None:
        return list(
            imap_cases(
                fn,
                items,
                jobs=jobs,
                desc=desc,
                progress=progress,
                executor=executor,
                address=address,
            )
        )
    jobs = default_jobs() if jobs is None else max(1, jobs)
    bar_kwargs: dict[str, Any] = {
        "total": len(items),
        "desc": desc,
        "disable": not progress,
        "leave": False,
    }
    if jobs == 1 or len(items) <= 1:
        return [fn(item) for item in tqdm(items, **bar_kwargs)]
    chunk = max(1, len(items) // (jobs * 8))
    with ProcessPoolExecutor(
        max_workers=jobs, initializer=exit_with_parent, initargs=(os.getpid(),)
    ) as pool:
        return list(tqdm(pool.map(fn, items, chunksize=chunk), **bar_kwargs))


def imap_cases(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    jobs: int | None = None,
    desc: str = "cases",
    progress: bool = True,
    executor: str = "local",
    address: str | None = None,
    max_in_flight: int | None = None,
) -> Iterator[R]:
    """``fn(item)`` for each item, yielded in order as they come, with at most
    ``max_in_flight`` (default 2 x workers) results held: merge them as they arrive to keep
    memory flat. The first failure raises (its own exception when it could travel back, else
    ``MedsegError``); with ``executor="ray"`` a failed item is first tried once more (a worker
    killed mid-item included)."""
    from medseg.data.executor import run_cases

    for outcome in run_cases(
        fn,
        items,
        executor=executor,
        address=address,
        jobs=jobs,
        retries=1 if executor == "ray" else 0,
        max_in_flight=max_in_flight,
        desc=desc,
        progress=progress,
    ):
        if not outcome.ok:
            if outcome.exception is not None:
                raise outcome.exception
            raise MedsegError(f"{desc}: item {outcome.index} failed: {outcome.error}")
        yield outcome.value  # type: ignore[misc]


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_INTERVAL_S = 1.0


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this process when ``parent_pid`` (the pool's owner) dies.

    On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill the worker the moment
    its parent dies; elsewhere a daemon thread checks every ``WATCH_INTERVAL_S`` seconds and
    exits the worker once the parent is gone. Use it as
    ``ProcessPoolExecutor(initializer=exit_with_parent, initargs=(os.getpid(),))``.

    Args:
        parent_pid: the pid of the process that owns the pool.
    """
    if not _kill_on_parent_death():
        first_parent = os.getppid()
        watch = threading.Thread(target=_watch_parent, args=(parent_pid, first_parent), daemon=True)
        watch.start()
    if not _alive(parent_pid):  # it died before the worker was ready
        os._exit(1)


def _kill_on_parent_death() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, first_parent: int) -> None:
    while os.getppid() == first_parent and _alive(parent_pid):
        time.sleep(WATCH_INTERVAL_S)
    os._exit(1)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as dead)."""
    if os.path.exists("/proc/self/stat"):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False
        except (OSError, IndexError):
            pass  # unreadable: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
