"""Serve a review session on a local socket with uvicorn, and say where."""

from __future__ import annotations

import secrets
import socket

from rlaif import asgi
from rlaif.errors import ReviewServerError

LOCAL_HOST = "127.0.0.1"


def bind(host: str, port: int, *, allow_remote: bool = False) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); only 127.0.0.1 unless allowed."""
    if host != LOCAL_HOST and not allow_remote:
        raise ReviewServerError(
            f"refusing to listen on {host}: the review app shows the run's data to anyone who "
            f"can reach it; use --host {LOCAL_HOST}, or add --allow-remote if you mean it"
        )
    try:
        return asgi.listen(host, port, backlog=64)
    except OSError as e:
        raise ReviewServerError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port, or leave "
            "it out for a free one"
        ) from e


def new_token() -> str:
    """A fresh access token for one review server."""
    return secrets.token_urlsafe(24)


def url_of(sock: socket.socket, token: str) -> str:
    """The URL of the review page served on a bound socket, token included."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/?token={token}"


def serve(app, sock: socket.socket) -> None:
    """Serve an ASGI app on a bound socket until Ctrl-C or SIGTERM, then return normally."""
    asgi.serve(app, sock)
