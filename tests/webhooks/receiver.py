"""A real webhook receiver on a loopback port, whose answers a test scripts.

``Receiver`` is a ``ThreadingHTTPServer`` on 127.0.0.1 that records every request (method,
path, headers and the exact body bytes) and answers each with the next scripted
:class:`Answer` (or the default one): a status and body, after an optional delay, or no answer
at all (the connection is dropped). It can be stopped and started again on the same port, to
play a receiver that is down for a while.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before answering
    drop: bool = False  # close the connection without an answer


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default=0.0)  # time.monotonic() when it arrived


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping does not hold up stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection the client (or stop()) cut short


class Receiver:
    """A scripted loopback receiver; use as a context manager or start()/stop()."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.default = Answer()
        self.port = 0
        self._script: deque[Answer] = deque()
        self._lock = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order (then with ``default``)."""
        with self._lock:
            self._script.extend(answers)

    def _next_answer(self, received: Received) -> Answer:
        with self._lock:
            self.requests.append(received)
            self._lock.notify_all()
            return self._script.popleft() if self._script else self.default

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The requests once there are at least ``count`` (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} requests, expected {count}")
                self._lock.wait(left)
            return list(self.requests)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                answer = receiver._next_answer(received)
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection (kept-alive ones too): nothing reaches
        this receiver until it starts again, on the same port."""
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):  # already closed by the peer
                    connection.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
