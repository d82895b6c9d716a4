"""The hand-written renderers agree with the ``*Public`` schemas the OpenAPI document publishes,
for real bodies of every kind the API answers; and the operations routes (health, readiness,
metrics) do their job."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

from settle.api import Settings, create_app
from settle.api.routers import (
    accounts,
    events,
    health,
    jobs,
    payment_intents,
    processor_notifications,
    refunds,
    transfers,
    webhook_endpoints,
)
from settle.api.schemas import (
    AccountPublic,
    AccountsPublic,
    BalancePublic,
    EventsPublic,
    StatementPublic,
    TransferBatchPublic,
    TransferPublic,
    TransfersPublic,
)
from settle.clock import system_clock
from settle.store.db import create_db_engine, upgrade_database

if TYPE_CHECKING:
    from .support import Api

M = TypeVar("M", bound=BaseModel)


class SteppingClock:
    """The system clock, plus however far a test has moved it forward."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return system_clock() + self.offset

    def advance(self, seconds: int) -> None:
        self.offset += seconds * 1_000_000


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def app(api_settings: Settings, clock: SteppingClock) -> Iterator[Any]:
    """The app of ``tests/api/conftest.py``, on a clock the tests can move forward."""
    application = create_app(api_settings, clock=clock)
    yield application
    application.state.settle.close()


