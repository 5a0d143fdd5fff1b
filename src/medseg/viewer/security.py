"""The viewer's security rules: token, cookie, Host header, headers, sizes, slow-down, paths.

The server is meant for one person on one machine, so the rules are strict and simple:

* a random token (``secrets.token_urlsafe(32)``: 32 random bytes) is required on every
  request, in the ``?token=`` query (first visit), the ``medseg_token`` cookie (HttpOnly,
  SameSite=Strict, set on the first visit) or the ``X-Medseg-Token`` header; it is compared
  in constant time (``hmac.compare_digest``);
* state-changing requests (POST) need the token in the header: a cookie alone, which a
  browser attaches to a forged cross-site request, is not enough;
* the ``Host`` header must be the loopback address or ``localhost`` (DNS rebinding), or the
  ``--host`` given with ``--allow-remote``;
* every answer carries ``Content-Security-Policy: default-src 'self'`` and no CORS header;
  request bodies are limited (``MAX_BODY_BYTES``);
* after ``FREE_FAILURES`` wrong or missing tokens from one client, each further refusal is
  slowed down (``failure_delay``: 0.1 s doubling up to 2 s).

Case ids are looked up in the case list and never joined into paths; ``inside`` is the last
check that a resolved file (symbolic links followed) lies inside an allowed folder.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from pathlib import Path

TOKEN_COOKIE = "medseg_token"
TOKEN_HEADER = "x-medseg-token"
MAX_BODY_BYTES = 1 << 20
FREE_FAILURES = 5
MAX_DELAY_S = 2.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def new_token() -> str:
    """A URL-safe token of 32 random bytes (``secrets``)."""
    return secrets.token_urlsafe(32)


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; ``None`` or an empty string never matches.

    Example:
        >>> token_matches("abc", "abc"), token_matches("abd", "abc"), token_matches(None, "abc")
        (True, False, False)
    """
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def host_name(host_header: str | None) -> str:
    """The host part of a ``Host`` header (``[::1]:8000`` -> ``::1``, ``a:80`` -> ``a``)."""
    value = (host_header or "").strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def host_allowed(host_header: str | None, extra_hosts: frozenset[str] = frozenset()) -> bool:
    """Whether a ``Host`` header names the loopback address, ``localhost`` or an extra host."""
    name = host_name(host_header)
    return bool(name) and (name in LOOPBACK_HOSTS or name in extra_hosts)


def failure_delay(failures: int) -> float:
    """Seconds to wait before answering the ``failures``-th refused request of a client.

    Example:
        >>> [failure_delay(n) for n in (1, 5, 6, 7, 20)]
        [0.0, 0.0, 0.1, 0.2, 2.0]
    """
    if failures <= FREE_FAILURES:
        return 0.0
    return min(MAX_DELAY_S, 0.1 * 2 ** (failures - FREE_FAILURES - 1))


class FailureCounter:
    """Refused requests per client address (thread-safe); a success does not reset it."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, client: str) -> int:
        """Count one more failure of ``client``; returns its total."""
        with self._lock:
            self._counts[client] = self._counts.get(client, 0) + 1
            return self._counts[client]

    def count(self, client: str) -> int:
        with self._lock:
            return self._counts.get(client, 0)


def inside(path: str | os.PathLike[str], roots: list[Path]) -> bool:
    """Whether ``path``, with every symbolic link resolved, lies inside one of ``roots``.

    Example:
        >>> inside("/tmp/a/b", [Path("/tmp/a")]), inside("/tmp/a/../c", [Path("/tmp/a")])
        (True, False)
    """
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return False
    for root in roots:
        base = Path(os.path.realpath(root))
        if real == base or base in real.parents:
            return True
    return False
