"""``settle serve`` as a real process: HTTP over a loopback socket, on SQLite and PostgreSQL.

The tenant and its key come from the ``settle tenants create --json`` command in its own
process, as an operator would make them; the ledger is checked afterwards with
``settle ledger verify --json``.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .server import CliTenant, ServerProcess, create_tenant_via_cli, run_cli

# Server-issued request ids: a random per-process prefix (16 hex) and a counter (12 hex).
REQUEST_ID = re.compile(r"^req_[0-9a-f]{28}$")
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "request_id"}
API_PATHS = {
    "/v1/accounts",
    "/v1/accounts/{account_id}",
    "/v1/accounts/{account_id}/balance",
    "/v1/accounts/{account_id}/statement",
    "/v1/transfers",
    "/v1/transfers/batch",
    "/v1/transfers/{transfer_id}",
    "/v1/transfers/{transfer_id}/post",
    "/v1/transfers/{transfer_id}/void",
    "/v1/transfers/{transfer_id}/reverse",
    "/v1/events",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/payment_intents",
    "/v1/payment_intents/{intent_id}",
    "/v1/payment_intents/{intent_id}/confirm",
    "/v1/payment_intents/{intent_id}/capture",
    "/v1/payment_intents/{intent_id}/cancel",
    "/v1/refunds",
    "/v1/refunds/{refund_id}",
    "/v1/jobs",
    "/v1/jobs/{job_id}",
    "/v1/jobs/{job_id}/retry",
    "/v1/processor_notifications/{processor}",
    "/v1/webhook_endpoints",
    "/v1/webhook_endpoints/{endpoint_id}",
    "/v1/webhook_endpoints/{endpoint_id}/rotate_secret",
    "/v1/webhook_endpoints/{endpoint_id}/deliveries",
    "/v1/webhook_endpoints/{endpoint_id}/deliveries/{delivery_id}/retry",
}


@pytest.fixture
def tenant(db_url: str) -> CliTenant:
    return create_tenant_via_cli(db_url, "acme")


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(db_url, log_dir=tmp_path / "serve")
    try:
        process.start()
        yield process
    finally:
        process.close()


@pytest.fixture
def client(server: ServerProcess, tenant: CliTenant) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as c:
        yield c


def open_account(client: httpx.Client, code: str, type: str, **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/accounts",
        json={"code": code, "name": code.title(), "type": type, "currency": "USD", **fields},
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def balances(posted: int, *, debits: int = 0, credits: int = 0) -> dict[str, int]:
    return {
        "posted": posted,
        "pending": 0,
        "available": posted,
        "debits_posted": debits,
        "credits_posted": credits,
        "debits_pending": 0,
        "credits_pending": 0,
    }


def posting(index: int, account_id: str, side: str, amount: int) -> dict[str, Any]:
    return {
        "index": index,
        "account_id": account_id,
        "side": side,
        "amount": amount,
        "currency": "USD",
        "posted_amount": amount,
        "pending_amount": 0,
    }


def assert_problem(
    response: httpx.Response, status: int, code: str, *, param: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem: its media type, its exact fields, its request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == (PROBLEM_FIELDS | {"param"} if param is not None else PROBLEM_FIELDS)
    assert body["type"] == f"https://settle.dev/errors#{code}"
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body.get("param") == param
    assert REQUEST_ID.match(response.headers["x-request-id"])
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_cli_tenant_key_is_a_test_key(tenant: CliTenant) -> None:
    assert re.fullmatch(r"sk_test_[A-Za-z0-9]{32}", tenant.api_key), tenant.api_key


def test_a_payment_story_over_a_socket(client: httpx.Client, db_url: str) -> None:
    bank = open_account(client, "bank", "asset")
    wallet = open_account(client, "wallet", "liability", debits_must_not_exceed_credits=True)
    shop = open_account(client, "shop", "liability")
    assert (bank["normal_side"], wallet["normal_side"]) == ("debit", "credit")
    assert wallet["balances"] == balances(0)

    funded = client.post(
        "/v1/transfers",
        json={"debit_account_id": bank["id"], "credit_account_id": wallet["id"],
              "amount": 10_000, "currency": "USD"},
        headers={"Idempotency-Key": "fund-wallet-1"},
    )  # fmt: skip
    assert funded.status_code == 201, funded.text
    assert funded.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in funded.headers
    assert REQUEST_ID.match(funded.headers["x-request-id"])
    fund = funded.json()
    assert fund["object"] == "transfer"
    assert (fund["seq"], fund["kind"], fund["status"]) == (1, "transfer", "posted")
    assert fund["postings"] == [
        posting(0, bank["id"], "debit", 10_000),
        posting(1, wallet["id"], "credit", 10_000),
    ]
    assert (fund["pending_id"], fund["reversal_of"], fund["timeout_at"]) == (None, None, None)
    assert (fund["resolved_by"], fund["reversed_by"]) == (None, None)
    assert re.fullmatch(r"[0-9a-f]{64}", fund["hash"])

    pay_id = str(uuid.uuid4())
    paid = client.post(
        "/v1/transfers",
        json={"id": pay_id, "debit_account_id": wallet["id"], "credit_account_id": shop["id"],
              "amount": 2_500, "currency": "USD", "description": "coffee beans",
              "metadata": {"order": "o-17"}},
        headers={"Idempotency-Key": "pay-shop-1"},
    )  # fmt: skip
    assert paid.status_code == 201, paid.text
    pay = paid.json()
    assert (pay["id"], pay["seq"], pay["description"]) == (pay_id, 2, "coffee beans")
    assert pay["metadata"] == {"order": "o-17"}

    # A retry with the same key and body replays the first answer byte for byte.
    replay = client.post(
        "/v1/transfers",
        json={"debit_account_id": bank["id"], "credit_account_id": wallet["id"],
              "amount": 10_000, "currency": "USD"},
        headers={"Idempotency-Key": "fund-wallet-1"},
    )  # fmt: skip
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == funded.content
    assert replay.headers["x-request-id"] != funded.headers["x-request-id"]

    # Read back: the transfers as answered, the balances they made.
    for answer in (funded, paid):
        read = client.get(f"/v1/transfers/{answer.json()['id']}")
        assert read.status_code == 200, read.text
        assert read.json() == answer.json()
    listed = client.get("/v1/transfers")
    assert listed.status_code == 200
    assert listed.json() == {"data": [fund, pay], "has_more": False}
    expected = {
        bank["id"]: balances(10_000, debits=10_000),
        wallet["id"]: balances(7_500, debits=2_500, credits=10_000),
        shop["id"]: balances(2_500, credits=2_500),
    }
    for account_id, want in expected.items():
        balance = client.get(f"/v1/accounts/{account_id}/balance")
        assert balance.status_code == 200, balance.text
        body = balance.json()
        assert (body["object"], body["account_id"], body["currency"]) == (
            "balance",
            account_id,
            "USD",
        )
        assert (body["as_of"], body["balances"], body["rolled_up"]) == (None, want, want)
        account = client.get(f"/v1/accounts/{account_id}")
        assert account.status_code == 200
        assert account.json()["balances"] == want

    statement = client.get(f"/v1/accounts/{wallet['id']}/statement")
    assert statement.status_code == 200
    entries = statement.json()["data"]
    assert [(e["transfer_id"], e["side"], e["amount"]) for e in entries] == [
        (fund["id"], "credit", 10_000),
        (pay_id, "debit", 2_500),
    ]
    assert [e["balance_after"]["posted"] for e in entries] == [10_000, 7_500]

    events = client.get("/v1/events", params={"limit": 100})
    assert events.status_code == 200
    assert [(e["type"], e["object_id"]) for e in events.json()["data"]] == [
        ("account.created", bank["id"]),
        ("account.created", wallet["id"]),
        ("account.created", shop["id"]),
        ("transfer.posted", fund["id"]),
        ("transfer.posted", pay_id),
    ]

    verify = run_cli("ledger", "verify", "--json", database_url=db_url)
    assert verify.returncode == 0, verify
    assert verify.json() == {
        "ok": True,
        "tenants": 1,
        "transfers": 2,
        "accounts": 3,
        "problems": [],
    }


def test_request_ids_are_issued_or_echoed(client: httpx.Client) -> None:
    issued = [client.get("/v1/accounts") for _ in range(3)]
    assert [r.status_code for r in issued] == [200, 200, 200]
    ids = [r.headers["x-request-id"] for r in issued]
    assert all(REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == 3
    echoed = client.get("/v1/accounts", headers={"X-Request-Id": "client-req.42:a_b"})
    assert echoed.headers["x-request-id"] == "client-req.42:a_b"
    replaced = client.get("/v1/accounts", headers={"X-Request-Id": "no spaces allowed"})
    assert REQUEST_ID.match(replaced.headers["x-request-id"])
    unauthenticated = httpx.get(f"{client.base_url}/healthz")
    assert REQUEST_ID.match(unauthenticated.headers["x-request-id"])


def test_errors_are_problem_documents(client: httpx.Client, server: ServerProcess) -> None:
    bank = open_account(client, "bank", "asset")
    wallet = open_account(client, "wallet", "liability", debits_must_not_exceed_credits=True)
    shorthand = {"debit_account_id": wallet["id"], "credit_account_id": bank["id"],
                 "currency": "USD"}  # fmt: skip

    anonymous = httpx.get(f"{server.base_url}/v1/accounts")
    assert_problem(anonymous, 401, "invalid_api_key")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(
        f"{server.base_url}/v1/accounts", headers={"Authorization": "Bearer sk_test_nope"}
    )
    assert_problem(wrong, 401, "invalid_api_key")

    missing = uuid.uuid4()
    assert_problem(client.get(f"/v1/accounts/{missing}"), 404, "account_not_found", param="id")
    assert_problem(client.get(f"/v1/transfers/{missing}"), 404, "transfer_not_found", param="id")
    assert_problem(client.get("/v1/no-such-route"), 404, "route_not_found")
    not_allowed = client.delete("/v1/accounts")
    assert_problem(not_allowed, 405, "method_not_allowed")
    # RFC 9110: Allow lists every method the resource supports (/v1/accounts: list and open).
    assert {m.strip() for m in not_allowed.headers["allow"].split(",")} == {"GET", "POST"}

    malformed = client.post(
        "/v1/transfers", content=b'{"amount": ', headers={"content-type": "application/json"}
    )
    assert_problem(malformed, 400, "malformed_json")
    fractional = client.post("/v1/transfers", json={**shorthand, "amount": 1.5})
    assert_problem(fractional, 400, "invalid_amount", param="amount")
    bad_limit = client.get("/v1/accounts", params={"limit": 0})
    assert_problem(bad_limit, 400, "invalid_request", param="limit")

    overdrawn = client.post("/v1/transfers", json={**shorthand, "amount": 1})
    body = assert_problem(overdrawn, 422, "insufficient_funds")
    assert body["detail"] == f"account {wallet['id']} has insufficient available funds"

    first = client.post(
        "/v1/accounts",
        json={"code": "shop", "name": "Shop", "type": "liability", "currency": "USD"},
        headers={"Idempotency-Key": "open-shop"},
    )
    assert first.status_code == 201
    reused = client.post(
        "/v1/accounts",
        json={"code": "shop2", "name": "Shop", "type": "liability", "currency": "USD"},
        headers={"Idempotency-Key": "open-shop"},
    )
    assert_problem(reused, 422, "idempotency_key_reused", param="Idempotency-Key")
    taken = client.post(
        "/v1/accounts",
        json={"code": "shop", "name": "Shop", "type": "liability", "currency": "USD"},
    )
    assert_problem(taken, 409, "account_code_taken", param="code")


def test_openapi_docs_and_health_are_served(client: httpx.Client) -> None:
    openapi = client.get("/openapi.json")
    assert openapi.status_code == 200
    assert openapi.headers["content-type"] == "application/json"
    doc = openapi.json()
    assert doc["openapi"].startswith("3.")
    assert (doc["info"]["title"], doc["info"]["version"]) == ("Settle", "0.1.0")
    assert set(doc["paths"]) == API_PATHS
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'settle_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in (
        metrics.text.splitlines()
    )


def _transfer_body(debit: str, credit: str, amount: int) -> dict[str, Any]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
            "currency": "USD"}  # fmt: skip


def test_graceful_stop_finishes_in_flight_work(
    db_url: str, tmp_path: Path, tenant: CliTenant
) -> None:
    """SIGTERM under load: answered requests stand, the rest can be retried after a restart,
    nothing is doubled, and the process exits cleanly within uvicorn's shutdown grace."""
    server = ServerProcess(db_url, log_dir=tmp_path / "serve")
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as c:
            bank = open_account(c, "bank", "asset")["id"]
            sink = open_account(c, "sink", "liability")["id"]

        answers: dict[str, httpx.Response] = {}
        failed: dict[str, str] = {}
        bodies: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()
        enough = threading.Event()

        def load(worker: int) -> None:
            with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as c:
                for i in range(400):
                    key = f"graceful-{worker}-{i}"
                    body = _transfer_body(bank, sink, 100 * worker + i + 1)
                    with lock:
                        bodies[key] = body
                    try:
                        response = c.post(
                            "/v1/transfers", json=body, headers={"Idempotency-Key": key}
                        )
                    except httpx.TransportError as exc:
                        with lock:
                            failed[key] = type(exc).__name__
                        return  # the server is going away: stop sending
                    with lock:
                        answers[key] = response
                        if len(answers) >= 40:
                            enough.set()

        threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(4)]
        for t in threads:
            t.start()
        assert enough.wait(30), server.output()
        started = time.monotonic()
        status = server.stop()
        stopping = time.monotonic() - started
        for t in threads:
            t.join(20)
        assert not any(t.is_alive() for t in threads)

        assert status == -signal.SIGTERM, server.output()
        assert stopping < 12, f"{stopping:.1f} s to stop"
        assert server.stderr() == "", server.output()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/healthz", timeout=2)
        unexpected = {
            k: (r.status_code, r.text) for k, r in answers.items() if r.status_code != 201
        }
        assert unexpected == {}

        # After a restart: every answered request replays its answer; every unanswered one
        # goes through (once) when retried.
        server.restart()
        with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as c:
            for key, first in answers.items():
                again = c.post("/v1/transfers", json=bodies[key], headers={"Idempotency-Key": key})
                assert again.status_code == 201, again.text
                assert again.headers["idempotent-replayed"] == "true"
                assert again.content == first.content
            for key in failed:
                retried = c.post(
                    "/v1/transfers", json=bodies[key], headers={"Idempotency-Key": key}
                )
                assert retried.status_code == 201, retried.text
            listed: list[dict[str, Any]] = []
            after: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 100, "account_id": sink}
                if after is not None:
                    params["starting_after"] = after
                page = c.get("/v1/transfers", params=params).json()
                listed.extend(page["data"])
                if not page["has_more"]:
                    break
                after = page["data"][-1]["id"]
            total = sum(bodies[k]["amount"] for k in [*answers, *failed])
            sink_balance = c.get(f"/v1/accounts/{sink}/balance").json()["balances"]["posted"]
        assert len(listed) == len(answers) + len(failed)
        assert len({t["id"] for t in listed}) == len(listed)
        assert {t["id"] for t in listed} >= {r.json()["id"] for r in answers.values()}
        assert sink_balance == total
        assert server.stop() == -signal.SIGTERM
    finally:
        server.close()
    verify = run_cli("ledger", "verify", "--json", database_url=db_url)
    assert verify.returncode == 0, verify
    assert verify.json()["ok"] is True
    assert verify.json()["transfers"] == len(answers) + len(failed)


