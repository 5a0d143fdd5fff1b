"""The append-only, hash-chained audit log ``OUT/audit.jsonl``.

One JSON object per line: ``time`` (UTC, ISO 8601), ``user``, ``case``, ``action``
(``save``, ``accept``, ``export``), ``version``, ``sha256`` (of the saved file),
``changed`` (voxels changed per label name), ``seconds`` (time spent on the case),
``prev`` (the ``hash`` of the line before; 64 zeros on the first line) and ``hash``
(SHA-256 of the line's canonical JSON without ``hash``). ``verify_audit`` recomputes both
and reports the first line that does not fit: an edited line fails its own hash, a removed
or reordered line breaks the next line's ``prev``. (Rewriting the tail of the file with new
hashes cannot be detected from the file alone: keep the last hash printed by
``verify-audit`` elsewhere to anchor it.)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
AUDIT_FILE = "audit.jsonl"


def _canonical(entry: dict[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry's canonical JSON without its ``hash`` field."""
    return hashlib.sha256(_canonical(entry)).hexdigest()


class AuditLog:
    """Appends chained entries to ``path`` (thread-safe; each line fsynced)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _last_hash(self) -> str:
        if not self.path.exists():
            return GENESIS
        last = b""
        with self.path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    last = line
        if not last:
            return GENESIS
        try:
            return str(json.loads(last)["hash"])
        except (ValueError, KeyError, TypeError):
            return hashlib.sha256(last.strip()).hexdigest()  # chain on from a damaged line

    def append(self, **fields: Any) -> dict[str, Any]:
        """Add one entry (``time`` and the chain fields are filled in); returns it."""
        with self._lock:
            entry = {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                **fields,
            }
            entry["prev"] = self._last_hash()
            entry["hash"] = entry_hash(entry)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n"
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every entry (lines that are not JSON objects are skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out


@dataclass(frozen=True)
class AuditCheck:
    """``ok``; ``lines`` checked; ``first_bad`` line number (1-based) and ``reason``;
    ``head`` the last line's hash."""

    ok: bool
    lines: int
    first_bad: int | None = None
    reason: str = ""
    head: str = GENESIS


def verify_audit(path: str | os.PathLike[str]) -> AuditCheck:
    """Check the chain of an audit log; a missing file is an empty, valid log."""
    path = Path(path)
    if not path.exists():
        return AuditCheck(True, 0)
    prev = GENESIS
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            return AuditCheck(False, len(lines), number, "not valid JSON", prev)
        if not isinstance(entry, dict):
            return AuditCheck(False, len(lines), number, "not a JSON object", prev)
        if entry.get("hash") != entry_hash(entry):
            return AuditCheck(False, len(lines), number, "content does not match its hash", prev)
        if entry.get("prev") != prev:
            return AuditCheck(
                False, len(lines), number, "chain broken: 'prev' is not the previous hash", prev
            )
        prev = entry["hash"]
    return AuditCheck(True, len(lines), head=prev)
