"""The simulator in process (httpx.ASGITransport) and a real loopback notification receiver."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from settle.simulator import Simulator

APPROVE = "4242424242424242"
TIMEOUT = "4000000000003001"
LATE = "4000000000003019"
PROCESSING_ERROR = "4000000000000119"


class Sim:
    """An in-process simulator and an async client on it."""

    def __init__(self, app: Starlette, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.simulator: Simulator = app.state.simulator
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sim", headers=headers
        )

    async def authorize(
        self,
        key: str,
        *,
        card: str = APPROVE,
        amount: int = 1000,
        capture: bool = False,
        reference: str = "pi_1",
        **extra: Any,
    ) -> httpx.Response:
        body = {
            "amount": amount,
            "currency": "USD",
            "card_number": card,
            "capture": capture,
            "reference": reference,
            **extra,
        }
        return await self.post("/v1/authorizations", key, body)

    async def post(self, path: str, key: str | None, body: Any) -> httpx.Response:
        headers = {} if key is None else {"Idempotency-Key": key}
        return await self.client.post(path, json=body, headers=headers)

    async def lookup(self, key: str) -> httpx.Response:
        return await self.client.get(f"/v1/requests/{key}")

    async def authorizations(self, reference: str = "pi_1") -> list[dict[str, Any]]:
        response = await self.client.get("/v1/authorizations", params={"reference": reference})
        assert response.status_code == 200
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    async def wait_for(self, key: str, status: str, timeout: float = 3.0) -> dict[str, Any]:
        """Poll the status lookup until it says ``status``."""
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = (await self.lookup(key)).json()
            if body["status"] == status:
                return body
            assert time.monotonic() < deadline, f"{key} still {body} after {timeout} s"
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.client.aclose()
        await self.simulator.aclose()


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records what is POSTed to it.

    ``answers`` are the statuses of the first requests (then 204 for every other one).
    """

    answers: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.deliveries.append(Delivery(dict(self.headers.items()), body))
                    status = receiver.answers.pop(0) if receiver.answers else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def received(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    async def wait_for(
        self, count: int, timeout: float = 5.0, sleep: Callable[[float], Any] = asyncio.sleep
    ) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            assert time.monotonic() < deadline, f"{len(self.received())} of {count} deliveries"
            await sleep(0.01)
        return self.received()
