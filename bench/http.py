"""HTTP throughput: single-transfer POSTs or batches, each with an Idempotency-Key.

Against ``--url`` with ``--api-key``, or, without them, against a server this script starts
(``settle serve`` on a fresh SQLite file, or on a fresh PostgreSQL database with
``--database-url``) with a tenant it creates. Opens ``--accounts`` wallets and funds them (not
timed), then ``--concurrency`` connections send random wallet-to-wallet transfers for
``--seconds``: one per request (``--mode single``: ``POST /v1/transfers``) or
``--batch-size`` per request (``--mode batch``: ``POST /v1/transfers/batch``). Every request
carries a fresh Idempotency-Key. A refusal (``insufficient_funds``: 422) is an answer, not an
error; errors are transport failures and 5xx. Latency is per request, from the first byte sent
to the last byte received.

The client is a small HTTP/1.1 keep-alive client on asyncio streams, so that the load generator
costs as little of the machine's CPU as it can: server and client share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# This file is named http.py, which would shadow the standard library's http package for
# everything imported after it (urllib, uvicorn...): take its folder off the path and load the
# ledger benchmark's helpers by file instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("settle_bench_ledger", _HERE / "ledger.py")
assert _spec is not None
assert _spec.loader is not None
_ledger = sys.modules["settle_bench_ledger"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ledger)
bench_database, log = _ledger.bench_database, _ledger.log
percentile_ms, source_digest = _ledger.percentile_ms, _ledger.source_digest

AMOUNT_MIN, AMOUNT_MAX = 100, 10_000
OPENING = 10_000_000  # each wallet's funding: refusals stay rare
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})")


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes | None = None, headers: str = ""
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.fixed}{headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        try:
            status_line = await self.reader.readline()
            match = _STATUS_LINE.match(status_line)
            if match is None:
                raise ConnectionError(f"bad status line {status_line[:40]!r}")
            length = 0
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            payload = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise
        return int(match.group(1)), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# ---- a server of our own -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settle(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from settle.cli import app; app()", *args],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip


@contextmanager
def own_server(database_url: str, workers: int) -> Iterator[tuple[str, str, str]]:
    """``settle serve`` on ``database_url``; yields (url, api key, database url)."""
    env = {**os.environ, "SETTLE_DATABASE_URL": database_url, "SETTLE_MAINTENANCE_SECONDS": "5"}
    _settle("db", "upgrade", env=env)
    created = json.loads(_settle("tenants", "create", "bench", "--json", env=env).stdout)
    port = _free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="settle_http_", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-c", "from settle.cli import app; app()", "serve",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"server did not start: {Path(log_file.name).read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        log(f"server pid {process.pid} on {url}, {workers} worker(s)")
        yield url, created["api_key"], database_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()
        os.unlink(log_file.name)


# ---- the load ------------------------------------------------------------------------------


async def open_book(conn: Connection, count: int) -> list[str]:
    """A funding account and ``count`` funded wallets; returns the wallets' ids."""
    run = secrets.token_hex(4)

    async def account(code: str, kind: str, constrained: bool) -> str:
        body = {"code": f"{code}-{run}", "name": code, "type": kind, "currency": "USD",
                "debits_must_not_exceed_credits": constrained}  # fmt: skip
        status, payload = await conn.request("POST", "/v1/accounts", json.dumps(body).encode())
        if status != 201:
            raise RuntimeError(f"opening an account: {status} {payload[:300]!r}")
        return str(json.loads(payload)["id"])

    funding = await account("funding", "asset", False)
    wallets = [await account(f"wallet-{i}", "liability", True) for i in range(count)]
    for start in range(0, count, 1000):
        batch = [
            {"debit_account_id": funding, "credit_account_id": w, "amount": OPENING,
             "currency": "USD"}
            for w in wallets[start : start + 1000]
        ]  # fmt: skip
        body = json.dumps({"transfers": batch}).encode()
        status, payload = await conn.request("POST", "/v1/transfers/batch", body)
        if status != 200:
            raise RuntimeError(f"funding: {status} {payload[:300]!r}")
    return wallets


