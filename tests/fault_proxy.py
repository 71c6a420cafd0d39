"""An HTTP proxy for the tests: it forwards requests to a real OpenAI-compatible server and, at
a set rate, answers with a fault instead.

Faults, taken in turn so that every kind occurs:

=================  ===========================================================================
``rate_limit``     429 with ``Retry-After`` (not forwarded)
``server_error``   500 (not forwarded)
``hang``           no answer until the client gives up and closes the connection (at most
                   ``hang_s``), so the client's timeout always passes (not forwarded)
``malformed``      forwarded; the server's reply cut in half, sent as a 200 ``application/json``
``cut``            forwarded; the status line and half the body, then the connection is closed
=================  ===========================================================================

Which requests fail is drawn from a seeded generator, one draw per request in arrival order.
``fail_next(kind)`` makes the next request fail with that fault, whatever the rate. ``refuse``
makes the proxy answer every request with that status (401, 400), once ``refuse_after`` more
requests have been answered normally.
"""

from __future__ import annotations

import http.client
import json
import random
import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("rate_limit", "server_error", "hang", "malformed", "cut")


class FaultProxy:
    """A fault-injecting proxy in front of ``upstream`` (a ``http://host:port/v1`` URL)."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        hang_s: float = 120.0,
        retry_after: str = "1",
        faults: tuple[str, ...] = FAULTS,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.rate = rate
        self.hang_s = hang_s
        self.retry_after = retry_after
        self.faults = faults
        #: a status to answer every request with (None: behave as configured) ...
        self.refuse: int | None = None
        #: ... after this many more requests answered normally
        self.refuse_after = 0
        #: outcomes so far: "ok" or a fault's name (or "refused")
        self.counts: Counter[str] = Counter()
        #: requests passed to the server (faulty replies of forwarded requests included)
        self.forwarded = 0
        #: most requests that were at the server at the same time
        self.max_forwarding = 0
        self._forwarding = 0
        self._rng = random.Random(seed)
        self._forced: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's ``/v1`` URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def faulted(self) -> int:
        """Requests answered with a fault."""
        return sum(self.counts[f] for f in FAULTS)

    def start(self) -> FaultProxy:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, kind: str) -> None:
        """Answer the next request with this fault."""
        assert kind in FAULTS, kind
        with self._lock:
            self._forced.append(kind)

    def reset(self, *, rate: float, seed: int = 0) -> None:
        """Set a new fault rate and seed, and clear the counts."""
        with self._lock:
            self.rate = rate
            self._rng = random.Random(seed)
            self.counts.clear()
            self.forwarded = 0
            self.max_forwarding = 0

    # -- used by the request handler --------------------------------------------------------
    def _decide(self) -> str:
        with self._lock:
            if self._forced:
                outcome = self._forced.pop(0)
            elif self.refuse is not None and self.refuse_after <= 0:
                outcome = "refused"
            elif self.refuse is not None:
                self.refuse_after -= 1
                outcome = "ok"
            elif self._rng.random() < self.rate:
                outcome = self.faults[self.faulted % len(self.faults)]
            else:
                outcome = "ok"
            self.counts[outcome] += 1
            return outcome

    def _forward(self, method: str, path: str, body: bytes, headers: dict) -> tuple:
        with self._lock:
            self.forwarded += 1
            self._forwarding += 1
            self.max_forwarding = max(self.max_forwarding, self._forwarding)
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=600)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", "application/json"), resp.read()
        finally:
            conn.close()
            with self._lock:
                self._forwarding -= 1


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args) -> None:  # noqa: A002 - quiet in tests
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._handle(b"")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            self._handle(self.rfile.read(length))

        def _handle(self, body: bytes) -> None:
            outcome = proxy._decide()
            try:
                self._answer(outcome, body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _answer(self, outcome: str, body: bytes) -> None:
            if outcome == "refused":
                status = proxy.refuse
                message = "invalid api key" if status == 401 else "refused by the test proxy"
                self._send(status, {"error": {"message": message, "type": "test"}})
            elif outcome == "rate_limit":
                self._send(
                    429, {"error": {"message": "slow down"}}, {"Retry-After": proxy.retry_after}
                )
            elif outcome == "server_error":
                self._send(500, {"error": {"message": "internal error"}})
            elif outcome == "hang":
                self._wait_for_hangup(proxy.hang_s)
                self.close_connection = True
            else:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("content-type", "authorization", "accept")
                }
                status, ctype, reply = proxy._forward(self.command, self.path, body, headers)
                if outcome == "ok":
                    self._send_bytes(status, ctype, reply)
                elif outcome == "malformed":
                    self._send_bytes(200, "application/json", reply[: len(reply) // 2])
                else:  # cut: promise the whole body, send half, hang up
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply[: len(reply) // 2])
                    self.wfile.flush()
                    self.close_connection = True

        def _wait_for_hangup(self, longest: float) -> None:
            deadline = time.monotonic() + longest
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.1)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed its end

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            self._send_bytes(status, "application/json", json.dumps(payload).encode(), headers)

        def _send_bytes(
            self, status: int, ctype: str, data: bytes, headers: dict | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    return Handler
