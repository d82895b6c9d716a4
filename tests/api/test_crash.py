"""kill -9 under load: no acknowledged transfer is lost, none is doubled, replays are exact.

Several client threads each submit transfers with their own ``Idempotency-Key`` (half of them
also name the transfer with an id derived from the key, the others let the server derive it)
and retry every attempt that did not get an answer (connection errors, 5xx, a 409 for a key
still in flight) until it is acknowledged. A second or so in, the server is killed with SIGKILL
in the middle of that load, restarted on the same database, and the clients finish. Then the
database must hold exactly one transfer per acknowledged key, with the acknowledged postings,
the stored answer of every key must be the bytes the client got, every replay seen must equal
the first answer, the balances must add up, and ``settle ledger verify`` must pass.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from settle.store import tables
from settle.store.db import create_db_engine

from .server import CliTenant, ServerProcess, create_tenant_via_cli, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CLIENTS = 6
MAX_KEYS_PER_CLIENT = 1500  # a bound on the count; the load is meant to end by time
LOAD_BEFORE_KILL = 1.5  # seconds of load before the kill
MIN_ACKS_BEFORE_KILL = 12
DOWN_FOR = 0.3  # seconds the server stays dead
LOAD_AFTER_RESTART = 1.0
REPLAYS_PER_CLIENT = 15  # keys acknowledged before the kill, re-sent after it
CLIENT_BUDGET = 35.0  # seconds from the first request until every client must be done
ID_NAMESPACE = uuid.UUID("0b7e3f6c-9a51-4c1e-8d2f-5a6b7c8d9e0f")


@dataclass
class Answer:
    status: int
    content: bytes
    replayed: bool


@dataclass
class Submission:
    key: str
    client: int
    body: dict[str, Any]
    attempts: int = 0
    transport_errors: int = 0
    statuses: list[int] = field(default_factory=list)  # every status before the ack
    first: Answer | None = None
    replays: list[Answer] = field(default_factory=list)
    acked_before_kill: bool = False


@dataclass
class Load:
    server: ServerProcess
    tenant: CliTenant
    bank: str
    sinks: list[str]
    started: float = field(default_factory=time.monotonic)
    killed: threading.Event = field(default_factory=threading.Event)
    stop_new: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    submissions: dict[str, Submission] = field(default_factory=dict)
    unexpected: list[tuple[str, int, str]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def acked(self) -> int:
        with self.lock:
            return sum(1 for s in self.submissions.values() if s.first is not None)


def _post(load: Load, http: httpx.Client, sub: Submission) -> Answer | None:
    """One attempt; the answer, or None when it must be retried."""
    sub.attempts += 1
    try:
        response = http.post(
            f"{load.server.base_url}/v1/transfers",
            json=sub.body,
            headers={"Idempotency-Key": sub.key},
        )
    except httpx.TransportError:
        sub.transport_errors += 1
        return None
    if response.status_code == 201:
        return Answer(201, response.content, response.headers.get("idempotent-replayed") == "true")
    sub.statuses.append(response.status_code)
    retryable = response.status_code >= 500 or (
        response.status_code == 409 and response.json().get("code") == "idempotency_key_in_flight"
    )
    if not retryable:
        with load.lock:
            load.unexpected.append((sub.key, response.status_code, response.text))
        raise _UnexpectedResponseError
    return None


class _UnexpectedResponseError(Exception):
    """A response that is neither an acknowledgement nor retryable: reported at the end."""


def _until_acked(load: Load, http: httpx.Client, sub: Submission) -> Answer | None:
    pause = 0.02
    while time.monotonic() - load.started < CLIENT_BUDGET:
        answer = _post(load, http, sub)
        if answer is not None:
            return answer
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    with load.lock:
        load.given_up.append(sub.key)
    return None


def _client(load: Load, n: int) -> None:
    try:
        with httpx.Client(headers=load.tenant.headers, timeout=10) as http:
            for i in range(MAX_KEYS_PER_CLIENT):
                if load.stop_new.is_set():
                    break
                key = f"crash-{n}-{i}"
                body: dict[str, Any] = {
                    "debit_account_id": load.bank,
                    "credit_account_id": load.sinks[n],
                    "amount": 1 + n + (i * 7) % 97,
                    "currency": "USD",
                }
                if n % 2 == 0:  # a client-chosen id derived from the key
                    body["id"] = str(uuid.uuid5(ID_NAMESPACE, key))
                sub = Submission(key, n, body)
                with load.lock:
                    load.submissions[key] = sub
                answer = _until_acked(load, http, sub)
                if answer is None:
                    return
                with load.lock:
                    sub.first = answer
                    sub.acked_before_kill = not load.killed.is_set()
                if i % 5 == 4:  # an immediate retry of an acknowledged request
                    again = _until_acked(load, http, sub)
                    if again is None:
                        return
                    sub.replays.append(again)
            # After the crash: re-send requests acknowledged by the killed process.
            mine = [s for s in list(load.submissions.values()) if s.client == n]
            before = [s for s in mine if s.acked_before_kill]
            for sub in before[:: max(1, len(before) // REPLAYS_PER_CLIENT)][:REPLAYS_PER_CLIENT]:
                again = _until_acked(load, http, sub)
                if again is None:
                    return
                sub.replays.append(again)
    except _UnexpectedResponseError:
        return
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
        with load.lock:
            load.errors.append(exc)


def _open_account(http: httpx.Client, code: str, type: str) -> str:
    response = http.post(
        "/v1/accounts", json={"code": code, "name": code, "type": type, "currency": "USD"}
    )
    assert response.status_code == 201, response.text
    account_id: str = response.json()["id"]
    return account_id


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(db_url, log_dir=tmp_path / "serve")
    try:
        yield process
    finally:
        process.close()


def test_kill_9_under_load_loses_and_doubles_nothing(db_url: str, server: ServerProcess) -> None:
    began = time.monotonic()
    tenant = create_tenant_via_cli(db_url, "crash")
    server.start()
    with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as http:
        bank = _open_account(http, "bank", "asset")
        sinks = [_open_account(http, f"sink-{n}", "liability") for n in range(CLIENTS)]

    load = Load(server, tenant, bank, sinks)
    threads = [
        threading.Thread(target=_client, args=(load, n), name=f"client-{n}", daemon=True)
        for n in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    time.sleep(LOAD_BEFORE_KILL)
    deadline = time.monotonic() + 10
    while load.acked() < MIN_ACKS_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.05)
    acked_before_kill = load.acked()
    assert acked_before_kill >= MIN_ACKS_BEFORE_KILL, server.output()

    load.killed.set()
    status = server.kill()
    assert status == -signal.SIGKILL
    killed_output = server.output()
    time.sleep(DOWN_FOR)
    server.restart()
    time.sleep(LOAD_AFTER_RESTART)
    load.stop_new.set()
    for t in threads:
        t.join(max(1.0, load.started + CLIENT_BUDGET + 5 - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert alive == [], f"clients still running: {alive}\n{server.output()}"

    subs = list(load.submissions.values())
    summary = (
        f"{len(subs)} keys, {acked_before_kill} acknowledged before the kill, "
        f"{sum(s.transport_errors for s in subs)} transport errors, "
        f"statuses retried: {sorted({c for s in subs for c in s.statuses})}"
    )
    assert load.errors == [], summary
    assert load.unexpected == [], summary
    assert load.given_up == [], f"{summary}\n{server.output()}\n{killed_output}"
    acked = {s.key: s for s in subs if s.first is not None}
    assert set(acked) == {s.key for s in subs}, summary
    # The kill landed mid-load: some attempts went unanswered, and work went on afterwards.
    assert sum(s.transport_errors for s in subs) >= 1, summary
    assert any(not s.acked_before_kill for s in subs), summary

    # Every acknowledgement is a transfer with this request's content.
    first = {k: s.first for k, s in acked.items() if s.first is not None}
    bodies = {k: httpx.Response(201, content=a.content).json() for k, a in first.items()}
    for key, body in bodies.items():
        request = acked[key].body
        if "id" in request:
            assert body["id"] == request["id"], key
        assert [(p["account_id"], p["side"], p["amount"]) for p in body["postings"]] == [
            (request["debit_account_id"], "debit", request["amount"]),
            (request["credit_account_id"], "credit", request["amount"]),
        ], key
        assert (body["kind"], body["status"]) == ("transfer", "posted"), key
    acked_ids = {body["id"]: key for key, body in bodies.items()}
    assert len(acked_ids) == len(bodies), "two keys were answered with one transfer"

    # Replays seen are the first answer, byte for byte.
    replays = [(k, r) for k, s in acked.items() for r in s.replays]
    assert len(replays) >= CLIENTS, summary
    for key, replay in replays:
        assert (replay.status, replay.replayed) == (201, True), key
        assert replay.content == first[key].content, key

    # The database: one transfer per acknowledged key, no other; their stored answers.
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            t_rows = conn.execute(
                sa.select(tables.ledger_transfers.c.id, tables.ledger_transfers.c.seq)
                .where(tables.ledger_transfers.c.tenant_id == tenant.tenant_id)
                .order_by(tables.ledger_transfers.c.seq)
            ).all()
            p_rows = conn.execute(
                sa.select(
                    tables.ledger_postings.c.transfer_id,
                    tables.ledger_postings.c.account_id,
                    tables.ledger_postings.c.side,
                    tables.ledger_postings.c.posted_amount,
                )
                .where(tables.ledger_postings.c.tenant_id == tenant.tenant_id)
                .order_by(tables.ledger_postings.c.seq, tables.ledger_postings.c.idx)
            ).all()
            k_rows = conn.execute(
                sa.select(
                    tables.idempotency_keys.c.key,
                    tables.idempotency_keys.c.status,
                    tables.idempotency_keys.c.body,
                ).where(
                    tables.idempotency_keys.c.tenant_id == tenant.tenant_id,
                    tables.idempotency_keys.c.key.like("crash-%"),
                )
            ).all()
    finally:
        engine.dispose()
    assert len(t_rows) == len(acked), summary
    assert {str(r.id) for r in t_rows} == set(acked_ids)
    assert [r.seq for r in t_rows] == list(range(1, len(t_rows) + 1))
    postings: dict[str, list[tuple[str, str, int]]] = {}
    for p in p_rows:
        postings.setdefault(str(p.transfer_id), []).append(
            (str(p.account_id), p.side, p.posted_amount)
        )
    for transfer_id, key in acked_ids.items():
        request = acked[key].body
        assert postings[transfer_id] == [
            (request["debit_account_id"], "D", request["amount"]),
            (request["credit_account_id"], "C", request["amount"]),
        ], key
    stored = {r.key: (r.status, bytes(r.body)) for r in k_rows}
    assert stored == {k: (201, a.content) for k, a in first.items()}

    # Balances: the bank paid out every acknowledged amount, each sink got its client's.
    total = sum(s.body["amount"] for s in acked.values())
    per_sink = dict.fromkeys(sinks, 0)
    for s in acked.values():
        per_sink[s.body["credit_account_id"]] += s.body["amount"]
    with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as http:
        got = {
            account: http.get(f"/v1/accounts/{account}/balance").json()["balances"]["posted"]
            for account in [bank, *sinks]
        }
    assert got == {bank: total, **per_sink}

    assert server.stop() == -signal.SIGTERM, server.output()
    verify = run_cli("ledger", "verify", "--json", database_url=db_url)
    assert verify.returncode == 0, verify
    assert verify.json() == {
        "ok": True,
        "tenants": 1,
        "transfers": len(acked),
        "accounts": CLIENTS + 1,
        "problems": [],
    }
    assert time.monotonic() - began < 60