def test_two_workers_settle_a_racing_key_in_the_database(
    db_url: str, tmp_path: Path, tenant: CliTenant
) -> None:
    """``--workers 2``: the same Idempotency-Key sent at once on many connections (so to both
    processes) makes one transfer, and every acknowledged answer is the same bytes."""
    server = ServerProcess(db_url, workers=2, log_dir=tmp_path / "serve")
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as c:
            bank = open_account(c, "bank", "asset")["id"]
            sink = open_account(c, "sink", "liability")["id"]
        body = _transfer_body(bank, sink, 777)
        barrier = threading.Barrier(8)
        results: list[httpx.Response] = []
        lock = threading.Lock()

        def race() -> None:
            with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as c:
                barrier.wait(10)
                deadline = time.monotonic() + 20
                while True:
                    r = c.post("/v1/transfers", json=body, headers={"Idempotency-Key": "race"})
                    if r.status_code != 409 or time.monotonic() > deadline:
                        break
                    assert r.json()["code"] == "idempotency_key_in_flight"
                    time.sleep(0.02)
                with lock:
                    results.append(r)

        threads = [threading.Thread(target=race, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert [r.status_code for r in results] == [201] * 8, [r.text for r in results]
        assert len({r.content for r in results}) == 1
        with httpx.Client(base_url=server.base_url, headers=tenant.headers, timeout=15) as c:
            listed = c.get("/v1/transfers").json()
            sink_balance = c.get(f"/v1/accounts/{sink}/balance").json()["balances"]["posted"]
        assert [t["id"] for t in listed["data"]] == [results[0].json()["id"]]
        assert sink_balance == 777
        # uvicorn's multi-process supervisor stops its workers and exits 0 on SIGTERM.
        assert server.stop() == 0, server.output()
        assert server.stderr() == "", server.output()
    finally:
        server.close()