def transfer_body(rng: random.Random, wallets: Sequence[str]) -> dict[str, Any]:
    i = rng.randrange(len(wallets))
    j = rng.randrange(len(wallets) - 1)
    j += j >= i
    return {"debit_account_id": wallets[i], "credit_account_id": wallets[j],
            "amount": rng.randint(AMOUNT_MIN, AMOUNT_MAX), "currency": "USD"}  # fmt: skip


async def load(args: argparse.Namespace, host: str, port: int, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    setup = Connection(host, port, headers)
    t0 = time.perf_counter()
    wallets = await open_book(setup, args.accounts)
    setup.close()
    log(f"{len(wallets)} wallets opened and funded in {time.perf_counter() - t0:.1f}s")

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    transfers = 0
    stop_at = time.perf_counter() + args.seconds
    run = secrets.token_hex(4)

    async def client(n: int) -> None:
        nonlocal errors, transfers
        rng = random.Random(args.seed * 1000 + n)
        conn = Connection(host, port, headers)
        i = 0
        while time.perf_counter() < stop_at:
            i += 1
            if args.mode == "single":
                path, count = "/v1/transfers", 1
                body = json.dumps(transfer_body(rng, wallets)).encode()
            else:
                path, count = "/v1/transfers/batch", args.batch_size
                batch = [transfer_body(rng, wallets) for _ in range(count)]
                body = json.dumps({"transfers": batch}).encode()
            started = time.perf_counter()
            try:
                status, _payload = await conn.request(
                    "POST", path, body, f"Idempotency-Key: {run}-{n}-{i}\r\n"
                )
            except (OSError, asyncio.IncompleteReadError, ConnectionError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            if status >= 500:
                errors += 1
            elif status < 300 or status == 422:
                transfers += count
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(args.concurrency)))
    seconds = time.perf_counter() - started
    return {
        "mode": args.mode,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size if args.mode == "batch" else 1,
        "seconds": round(seconds, 3),
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / seconds, 1),
        "transfers_per_second": round(transfers / seconds, 1),
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "accounts": args.accounts,
    }


def writer_figures(url: str) -> dict[str, Any]:
    """The ledger writer's batches during the run, from the server's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("settle_ledger_batch_transfers_count", "settle_ledger_batch_transfers_sum",
                    "settle_ledger_commit_seconds_sum"):  # fmt: skip
            values[name] = float(value)
    batches = values.get("settle_ledger_batch_transfers_count", 0)
    if not batches:
        return {"db_batches": 0}
    return {
        "db_batches": int(batches),
        "observed_batch_size_mean": round(values["settle_ledger_batch_transfers_sum"] / batches, 1),
        "commit_mean_ms": round(values["settle_ledger_commit_seconds_sum"] / batches * 1000, 2),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server; default: start one")
    parser.add_argument("--api-key", help="a key with ledger:write (with --url)")
    parser.add_argument("--database-url", help="for the server started here (default SQLite)")
    parser.add_argument("--workers", type=int, default=1, help="of the server started here")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--mode", choices=["single", "batch"], default="single")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if (args.url is None) != (args.api_key is None):
        parser.error("--url and --api-key go together")
    if args.accounts < 2 or args.concurrency < 1 or not 1 <= args.batch_size <= 8190:
        parser.error("need --accounts >= 2, --concurrency >= 1, 1 <= --batch-size <= 8190")
    return args


def _run(coroutine: Any) -> Any:
    """On uvloop (it comes with uvicorn[standard]): the client spends less CPU per request."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.url is not None:
        parts = urlsplit(args.url)
        report = _run(load(args, parts.hostname or "127.0.0.1", parts.port or 80, args.api_key))
        report["server"] = args.url
    else:
        with bench_database(args.database_url) as db, own_server(db, args.workers) as started:
            url, key, _db = started
            parts = urlsplit(url)
            report = _run(load(args, "127.0.0.1", parts.port or 80, key))
            report.update(writer_figures(url))
            report["server"] = "started here"
            report["engine"] = "postgresql" if db.startswith("postgresql") else "sqlite"
            report["workers"] = args.workers
    report["settle_source"] = source_digest()
    if args.json:
        print(json.dumps(report))
    else:
        width = max(map(len, report))
        for name, value in report.items():
            print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
