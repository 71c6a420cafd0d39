"""Where ``rlaif serve`` listens: 127.0.0.1 unless told, any other address only with a token.

uvicorn's access log stays off: OpenRLHF's client can only pass the token in the URL
(``?token=``), and an access log would write it to disk.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from rlaif import asgi
from rlaif.errors import ServeError

LOCAL_HOST = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can reach it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | Path | None, host: str) -> str | None:
    """The token in ``path`` (one line); ServeError when a non-loopback ``host`` has none."""
    if path is None:
        if not is_loopback(host):
            raise ServeError(
                f"refusing to listen on {host} without a token: anyone who reaches it could "
                "use the judge; pass --token-file FILE (one line, e.g. from "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as e:
        raise ServeError(f"--token-file {path}: cannot read it ({e.strerror})") from None
    if len(token) < 16 or "\n" in token:
        raise ServeError(f"--token-file {path}: needs one line of at least 16 characters")
    return token


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    try:
        return asgi.listen(host, port, backlog=256)
    except OSError as e:
        raise ServeError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port"
        ) from e


def run(app, sock: socket.socket) -> None:
    """Serve an ASGI app on a bound socket until Ctrl-C or SIGTERM, then return normally."""
    asgi.serve(app, sock, timeout_keep_alive=30)
