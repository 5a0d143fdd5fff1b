"""Folder locks: ``run_lock`` keeps two runs from writing one folder at once.

The lock is an OS lock (``fcntl.flock``) on ``FOLDER/.lock``: the kernel releases it when the
process ends, even by ``kill -9``, so a lock is never left stale. While held, the file names
the holder (pid, host, command line, start time) so a refused run can say who has the folder.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from medseg.errors import LockedError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
#: descriptors of the locks this process holds; a forked child closes its copies at once, so
#: a lock is never kept alive by a child (a pool worker) after its holder has died
_HELD_FDS: set[int] = set()


def _close_held_locks_in_child() -> None:
    for fd in list(_HELD_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_locks_in_child)


@contextmanager
def run_lock(folder: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if needed) for the ``with`` block.

    The lock is ``fcntl.flock`` on ``FOLDER/.lock``, so the kernel drops it when the process
    ends, however it ends (even ``kill -9``): a lock is never left stale. The holder's pid,
    host, command line and start time are written into the file while it is held (it is
    emptied, not deleted, on release) so a refused run can say who holds the folder. A
    second lock on the same folder is refused in the same process too; a child process
    (forked or spawned) does not hold it. Where ``flock`` is missing (Windows)
    or refused by the file system (some network mounts), a warning says the folder is not
    protected and the block runs unlocked.

    Args:
        folder: the folder to lock, e.g. ``RESULTS/3d_fullres/fold_0``.
        what: what the holder does to it, as a participle: ``"trained"`` gives
            "... fold_0 is being trained by pid 1234 ...".

    Yields:
        The lock file's path.

    Raises:
        LockedError: another process (or another ``run_lock`` here) holds the lock.

    Example:
        >>> with run_lock(fold_dir, "trained"):  # doctest: +SKIP
        ...     train_fold(...)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    if fcntl is None:
        warnings.warn(
            f"{folder}: file locks are not available here; make sure no other medseg "
            "run writes this folder at the same time",
            stacklevel=3,
        )
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    _HELD_FDS.add(fd)
    try:
        locked = _try_lock(fd, folder, what)
        if locked:
            _write_holder(fd, what)
        try:
            yield path
        finally:
            if locked and fd in _HELD_FDS:  # not in a forked child, which closed it
                os.ftruncate(fd, 0)
    finally:
        if fd in _HELD_FDS:
            _HELD_FDS.discard(fd)
            os.close(fd)  # closing the last descriptor releases the lock


def _try_lock(fd: int, folder: Path, what: str) -> bool:
    """True when locked; False (after a warning) when the file system cannot lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockedError(_locked_message(folder, what, _read_holder(fd))) from None
    except OSError as err:  # ENOLCK and friends: a file system without locks
        warnings.warn(
            f"{folder}: cannot lock {LOCK_FILE} ({err.strerror}); make sure no other "
            "medseg run writes this folder at the same time",
            stacklevel=4,
        )
        return False
    return True


def _write_holder(fd: int, what: str) -> None:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    command = shlex.join(argv)
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "what": what,
        "command": command if len(command) <= 200 else command[:197] + "...",
        "since": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):  # empty (the holder is just starting) or not ours
        return {}
    return holder if isinstance(holder, dict) else {}


def _locked_message(folder: Path, what: str, holder: dict[str, Any]) -> str:
    if "pid" not in holder:
        return (
            f"{folder} is being {what} by another process (it holds {folder / LOCK_FILE}); "
            "wait for it to finish or stop it"
        )
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    try:
        started = datetime.fromisoformat(str(holder.get("since")))
        today = started.date() == datetime.now(started.tzinfo).date()
        since = f" since {started.strftime('%H:%M' if today else '%Y-%m-%d %H:%M')}"
    except ValueError:
        since = ""
    command = f" ({holder['command']})" if holder.get("command") else ""
    return (
        f"{folder} is being {what} by pid {holder['pid']}{where}{command}{since}; "
        "wait for it to finish or stop it"
    )
