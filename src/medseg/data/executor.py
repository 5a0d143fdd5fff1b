"""One executor interface for per-case work: ``local`` (a process pool, the default) or ``ray``.

``run_cases(fn, items, executor=...)`` runs ``fn(item)`` for every item and yields one
``Outcome`` per item: in item order (``ordered=True``) or as they finish. Both executors:

- keep at most ``max_in_flight`` items submitted and not yet yielded (default: twice the
  workers), so the driver never holds more than a bounded number of per-case results,
  whatever the cohort size (memory-flat: results should be small per-case summaries; each
  task reads and writes its own case);
- retry a failed item ``retries`` times (default once), then yield it as failed
  (``Outcome.error``) while the others go on; a worker that dies mid-case (killed, out of
  memory) counts as a failure of that case;
- draw one progress bar over cases (throughput and ETA) on the driver.

``ray`` runs Ray Core tasks (``pip install 'medseg[cluster]'``): on a cluster that is already
running (``address="auto"`` or ``"ray://HOST:PORT"``) or, with no address, on a Ray started on
this machine. An address that does not answer is a ``ConfigError`` within
``CONNECT_TIMEOUT_S`` seconds; Ray missing is a ``ConfigError`` naming the extra.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from tqdm.auto import tqdm

from medseg.device import available_cpus
from medseg.errors import ConfigError, MedsegError

T = TypeVar("T")
R = TypeVar("R")

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "ray")
CONNECT_TIMEOUT_S = 30.0
RAY_EXTRA_HINT = "pip install 'medseg[cluster]' (the extra 'cluster' pins ray)"
_ADDRESS = re.compile(r"^(auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5})$")


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What became of one item: ``value`` when it succeeded, else ``error`` (one line)."""

    index: int
    value: R | None = None
    error: str | None = None
    attempts: int = 1
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_executor(executor: str, address: str | None = None) -> None:
    """Raise ``ConfigError`` for an unknown executor or a malformed ``address``."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address is not None:
        if executor != "ray":
            raise ConfigError("an address is for --executor ray only")
        if not _ADDRESS.match(address):
            raise ConfigError(f"address must be 'auto' or ray://HOST:PORT, got {address!r}")


def run_cases(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    executor: str = "local",
    address: str | None = None,
    jobs: int | None = None,
    retries: int = 1,
    max_in_flight: int | None = None,
    ordered: bool = True,
    desc: str = "cases",
    progress: bool = True,
) -> Iterator[Outcome[R]]:
    """Run ``fn`` over ``items`` with ``executor``; yield an ``Outcome`` per item.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).

    Args:
        executor: ``"local"`` (processes on this machine; ``jobs=1`` runs in this process)
            or ``"ray"``.
        address: Ray only: ``"auto"``, ``"ray://HOST:PORT"`` or None (start Ray here, with
            ``jobs`` CPUs).
        jobs: local worker processes (default: the CPUs this process may use).
        retries: how many times a failed item is tried again.
        max_in_flight: items submitted but not yet yielded (default: 2 x workers).
        ordered: yield in item order (else as items finish).
    """
    check_executor(executor, address)
    if executor == "ray":
        backend: Backend = _RayBackend(address, jobs)
    else:
        backend = _LocalBackend(jobs, len(items))
    yield from run_backend(
        backend,
        fn,
        items,
        retries=retries,
        max_in_flight=max_in_flight or 2 * backend.workers,
        ordered=ordered,
        desc=desc,
        progress=progress,
    )


def run_backend(
    backend: Backend,
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    retries: int,
    max_in_flight: int,
    ordered: bool,
    desc: str,
    progress: bool,
) -> Iterator[Outcome[Any]]:
    """``run_cases`` on any ``Backend`` (e.g. a pool of Ray actors); closes it at the end."""
    bar = tqdm(total=len(items), desc=desc, unit="case", disable=not progress, leave=False)
    try:
        with bar:
            yield from _drive(backend, fn, items, retries, max_in_flight, ordered, bar)
    finally:
        backend.close()


def _drive(
    backend: Backend,
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    retries: int,
    window: int,
    ordered: bool,
    bar: Any,
) -> Iterator[Outcome[Any]]:
    """Submit, retry and yield: at most ``window`` items between submission and yield."""
    backend.prepare(fn)
    attempts = [0] * len(items)
    done: dict[int, Outcome[Any]] = {}
    next_submit = next_yield = 0
    in_flight = 0
    while next_yield < len(items):
        while next_submit < len(items) and in_flight < window:
            attempts[next_submit] += 1
            backend.submit(next_submit, items[next_submit])
            next_submit, in_flight = next_submit + 1, in_flight + 1
        for index, ok, value, error, exc in backend.finished():
            if not ok and attempts[index] <= retries:
                attempts[index] += 1
                backend.submit(index, items[index])  # D: retried once, same worker pool
                continue
            bar.update()
            done[index] = Outcome(
                index,
                value if ok else None,
                None if ok else error,
                attempts[index],
                None if ok else exc,
            )
        if ordered:
            while next_yield in done:
                in_flight -= 1
                yield done.pop(next_yield)
                next_yield += 1
        else:
            for index in list(done):
                in_flight, next_yield = in_flight - 1, next_yield + 1
                yield done.pop(index)


def guarded_call(fn: Callable[[T], R], item: T) -> tuple[bool, Any, str | None, Any]:
    """``fn(item)`` as ``(ok, value, error line, exception if it pickles)``: what a task returns,
    so a case's exception travels back without ending the worker."""
    try:
        return True, fn(item), None, None
    except Exception as err:  # noqa: BLE001  # D: a failed case is reported, not fatal
        line = f"{type(err).__name__}: {err}".replace("\n", " ")
        try:
            pickle.dumps(err)
        except Exception:  # noqa: BLE001
            err = None  # type: ignore[assignment]
        return False, None, line, err


