"""Serving an ASGI app with uvicorn on a socket the caller bound, stopped by Ctrl-C or SIGTERM.

``rlaif review`` and ``rlaif serve`` both listen this way: the caller binds (and so decides
where it may listen and what an error says), then :func:`serve` returns normally on a signal,
so the caller can close its store and print its summary.
"""

from __future__ import annotations

import contextlib
import signal
import socket


def listen(host: str, port: int, *, backlog: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); OSError if it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    return sock


def serve(app, sock: socket.socket, **config: object) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM, then return normally.

    ``config`` goes to ``uvicorn.Config`` beside the defaults: warnings only, no lifespan, no
    access log (a token in a URL must not reach a log file).
    """
    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises the signal after shutting down, which would kill the process
        # before the caller can close the store and print its summary.
        @contextlib.contextmanager
        def capture_signals(self):
            stops = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    settings = {"log_level": "warning", "lifespan": "off", "access_log": False, **config}
    Server(uvicorn.Config(app, **settings)).run(sockets=[sock])
