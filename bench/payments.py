"""Payments end to end: create+confirm+capture flows at a fixed arrival rate.

Starts a processor simulator (``settle simulate processor``, ``--latency-ms`` per call), a
webhook receiver, and ``settle serve`` with its embedded worker on a fresh database (SQLite,
or PostgreSQL with ``--database-url``). For ``--seconds`` it sends ``--rate`` payments a
second (open loop: one every 1/rate s, whatever the answers), each a
``POST /v1/payment_intents`` with ``confirm`` and automatic capture and an Idempotency-Key.
Then it waits for every payment to settle and reads each one back.

Per payment:
* platform-added latency: from the request being sent to the commit that made it
  ``succeeded`` (the intent's ``updated_at``), less the processor call's own duration (its
  attempt's ``latency_ms``, measured by the connector around the HTTP call);
* webhook lag: from that commit to the arrival of its ``payment_intent.succeeded`` webhook at
  the receiver (the first attempt: the receiver answers 200 to everything).

Prints ``payments_per_second`` (payments settled over the time from the first request to the
last settlement), ``platform_added_p50_ms``/``p99_ms``, ``webhook_lag_p50_ms``/``p99_ms``.
Server, simulator, receiver and load generator share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

# bench/http.py would shadow the standard library's http package: take this folder off the
# path before importing it (and load the ledger benchmark's helpers by file).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("settle_bench_ledger", _HERE / "ledger.py")
assert _spec is not None
assert _spec.loader is not None
_ledger = sys.modules["settle_bench_ledger"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ledger)
bench_database, log, percentile_ms = _ledger.bench_database, _ledger.log, _ledger.percentile_ms
source_digest = _ledger.source_digest

import httpx  # noqa: E402 - after the path fix above, like bench/http.py

PAYMENT = {"amount": 2_000, "currency": "USD", "payment_method": "pm_card_visa", "confirm": True}
_ENTRY = "import sys; from settle.cli import app; sys.exit(app(prog_name='settle'))"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settle(*args: str) -> list[str]:
    return [sys.executable, "-c", _ENTRY, *args]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length (what uvicorn sends for JSON)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


class LeanClient:
    """Keep-alive HTTP/1.1 POSTs over a pool of loopback connections, with none of a general
    client's work: the load generator shares the machine with what it measures."""

    def __init__(self, host: str, port: int, headers: dict[str, str], connections: int) -> None:
        self.host, self.port, self.connections = host, port, connections
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.opened = 0

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.idle.empty() and self.opened < self.connections:
            self.opened += 1
            reader, writer = await asyncio.open_connection(self.host, self.port)
        else:
            reader, writer = await self.idle.get()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{self.fixed}{extra}\r\n".encode()
            + body
        )
        try:
            answer = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            writer.close()
            self.opened -= 1
            raise
        self.idle.put_nowait((reader, writer))
        return answer

    async def close(self) -> None:
        while not self.idle.empty():
            _reader, writer = self.idle.get_nowait()
            writer.close()