class Backend:
    """Where items run: ``submit`` one, ``finished`` blocks until at least one is done and
    returns ``(index, ok, value, error line, exception)`` per finished item."""

    workers: int = 1

    def prepare(self, fn: Callable[[Any], Any]) -> None: ...

    def submit(self, index: int, item: Any) -> None: ...

    def finished(self) -> list[tuple[int, bool, Any, str | None, Any]]: ...

    def close(self) -> None: ...


class _LocalBackend(Backend):
    """A process pool (``jobs > 1``) or this process (``jobs == 1``)."""

    def __init__(self, jobs: int | None, n_items: int) -> None:
        self.workers = max(1, min(jobs or available_cpus(), max(n_items, 1)))
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[Future[Any], int] = {}
        self.queue: list[tuple[int, Any]] = []

    def prepare(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        if self.workers > 1:
            from medseg.data.parallel import exit_with_parent

            self.pool = ProcessPoolExecutor(
                max_workers=self.workers, initializer=exit_with_parent, initargs=(os.getpid(),)
            )

    def submit(self, index: int, item: Any) -> None:
        if self.pool is None:
            self.queue.append((index, item))
        else:
            self.futures[self.pool.submit(guarded_call, self.fn, item)] = index

    def finished(self) -> list[tuple[int, bool, Any, str | None, Any]]:
        if self.pool is None:
            index, item = self.queue.pop(0)
            return [(index, *guarded_call(self.fn, item))]
        ready, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
        out = []
        for future in ready:
            index = self.futures.pop(future)
            try:
                out.append((index, *future.result()))
            except BrokenProcessPool as err:
                raise MedsegError(
                    f"a worker process died (killed, or out of memory?) during item {index}; "
                    "--executor ray retries such cases"
                ) from err
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class _RayBackend(Backend):
    """Ray Core tasks, one per item (``max_retries=0``: the driver retries)."""

    def __init__(self, address: str | None, jobs: int | None) -> None:
        self.ray = connect_ray(address, num_cpus=jobs)
        self.workers = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        self.refs: dict[Any, int] = {}

    def prepare(self, fn: Callable[[Any], Any]) -> None:
        self.fn_ref = self.ray.put(fn)
        self.task = self.ray.remote(num_cpus=1, max_retries=0)(guarded_call)

    def submit(self, index: int, item: Any) -> None:
        self.refs[self.task.remote(self.fn_ref, item)] = index

    def finished(self) -> list[tuple[int, bool, Any, str | None, Any]]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        out = []
        for ref in ready:
            index = self.refs.pop(ref)
            try:
                out.append((index, *self.ray.get(ref)))
            except Exception as err:  # noqa: BLE001  # a worker died: that case failed
                line = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                out.append((index, False, None, line, None))
        return out

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)


def import_ray() -> Any:
    """The ``ray`` module, or ``ConfigError`` naming the extra that installs it."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(
            f"--executor ray needs Ray, which is not installed: {RAY_EXTRA_HINT}"
        ) from err
    return ray


def connect_ray(address: str | None, *, num_cpus: int | None = None) -> Any:
    """Ray, connected: the running session if any, else ``address`` (probed first, so an
    address that does not answer is a ``ConfigError`` within ``CONNECT_TIMEOUT_S`` s), else a
    Ray started here with ``num_cpus`` CPUs."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address is None:  # "local": a new Ray here, even where 'ray start' left one running
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        return ray
    if address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        probe_address(host.strip("[]"), int(port), CONNECT_TIMEOUT_S)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        raise ConfigError(f"Ray cluster at {address}: cannot connect ({err})") from err
    return ray


def probe_address(host: str, port: int, timeout: float) -> None:
    """``ConfigError`` when nothing accepts a TCP connection on ``host:port`` within
    ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as err:
        raise ConfigError(
            f"Ray cluster at {host}:{port} does not answer ({err}); start it with "
            "'ray start --head' or check the address"
        ) from err


def summary_line(done: int, failed: int, skipped: int, seconds: float) -> str:
    """``"done 98, failed 2, skipped 0 in 61 s (96.4 cases/min)"`` (the rate of done cases)."""
    rate = 60.0 * done / seconds if seconds > 0 else float("nan")
    return (
        f"done {done}, failed {failed}, skipped {skipped} in {seconds:.0f} s ({rate:.1f} cases/min)"
    )


def elapsed(start: float) -> float:
    """Seconds since ``start`` (``time.perf_counter``)."""
    return time.perf_counter() - start


FAILURES_CSV = "failures.csv"


def write_failures(folder: str | os.PathLike[str], rows: Sequence[tuple[str, str, int]]) -> Path:
    """Write ``folder/failures.csv`` (``case,error,attempts``, one row per failed case)
    atomically, or remove a stale one when ``rows`` is empty. Returns its path."""
    import csv
    import io

    from medseg.fileutil import csv_safe, write_text_atomic

    path = Path(folder) / FAILURES_CSV
    if not rows:
        path.unlink(missing_ok=True)
        return path
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "error", "attempts"])
    writer.writerows([csv_safe(case), csv_safe(error), attempts] for case, error, attempts in rows)
    write_text_atomic(path, buffer.getvalue())
    return path
