"""Versioned, atomic saves of corrected masks: ``OUT/corrections/<case>/v<N>.nii.gz``.

A save writes the mask to a temporary name in the case's folder, flushes it to disk
(``fsync``), then links it to the next free version name (``os.link`` fails if the name
exists, so two savers never overwrite each other) and fsyncs the folder. A failure at any
point (a full disk, an injected error) removes the temporary file: earlier versions are
never touched and no partial ``v<N>`` appears. A save names the version it was based on;
if a newer version exists the save is refused (``StaleVersionError``, HTTP 409).

``status.json`` beside the versions records the review state: ``accepted`` (the prediction
as it is) or ``corrected`` (a saved version), with the version, user and time.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from medseg.errors import DiskFullError, MedsegError
from medseg.fileutil import disk_full_message, write_json_atomic
from medseg.io import Image, to_sitk

VERSION_NAME = re.compile(r"v([1-9][0-9]{0,8})\.nii\.gz")
STATUS_FILE = "status.json"
_SAVE_LOCK = threading.Lock()


class StaleVersionError(MedsegError):
    """A save based on a version that is no longer the newest."""


@dataclass(frozen=True)
class SavedVersion:
    version: int
    path: Path
    sha256: str


def versions(case_dir: Path) -> list[int]:
    """Saved version numbers in ``case_dir``, ascending (other files are ignored)."""
    if not case_dir.is_dir():
        return []
    found = (VERSION_NAME.fullmatch(p.name) for p in case_dir.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def latest_version(case_dir: Path) -> int:
    """The newest version number, 0 when none is saved."""
    found = versions(case_dir)
    return found[-1] if found else 0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(image: Image, path: Path) -> None:
    sitk.WriteImage(to_sitk(image), str(path), True)


def save_version(case_dir: Path, image: Image, *, base_version: int) -> SavedVersion:
    """Write ``image`` as the next version in ``case_dir`` (module docstring).

    Args:
        case_dir: ``OUT/corrections/<case>`` (created).
        image: the mask on the case image's grid.
        base_version: the version the edit started from (0: the prediction).

    Returns:
        The new version's number, path and SHA-256.

    Raises:
        StaleVersionError: a version newer than ``base_version`` exists.
        DiskFullError: the disk filled up (the earlier versions are intact).
    """
    case_dir.mkdir(parents=True, exist_ok=True)
    with _SAVE_LOCK:
        newest = latest_version(case_dir)
        if base_version != newest:
            raise StaleVersionError(
                f"this edit started from version {base_version} but version {newest} has been "
                "saved since; reload the case"
            )
        target = case_dir / f"v{newest + 1}.nii.gz"
        tmp = case_dir / f".v{newest + 1}.{secrets.token_hex(4)}.tmp.nii.gz"
        try:
            _write_file(image, tmp)
            _fsync(tmp)
            os.link(tmp, target)
            _fsync(case_dir)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(disk_full_message(target)) from err
            raise
        finally:
            tmp.unlink(missing_ok=True)
    return SavedVersion(newest + 1, target, sha256_file(target))


def read_status(case_dir: Path) -> dict:
    """The case's review state (``{"status": "unreviewed"}`` when none is recorded)."""
    path = case_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"status": "unreviewed"}
    return data if isinstance(data, dict) and "status" in data else {"status": "unreviewed"}


def write_status(case_dir: Path, status: dict) -> None:
    """Record the review state atomically."""
    case_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(case_dir / STATUS_FILE, status)
