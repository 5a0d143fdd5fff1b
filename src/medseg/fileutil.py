"""Safe writing: atomic replace and the no-overwrite rule.

Every writer in medseg writes to a temporary file beside the target and renames it, so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medseg.errors import DiskFullError, OverwriteError

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
    temporary file is removed, the previous ``path`` is untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise DiskFullError(disk_full_message(path)) from err
        raise
    except RuntimeError as err:
        # torch.save reports a full disk as "PytorchStreamWriter failed writing file ...: file write failed"
        if "write failed" in str(err) or "No space left" in str(err):
            raise DiskFullError(disk_full_message(path)) from err
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def disk_full_message(path: str | os.PathLike[str]) -> str:
    return (f"{path}: disk full while writing (any previous version of the file is intact); "
            "free some space and run the command again (training continues with --resume)")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (NaN allowed, written as NaN)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
