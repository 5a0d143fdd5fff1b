"""Safe writing: atomic replace, the no-overwrite rule, folder locks and CSV cells.

Every writer in medseg writes to a temporary file beside the target and renames it, so an
interrupted run never leaves a half-written file under the final name:

- ``atomic_path``: the temporary file ``.<stem>.<8 random>.tmp<suffixes>`` is renamed onto
  the target on success, removed on error. The result's mode follows the umask (``0o666 &
  ~umask``, e.g. 0644), like any file the user creates.
- ``remove_stale_temporaries``: removes the temporaries a killed run left behind.
- ``run_lock`` (from ``medseg.locks``, re-exported here): an OS lock on ``FOLDER/.lock`` so
  two runs never write one folder at once; the kernel releases it when the process ends, even
  by ``kill -9``.
- ``csv_safe``: a CSV cell a spreadsheet would run as a formula gets a leading ``'``.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medseg.errors import DiskFullError, OverwriteError
from medseg.locks import LOCK_FILE, run_lock

__all__ = [
    "LOCK_FILE",
    "STALE_AFTER_S",
    "atomic_path",
    "check_writable",
    "csv_restore",
    "csv_safe",
    "disk_full_message",
    "remove_stale_temporaries",
    "run_lock",
    "write_json_atomic",
    "write_text_atomic",
]

log = logging.getLogger(__name__)

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def check_writable(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Raise ``OverwriteError`` if ``path`` exists and ``overwrite`` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OverwriteError(f"{path}: already exists; pass --overwrite to replace it")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary name keeps the target's suffixes (``.nii.gz``) so format-sniffing writers
    still work. A full disk becomes a :class:`DiskFullError` naming ``path`` (the partial
    temporary file is removed, the previous ``path`` is untouched). The file gets the mode a
    new file has under the process umask (``0o666 & ~umask``), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _set_file_mode(tmp_path)
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise DiskFullError(disk_full_message(path)) from err
        raise
    except RuntimeError as err:
        # torch.save reports a full disk as
        # "PytorchStreamWriter failed writing file ...: file write failed"
        if "write failed" in str(err) or "No space left" in str(err):
            raise DiskFullError(disk_full_message(path)) from err
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def disk_full_message(path: str | os.PathLike[str]) -> str:
    return (
        f"{path}: disk full while writing (any previous version of the file is intact); "
        "free some space and run the command again (training continues with --resume)"
    )


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (NaN allowed, written as NaN)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- file mode


@functools.cache
def _umask() -> int:
    """The process umask, read once (the first time a file is written).

    Linux shows it in ``/proc/self/status``; elsewhere ``os.umask`` can only read it by
    setting it, so it is set to the strict 0o077 for the instant before it is restored.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def _set_file_mode(path: Path) -> None:
    """Give a finished temporary file the mode a new file gets under the umask."""
    if stat.S_ISREG(path.lstat().st_mode):
        os.chmod(path, 0o666 & ~_umask())


# ---------------------------------------------------------------- stale temporaries

#: ``atomic_path``'s temporary names: ``.<stem>.<8 of [a-z0-9_]>.tmp<suffixes>``
_TEMPORARY_NAME = re.compile(r"\.[^.]*\.[a-z0-9_]{8}\.tmp(\.[^.]+)*")
#: when this process (roughly) started: no temporary of ours can be older
_PROCESS_START = time.time()
#: a temporary younger than this may belong to a writer between creating and opening it
STALE_AFTER_S = 60.0


def remove_stale_temporaries(
    folder: str | os.PathLike[str], *, recursive: bool = False
) -> list[Path]:
    """Remove the temporary files an interrupted ``atomic_path`` left in ``folder``.

    A file is removed only when all of these hold, so a user's file or a running writer's
    temporary is never touched: its name has ``atomic_path``'s own pattern
    (``.<stem>.<8 random>.tmp<suffixes>``, e.g. ``.checkpoint_best.k3j_9x2a.tmp.pt``); it is a
    regular file (not a link); it was last modified before this process started and at
    least ``STALE_AFTER_S`` (60 s) ago; and (on Linux, for the processes this user can see)
    no process has it open. Call it at the start of a run that writes ``folder``, after
    taking its ``run_lock``.

    Args:
        folder: the folder to clean; a missing folder gives ``[]``.
        recursive: also clean its sub-folders (symbolic links to folders are not followed).

    Returns:
        The removed paths (each also logged).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    walk = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    candidates = [
        Path(root, name)
        for root, _, names in walk
        for name in names
        if _TEMPORARY_NAME.fullmatch(name) and _is_old_regular_file(Path(root, name))
    ]
    if not candidates:
        return []
    held = _open_files()
    removed = []
    for path in candidates:
        try:
            info = path.lstat()
            if (info.st_dev, info.st_ino) in held:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
        log.info("removed %s, a temporary file left by an interrupted run", path)
    return removed


def _is_old_regular_file(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_mtime < min(
        _PROCESS_START, time.time() - STALE_AFTER_S
    )


def _open_files() -> set[tuple[int, int]]:
    """``(device, inode)`` of every file open in a process whose ``/proc/<pid>/fd`` this user
    may read (empty where there is no ``/proc``)."""
    held = set()
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return held
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(proc / pid / "fd")
        except OSError:  # gone, or another user's process
            continue
        for fd in fds:
            try:
                info = os.stat(proc / pid / "fd" / fd)
            except OSError:
                continue
            held.add((info.st_dev, info.st_ino))
    return held


# ---------------------------------------------------------------- CSV cells

#: first characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet will not run as a formula.

    A string starting with ``= + - @``, a tab or a carriage return gets a leading ``'``
    (OWASP's advice; spreadsheets show the rest as text), unless it is a number such as
    ``"-1.5"``. A string of quotes followed by such a character gets one more quote, so
    :func:`csv_restore` gives back the original. Anything else is returned unchanged.

    Example:
        >>> csv_safe("=HYPERLINK(1)"), csv_safe("-1.5"), csv_safe(-2), csv_safe("case_1")
        ("'=HYPERLINK(1)", '-1.5', -2, 'case_1')
    """
    if not isinstance(value, str) or not value.lstrip("'").startswith(_FORMULA_START):
        return value
    if not value.startswith("'") and _is_number(value):
        return value
    return "'" + value


def csv_restore(text: str) -> str:
    """Undo :func:`csv_safe` on a cell read back from a CSV medseg wrote."""
    if text.startswith("'") and text.lstrip("'").startswith(_FORMULA_START):
        return text[1:]
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