class Receiver:
    """A loopback webhook receiver on the load generator's event loop: the arrival time of
    each intent's succeeded event; it answers 200 to everything."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self.server: asyncio.Server | None = None
        self.url = ""
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                arrived = time.time()
                self.count += 1
                event = json.loads(body)
                if event["type"] == "payment_intent.succeeded":
                    self.arrivals.setdefault(event["data"]["object"]["id"], arrived)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):  # the settle side keeps its connections alive
            writer.close()
        await asyncio.sleep(0.1)  # their readers see the end and return


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, log_path: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {Path(log_path).read_text()[-2000:]}")
        time.sleep(0.1)


@contextmanager
def platform(args: argparse.Namespace, database_url: str) -> Iterator[dict[str, Any]]:
    logs = tempfile.mkdtemp(prefix="settle_bench_payments_")
    sim_port, settle_port = _free_port(), _free_port()
    sim_log = f"{logs}/sim.log"
    sim = subprocess.Popen(
        _settle("simulate", "processor", "--port", str(sim_port), "--name", "sim",
                "--latency-ms", str(args.latency_ms)),
        stdout=open(sim_log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    env = {
        **os.environ,
        "SETTLE_DATABASE_URL": database_url,
        "SETTLE_PROCESSORS": f"sim=http://127.0.0.1:{sim_port}",
        "SETTLE_WEBHOOK_ALLOW_PRIVATE": "1",
        "SETTLE_WORKER_CONCURRENCY": str(args.worker_concurrency),
        "SETTLE_WEBHOOK_CONCURRENCY": str(args.webhook_concurrency),
        "SETTLE_LOG_LEVEL": "warning",
    }
    subprocess.run(_settle("db", "upgrade"), env=env, check=True, capture_output=True)
    created = json.loads(
        subprocess.run(
            _settle("tenants", "create", "bench", "--json"),
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    serve_log = f"{logs}/serve.log"
    serve = subprocess.Popen(
        _settle("serve", "--port", str(settle_port), "--workers", str(args.workers)),
        env=env, stdout=open(serve_log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{sim_port}/healthz", sim, "the simulator", sim_log)
        _wait_http(f"http://127.0.0.1:{settle_port}/healthz", serve, "settle serve", serve_log)
        log(f"settle on :{settle_port}, simulator on :{sim_port} ({args.latency_ms} ms)")
        yield {
            "url": f"http://127.0.0.1:{settle_port}",
            "key": created["api_key"],
            "port": settle_port,
        }
    finally:
        for process in (serve, sim):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def load(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {base['key']}"}
    limits = httpx.Limits(
        max_connections=args.connections, max_keepalive_connections=args.connections
    )
    client = httpx.AsyncClient(base_url=base["url"], headers=headers, limits=limits, timeout=30)
    receiver = Receiver()
    await receiver.start()
    lean = LeanClient("127.0.0.1", base["port"], headers, args.connections)
    body = json.dumps(PAYMENT).encode()
    async with client:
        hook = await client.post(
            "/v1/webhook_endpoints",
            json={"url": receiver.url, "enabled_events": ["payment_intent.succeeded"]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        hook.raise_for_status()
        sent: dict[str, float] = {}
        errors = 0
        tasks: list[asyncio.Task[None]] = []

        async def pay() -> None:
            nonlocal errors
            started = time.time()
            try:
                status, answer = await lean.post(
                    "/v1/payment_intents", body, {"idempotency-key": uuid.uuid4().hex}
                )
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                return
            if status != 201:
                errors += 1
                return
            sent[json.loads(answer)["id"]] = started

        interval = 1.0 / args.rate
        begin = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - begin) < args.seconds:
            due = int(elapsed / interval) + 1
            while n < due:
                tasks.append(asyncio.create_task(pay()))
                n += 1
            await asyncio.sleep(interval / 2)
        await asyncio.gather(*tasks)
        log(f"sent {n} payments in {time.monotonic() - begin:.1f} s ({errors} errors)")

        settled: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 120
        pending = set(sent)
        while pending and time.monotonic() < deadline:
            for intent_id in list(pending)[:200]:
                r = await client.get(f"/v1/payment_intents/{intent_id}")
                body = r.json()
                if body["status"] in ("succeeded", "failed", "requires_payment_method"):
                    settled[intent_id] = body
                    pending.discard(intent_id)
            if pending:
                await asyncio.sleep(0.2)
        waited = time.monotonic() + 10
        while len(receiver.arrivals) < len(settled) and time.monotonic() < waited:
            await asyncio.sleep(0.1)
        await lean.close()
        await receiver.close()

    added: list[float] = []
    lags: list[float] = []
    ends: list[float] = []
    succeeded = 0
    for intent_id, body in settled.items():
        if body["status"] != "succeeded":
            continue
        succeeded += 1
        end = datetime.fromisoformat(body["updated_at"].replace("Z", "+00:00")).timestamp()
        ends.append(end)
        processor_ms = sum(a["latency_ms"] or 0 for a in body["attempts"])
        added.append((end - sent[intent_id]) * 1000 - processor_ms)
        arrived = receiver.arrivals.get(intent_id)
        if arrived is not None:
            lags.append((arrived - end) * 1000)
    span = (max(ends) - min(sent.values())) if ends else float("nan")
    return {
        "offered_rate": args.rate,
        "seconds": args.seconds,
        "sent": n,
        "errors": errors,
        "succeeded": succeeded,
        "unsettled": len(pending),
        "payments_per_second": round(succeeded / span, 1) if ends else 0.0,
        "platform_added_p50_ms": percentile_ms([a / 1000 for a in added], 50),
        "platform_added_p99_ms": percentile_ms([a / 1000 for a in added], 99),
        "webhooks_received": len(lags),
        "webhook_lag_p50_ms": percentile_ms([x / 1000 for x in lags], 50),
        "webhook_lag_p99_ms": percentile_ms([x / 1000 for x in lags], 99),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL server to create a database on")
    parser.add_argument("--rate", type=float, default=200, help="payments offered per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--latency-ms", type=float, default=5, help="the simulator's per call")
    parser.add_argument("--workers", type=int, default=1, help="settle serve processes")
    parser.add_argument("--worker-concurrency", type=int, default=32)
    parser.add_argument("--webhook-concurrency", type=int, default=16)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with bench_database(args.database_url) as url, platform(args, url) as base:
        try:
            import uvloop
        except ImportError:  # the standard loop works too, at some cost to the generator
            figures = asyncio.run(load(args, base))
        else:
            figures = uvloop.run(load(args, base))
    figures["database"] = url.split(":", 1)[0]
    figures["source"] = source_digest()
    print(json.dumps(figures) if args.json else json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