def conforms(model: type[M], response: httpx.Response, status: int = 200) -> M:
    """The body is valid for ``model`` and says nothing the model would not say itself."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    parsed = model.model_validate_json(response.content)
    assert parsed.model_dump(mode="json") == response.json()
    return parsed


async def get(api: Api, path: str, params: Any = None) -> httpx.Response:
    return await api.client.get(path, params=params, headers=api.headers)


async def post(api: Api, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    return await api.client.post(path, json=body, headers={**api.headers, **(headers or {})})


async def test_every_account_body_matches_its_schema(api: Api) -> None:
    parent = await api.account("customers")
    created = await post(api, "/v1/accounts", {
        "id": str(uuid.uuid4()), "code": "alice", "name": "Alice", "type": "liability",
        "currency": "JPY", "parent_id": None, "debits_must_not_exceed_credits": True,
        "overdraft_limit": 0, "metadata": {"k": "v"},
    })  # fmt: skip
    conforms(AccountPublic, created, 201)
    child = await post(
        api,
        "/v1/accounts",
        {"code": "bob", "name": "Bob", "type": "expense", "currency": "USD",
         "parent_id": parent["id"]},
    )  # fmt: skip
    assert conforms(AccountPublic, child, 201).parent_id == uuid.UUID(parent["id"])
    account_id = created.json()["id"]
    conforms(AccountPublic, await get(api, f"/v1/accounts/{account_id}"))
    patched = await api.client.patch(f"/v1/accounts/{account_id}", headers=api.headers,
                                     json={"status": "frozen", "metadata": {}})  # fmt: skip
    assert conforms(AccountPublic, patched).status == "frozen"
    listed = conforms(AccountsPublic, await get(api, "/v1/accounts", {"limit": 2}))
    assert (len(listed.data), listed.has_more) == (2, True)
    empty = conforms(AccountsPublic, await get(api, "/v1/accounts", {"currency": "EUR"}))
    assert (empty.data, empty.has_more) == ([], False)


async def test_every_kind_and_status_of_transfer_matches_its_schema(
    api: Api, clock: SteppingClock
) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", debits_must_not_exceed_credits=True)
    shop = await api.account("shop")
    fees = await api.account("fees", type="revenue")
    conforms(TransferPublic, await api.transfer(bank["id"], wallet["id"], 10_000), 201)
    with_fee = {
        "id": str(uuid.uuid4()),
        "postings": [
            {"account_id": wallet["id"], "side": "debit", "amount": 1_000, "currency": "USD"},
            {"account_id": shop["id"], "side": "credit", "amount": 970, "currency": "USD"},
            {"account_id": fees["id"], "side": "credit", "amount": 30, "currency": "USD"},
        ],
        "description": "with a fee", "metadata": {"order": "7"},
        "effective_at": "2024-05-01T12:00:00Z",
    }  # fmt: skip
    paid = await post(api, "/v1/transfers", with_fee)
    conforms(TransferPublic, paid, 201)
    # The same client id and content again: 200 with the transfer, in the same shape.
    existing = conforms(TransferPublic, await post(api, "/v1/transfers", with_fee))
    assert existing == TransferPublic.model_validate_json(paid.content)

    async def hold(amount: int, **fields: Any) -> str:
        response = await api.transfer(wallet["id"], shop["id"], amount, pending=True, **fields)
        assert conforms(TransferPublic, response, 201).status == "pending"
        transfer_id: str = response.json()["id"]
        return transfer_id

    still_open = await hold(100)
    captured = await hold(200, timeout_seconds=3600)
    voided = await hold(300)
    expiring = await hold(400, timeout_seconds=60)
    capture = await post(api, f"/v1/transfers/{captured}/post", {"amount": 150})
    conforms(TransferPublic, capture, 201)
    conforms(TransferPublic, await post(api, f"/v1/transfers/{voided}/void"), 201)
    refund = await post(api, f"/v1/transfers/{paid.json()['id']}/reverse")
    conforms(TransferPublic, refund, 201)
    clock.advance(61)
    late = await post(api, f"/v1/transfers/{expiring}/post")
    assert (late.status_code, late.json()["code"]) == (409, "pending_expired")
    assert api.app.state.maintenance.run_once()["expired"] == 1
    assert api.app.state.maintenance.run_once()["expired"] == 0

    listed = conforms(TransfersPublic, await get(api, "/v1/transfers", {"limit": 100}))
    assert listed.has_more is False
    seen = {}
    for transfer in listed.data:
        one = conforms(TransferPublic, await get(api, f"/v1/transfers/{transfer.id}"))
        assert one == transfer
        seen[str(one.id)] = (one.kind, one.status)
    assert sorted(set(seen.values())) == sorted({
        ("transfer", "posted"), ("pending", "pending"), ("pending", "posted"),
        ("pending", "voided"), ("pending", "expired"), ("post_pending", "posted"),
        ("void_pending", "voided"), ("expire_pending", "expired"), ("reversal", "posted"),
    })  # fmt: skip
    assert seen[still_open] == ("pending", "pending")
    assert seen[captured] == ("pending", "posted")
    assert seen[voided] == ("pending", "voided")
    assert seen[expiring] == ("pending", "expired")
    events = conforms(EventsPublic, await get(api, "/v1/events", {"limit": 100}))
    expired = [e for e in events.data if e.type == "transfer.expired"]
    assert len(expired) == 1
    assert expired[0].data is not None
    expiry = TransferPublic.model_validate(expired[0].data)
    assert (expiry.kind, expiry.status, str(expiry.pending_id)) == (
        "expire_pending", "expired", expiring
    )  # fmt: skip
    # 10,000 in, 1,000 paid and refunded, 150 captured; only the open hold of 100 is still held
    # (the expired 400, the voided 300 and the rest of the captured 200 are released).
    balance = conforms(BalancePublic, await get(api, f"/v1/accounts/{wallet['id']}/balance"))
    assert (balance.balances.posted, balance.balances.pending, balance.balances.available) == (
        9_850, -100, 9_750
    )  # fmt: skip


async def test_balance_statement_batch_and_event_bodies_match_their_schemas(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    parent = await api.account("customers")
    wallet = await api.account("wallet", parent_id=parent["id"])
    funded = await api.transfer(bank["id"], wallet["id"], 5_000)
    await api.transfer(wallet["id"], bank["id"], 700, pending=True)
    now = conforms(BalancePublic, await get(api, f"/v1/accounts/{wallet['id']}/balance"))
    assert now.as_of is None
    assert now.rolled_up is not None
    rolled = conforms(BalancePublic, await get(api, f"/v1/accounts/{parent['id']}/balance"))
    assert rolled.rolled_up is not None
    assert rolled.rolled_up.available == 4_300
    then = conforms(
        BalancePublic,
        await get(api, f"/v1/accounts/{wallet['id']}/balance",
                  {"as_of": funded.json()["created_at"]}),
    )  # fmt: skip
    assert (then.rolled_up, then.balances.posted) == (None, 5_000)
    statement = conforms(StatementPublic, await get(api, f"/v1/accounts/{wallet['id']}/statement"))
    assert [e.id for e in statement.data] == ["1.1", "2.0"]
    page = conforms(
        StatementPublic,
        await get(
            api, f"/v1/accounts/{wallet['id']}/statement", {"limit": 1, "ending_before": "2.0"}
        ),
    )
    assert (len(page.data), page.has_more) == (1, False)
    one = {"debit_account_id": bank["id"], "credit_account_id": wallet["id"], "amount": 1,
           "currency": "USD"}  # fmt: skip
    chosen = str(uuid.uuid4())
    mixed = await post(api, "/v1/transfers/batch", {"transfers": [
        {**one, "id": chosen}, {**one, "currency": "EUR"}, {**one, "id": chosen},
    ]})  # fmt: skip
    results = conforms(TransferBatchPublic, mixed)
    assert [(r.code, r.seq is None, r.detail is None) for r in results.data] == [
        ("ok", False, True), ("currency_mismatch", True, False), ("exists", True, True)
    ]  # fmt: skip
    atomic = await post(api, "/v1/transfers/batch", {"atomic": True, "transfers": [
        one, {**one, "amount": 0}
    ]})  # fmt: skip
    assert atomic.status_code == 400  # a zero amount is refused before any ledger rule
    atomic = await post(api, "/v1/transfers/batch", {"atomic": True, "transfers": [
        one, {**one, "credit_account_id": str(uuid.uuid4())}
    ]})  # fmt: skip
    linked = conforms(TransferBatchPublic, atomic)
    assert [r.code for r in linked.data] == ["linked_transfer_failed", "account_not_found"]
    # A replay under an Idempotency-Key answers the very same bytes.
    keyed = {"Idempotency-Key": "batch-1"}
    first = await post(api, "/v1/transfers/batch", {"transfers": [one]}, keyed)
    replay = await post(api, "/v1/transfers/batch", {"transfers": [one]}, keyed)
    conforms(TransferBatchPublic, first)
    conforms(TransferBatchPublic, replay)
    assert (replay.content, replay.headers["idempotent-replayed"]) == (first.content, "true")
    events = conforms(EventsPublic, await get(api, "/v1/events", {"limit": 100}))
    assert [e.type for e in events.data] == [
        "account.created", "account.created", "account.created", "transfer.posted",
        "transfer.pending", "transfer.posted", "transfer.posted",
    ]  # fmt: skip
    for event in events.data:
        assert event.data is not None
        if event.type.startswith("transfer."):
            assert TransferPublic.model_validate(event.data).id == event.object_id
        else:
            assert event.data["id"] == str(event.object_id)
    tail = conforms(EventsPublic, await get(api, "/v1/events", {"after": "evt_6", "limit": 1}))
    assert ([e.seq for e in tail.data], tail.has_more) == ([7], False)


# ---- the OpenAPI document ----------------------------------------------------------------------

ROUTES = {
    ("post", "/v1/accounts"): {"201": "AccountPublic"},
    ("get", "/v1/accounts"): {"200": "AccountsPublic"},
    ("get", "/v1/accounts/{account_id}"): {"200": "AccountPublic"},
    ("patch", "/v1/accounts/{account_id}"): {"200": "AccountPublic"},
    ("get", "/v1/accounts/{account_id}/balance"): {"200": "BalancePublic"},
    ("get", "/v1/accounts/{account_id}/statement"): {"200": "StatementPublic"},
    ("post", "/v1/transfers"): {"201": "TransferPublic", "200": "TransferPublic"},
    ("get", "/v1/transfers"): {"200": "TransfersPublic"},
    ("post", "/v1/transfers/batch"): {"200": "TransferBatchPublic"},
    ("get", "/v1/transfers/{transfer_id}"): {"200": "TransferPublic"},
    ("post", "/v1/transfers/{transfer_id}/post"): {"201": "TransferPublic"},
    ("post", "/v1/transfers/{transfer_id}/void"): {"201": "TransferPublic"},
    ("post", "/v1/transfers/{transfer_id}/reverse"): {"201": "TransferPublic"},
    ("get", "/v1/events"): {"200": "EventsPublic"},
    ("get", "/healthz"): {"200": None},
    ("get", "/readyz"): {"200": None},
    ("get", "/metrics"): {"200": None},
    ("post", "/v1/payment_intents"): {"201": "PaymentIntentPublic"},
    ("get", "/v1/payment_intents"): {"200": "PaymentIntentsPublic"},
    ("get", "/v1/payment_intents/{intent_id}"): {"200": "PaymentIntentPublic"},
    ("post", "/v1/payment_intents/{intent_id}/confirm"): {"200": "PaymentIntentPublic"},
    ("post", "/v1/payment_intents/{intent_id}/capture"): {"200": "PaymentIntentPublic"},
    ("post", "/v1/payment_intents/{intent_id}/cancel"): {"200": "PaymentIntentPublic"},
    ("post", "/v1/refunds"): {"201": "RefundPublic"},
    ("get", "/v1/refunds"): {"200": "RefundsPublic"},
    ("get", "/v1/refunds/{refund_id}"): {"200": "RefundPublic"},
    ("get", "/v1/jobs"): {"200": "JobsPublic"},
    ("get", "/v1/jobs/{job_id}"): {"200": "JobPublic"},
    ("post", "/v1/jobs/{job_id}/retry"): {"200": "JobPublic"},
    ("post", "/v1/processor_notifications/{processor}"): {"200": "ProcessorNotificationPublic"},
    ("post", "/v1/webhook_endpoints"): {"201": "WebhookEndpointWithSecretPublic"},
    ("get", "/v1/webhook_endpoints"): {"200": "WebhookEndpointsPublic"},
    ("get", "/v1/webhook_endpoints/{endpoint_id}"): {"200": "WebhookEndpointPublic"},
    ("patch", "/v1/webhook_endpoints/{endpoint_id}"): {"200": "WebhookEndpointPublic"},
    ("delete", "/v1/webhook_endpoints/{endpoint_id}"): {"200": "WebhookEndpointDeletedPublic"},
    ("post", "/v1/webhook_endpoints/{endpoint_id}/rotate_secret"): {
        "200": "WebhookEndpointWithSecretPublic"
    },
    ("get", "/v1/webhook_endpoints/{endpoint_id}/deliveries"): {"200": "WebhookDeliveriesPublic"},
    ("post", "/v1/webhook_endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"): {
        "200": "WebhookDeliveryPublic"
    },
}


async def test_openapi_lists_every_route_with_its_response_model(api: Api) -> None:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    listed = {
        (method, path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert set(listed) == set(ROUTES)
    served = {
        (method.lower(), route.path): route
        for module in (
            accounts,
            events,
            health,
            transfers,
            payment_intents,
            refunds,
            jobs,
            processor_notifications,
            webhook_endpoints,
        )
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert set(served) == set(ROUTES)
    for route, models in ROUTES.items():
        declared = served[route].response_model
        assert (None if declared is None else declared.__name__) == next(iter(models.values()))
    schemas = document["components"]["schemas"]
    for route, models in ROUTES.items():
        responses = listed[route]["responses"]
        for status, model in models.items():
            assert status in responses, (route, status)
            if model is None:
                continue
            content = responses[status].get("content", {})
            assert content.get("application/json", {}).get("schema") == {
                "$ref": f"#/components/schemas/{model}"
            }, (route, status)
    for name, model_class in {
        "AccountPublic": AccountPublic, "AccountsPublic": AccountsPublic,
        "BalancePublic": BalancePublic, "StatementPublic": StatementPublic,
        "TransferPublic": TransferPublic, "TransfersPublic": TransfersPublic,
        "TransferBatchPublic": TransferBatchPublic, "EventsPublic": EventsPublic,
    }.items():  # fmt: skip
        assert set(schemas[name]["properties"]) == set(model_class.model_fields), name
        assert schemas[name]["additionalProperties"] is False, name


# ---- health, readiness and metrics -------------------------------------------------------------


async def test_health_and_readiness(api: Api) -> None:
    healthz = await api.client.get("/healthz")
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    assert healthz.headers["content-type"] == "application/json"
    readyz = await api.client.get("/readyz")
    assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})


async def unready(url: str) -> httpx.Response:
    app = create_app(Settings(database_url=url, maintenance_seconds=0))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://settle.test") as client:
            assert (await client.get("/healthz")).status_code == 200  # up, but not ready
            return await client.get("/readyz")
    finally:
        app.state.settle.close()


async def test_not_ready_on_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    response = await unready(f"sqlite:///{tmp_path / 'empty.db'}")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["status"]) == ("service_unavailable", 503)
    assert body["detail"] == "the database schema is not at the newest migration"
    # Half-way through the migrations is not ready either.
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_db_engine(url)
    upgrade_database(engine, "0003")
    engine.dispose()
    older = await unready(url)
    assert (older.status_code, older.json()["code"]) == (503, "service_unavailable")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format."""
    for sample in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", sample)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    raise AssertionError(f"no sample {name}{labels}")


