"""Running the viewer: bind the socket (a port in use is a clear error), print the URL, serve.

``medseg view`` binds 127.0.0.1 by default. Any other ``host`` needs ``allow_remote``: the
page is then reachable from the network, protected by the token only and not encrypted
(a warning says so); the names this machine answers to are added to the accepted ``Host``
headers.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import warnings

from medseg.errors import ConfigError

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
        (True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_hosts(host: str, *, allow_remote: bool) -> frozenset[str]:
    """``Host`` header names to accept besides loopback for a server bound to ``host``.

    Raises:
        ConfigError: a non-loopback ``host`` without ``allow_remote``.
    """
    if is_loopback(host):
        return frozenset()
    if not allow_remote:
        raise ConfigError(
            f"--host {host} makes the viewer reachable from the network; add --allow-remote "
            "if that is what you want (the token is then the only protection)"
        )
    warnings.warn(
        f"the viewer listens on {host}: anyone who can reach this machine and has the token can "
        "read and edit these cases, and the connection is not encrypted",
        stacklevel=2,
    )
    names = {host.lower()}
    if host in ("0.0.0.0", "::"):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        try:
            names |= set(socket.gethostbyname_ex(socket.gethostname())[2])
        except OSError:
            pass
    return frozenset(names)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port).

    Raises:
        ConfigError: the port is in use or the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # accepted connections inherit TCP_NODELAY; without it Nagle's algorithm and delayed
    # ACKs add ~40 ms to every small answer on a socket handed to uvicorn
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use; choose another --port (0: any free)"
            ) from err
        raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror})") from err
    return sock


def viewer_url(sock: socket.socket, token: str) -> str:
    """``http://HOST:PORT/?token=...`` for a bound socket (127.0.0.1 when bound to loopback)."""
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if is_loopback(host) else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def serve(app, sock: socket.socket) -> None:
    """Serve ``app`` on the bound ``sock`` until interrupted (uvicorn, one process)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