async def test_metrics_count_requests_by_route_template_and_ledger_batches(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet")
    for _ in range(2):
        assert (await get(api, f"/v1/accounts/{wallet['id']}")).status_code == 200
    assert (await get(api, f"/v1/accounts/{uuid.uuid4()}")).status_code == 404
    assert (await get(api, "/v1/nowhere")).status_code == 404
    before = (await api.client.get("/metrics")).text
    assert "settle_ledger_batch_transfers_count 0.0" in before
    assert (await api.transfer(bank["id"], wallet["id"], 100)).status_code == 201
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    requests = "settle_http_requests_total"
    assert metric(text, requests, method="POST", route="/v1/accounts", status="201") == 2
    assert metric(text, requests, method="GET", route="/v1/accounts/{account_id}",
                  status="200") == 2  # fmt: skip
    assert metric(text, requests, method="GET", route="/v1/accounts/{account_id}",
                  status="404") == 1  # fmt: skip
    assert metric(text, requests, method="GET", route="unmatched", status="404") == 1
    assert metric(text, requests, method="POST", route="/v1/transfers", status="201") == 1
    assert metric(text, requests, method="GET", route="/metrics", status="200") == 1
    assert wallet["id"] not in text  # labels are templates, never ids
    assert metric(text, "settle_ledger_batch_transfers_count") == 1
    assert metric(text, "settle_ledger_batch_transfers_sum") == 1
    assert metric(text, "settle_ledger_batch_transfers_bucket", le="1.0") == 1
    assert metric(text, "settle_ledger_commit_seconds_count") == 1
    batch = [{"debit_account_id": bank["id"], "credit_account_id": wallet["id"], "amount": 1,
              "currency": "USD"}] * 3  # fmt: skip
    assert (await post(api, "/v1/transfers/batch", {"transfers": batch})).status_code == 200
    text = (await api.client.get("/metrics")).text
    assert metric(text, "settle_ledger_batch_transfers_count") == 2
    assert metric(text, "settle_ledger_batch_transfers_sum") == 4
    assert metric(text, "settle_ledger_batch_transfers_bucket", le="2.0") == 1
    assert metric(text, "settle_ledger_batch_transfers_bucket", le="4.0") == 2
