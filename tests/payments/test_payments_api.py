"""The payments API's refusals, tenancy, scopes, dead jobs and processor notifications."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from settle.jobs.model import NewJob
from settle.simulator.notifier import sign_notification
from settle.store.jobs_repo import SqlJobQueue, claim_jobs, fail_job

from .support import NOTIFY_SECRET, Shop, make_tenant

if TYPE_CHECKING:
    from settle.simulator import SimulatorThread

VISA = {"amount": 1_000, "currency": "USD", "payment_method": "pm_card_visa"}


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


async def intents_count(shop: Shop) -> int:
    listed = await shop.client.get(
        "/v1/payment_intents", params={"limit": 100}, headers=shop.tenant.headers
    )
    return len(listed.json()["data"])


async def test_refused_payments_store_nothing(shop: Shop) -> None:
    for change, code in (({"amount": 10.5}, "invalid_amount"), ({"amount": 0}, "invalid_amount"),
                         ({"amount": "10"}, "invalid_amount"),
                         ({"currency": "XXY"}, "unknown_currency")):  # fmt: skip
        problem(await shop.post("/v1/payment_intents", {**VISA, **change}), 400, code)
    body = problem(
        await shop.post("/v1/payment_intents", {**VISA, "payment_method": "4111111111111111"}),
        422,
        "invalid_payment_method",
    )
    assert "4111" not in body["detail"]
    problem(
        await shop.post("/v1/payment_intents", {"amount": 5, "currency": "USD", "confirm": True}),
        422,
        "invalid_payment",
    )
    assert await intents_count(shop) == 0


async def test_a_test_card_is_refused_with_a_live_key(shop: Shop, db_url: str) -> None:
    from settle.security import issue_api_key
    from settle.security.keys import KeyMode
    from settle.store.db import create_db_engine
    from settle.store.uow import SqlUnitOfWork

    engine = create_db_engine(db_url)
    try:
        _key, secret = issue_api_key(
            SqlUnitOfWork(engine), shop.tenant.id, ["admin"], mode=KeyMode.LIVE
        )
    finally:
        engine.dispose()
    response = await shop.client.post(
        "/v1/payment_intents",
        json=VISA,
        headers={"Authorization": f"Bearer {secret.reveal()}", "Idempotency-Key": "live-1"},
    )
    problem(response, 422, "invalid_payment_method")
    assert await intents_count(shop) == 0


async def test_state_rules_answer_409_and_422(shop: Shop, sim_a: SimulatorThread) -> None:
    paid = await shop.until_status((await shop.pay(1_000))["id"], "succeeded")
    problem(await shop.post(f"/v1/payment_intents/{paid['id']}/capture"), 409,
            "payment_intent_unexpected_state")  # fmt: skip
    problem(await shop.post(f"/v1/payment_intents/{paid['id']}/cancel"), 409,
            "payment_intent_unexpected_state")  # fmt: skip
    problem(await shop.post(f"/v1/payment_intents/{paid['id']}/confirm"), 409,
            "payment_intent_unexpected_state")  # fmt: skip

    held = await shop.until_status(
        (await shop.pay(2_000, capture_method="manual"))["id"], "requires_capture"
    )
    problem(
        await shop.post(f"/v1/payment_intents/{held['id']}/capture", {"amount_to_capture": 2_001}),
        422,
        "amount_exceeds_capturable",
    )
    assert (await shop.intent(held["id"]))["status"] == "requires_capture"

    unconfirmed = await shop.pay(3_000, confirm=False)
    assert unconfirmed["status"] == "requires_confirmation"
    problem(await shop.post("/v1/refunds", {"payment_intent": unconfirmed["id"]}), 409,
            "payment_intent_unexpected_state")  # fmt: skip
    canceled = await shop.post(f"/v1/payment_intents/{unconfirmed['id']}/cancel")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["sequence"] == 2


async def test_another_tenants_payments_answer_404(shop: Shop, db_url: str,
                                                   sim_a: SimulatorThread) -> None:  # fmt: skip
    paid = await shop.until_status((await shop.pay(1_000))["id"], "succeeded")
    refund = (await shop.post("/v1/refunds", {"payment_intent": paid["id"], "amount": 100})).json()
    other = make_tenant(db_url, "other", ["admin"]).headers
    key = {"Idempotency-Key": uuid.uuid4().hex}
    c = shop.client
    problem(await c.get(f"/v1/payment_intents/{paid['id']}", headers=other), 404,
            "payment_intent_not_found")  # fmt: skip
    for action in ("capture", "cancel", "confirm"):
        path = f"/v1/payment_intents/{paid['id']}/{action}"
        r = await c.post(path, headers={**other, **key})
        problem(r, 404, "payment_intent_not_found")
    problem(await c.post("/v1/refunds", json={"payment_intent": paid["id"]},
                         headers={**other, **key}), 404, "payment_intent_not_found")  # fmt: skip
    problem(await c.get(f"/v1/refunds/{refund['id']}", headers=other), 404, "refund_not_found")
    listed = await c.get("/v1/payment_intents", headers=other)
    assert listed.json() == {"data": [], "has_more": False}
    assert (await shop.intent(paid["id"]))["amount_refunded"] == 100


async def test_payments_need_their_scopes(shop: Shop, db_url: str) -> None:
    reader = make_tenant(db_url, "reader", ["ledger:read", "payments:read"]).headers
    r = await shop.client.post(
        "/v1/payment_intents", json=VISA, headers={**reader, "Idempotency-Key": "s1"}
    )
    problem(r, 403, "insufficient_scope")
    assert (await shop.client.get("/v1/payment_intents", headers=reader)).status_code == 200
    ledger_only = make_tenant(db_url, "ledger", ["ledger:read", "ledger:write"]).headers
    problem(await shop.client.get("/v1/payment_intents", headers=ledger_only), 403,
            "insufficient_scope")  # fmt: skip
    problem(await shop.client.get("/v1/jobs", headers=reader), 403, "insufficient_scope")


async def test_a_dead_job_is_listed_and_retried_by_an_operator(shop: Shop, db_url: str) -> None:
    engine = shop.state.store.db
    now = shop.state.clock()
    with engine.begin() as conn:
        job_id = SqlJobQueue(conn).enqueue(
            NewJob(
                shop.tenant.id, "payments.refund", {"refund_id": str(uuid.uuid4())}, now, None, 1
            ),
            now=now,
        )
    [job] = claim_jobs(engine, worker_id="w", now=now, lease_us=10**6, limit=5)
    fail_job(engine, job, "builtins.TimeoutError", now=now, retry_at=now)

    dead = await shop.client.get("/v1/jobs", params={"status": "dead"}, headers=shop.tenant.headers)
    assert [(j["id"], j["status"], j["last_error"]) for j in dead.json()["data"]] == [
        (str(job_id), "dead", "builtins.TimeoutError")
    ]
    other = make_tenant(db_url, "other", ["admin"]).headers
    problem(await shop.client.get(f"/v1/jobs/{job_id}", headers=other), 404, "job_not_found")

    retried = await shop.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("queued", 0)
    problem(await shop.post(f"/v1/jobs/{job_id}/retry"), 409, "job_not_retryable")
    assert await shop.work() == 1  # the refund it names does not exist: nothing to do
    done = await shop.client.get(f"/v1/jobs/{job_id}", headers=shop.tenant.headers)
    assert done.json()["status"] == "succeeded"


def signed(body: dict[str, Any], secret: str = NOTIFY_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    msg_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    return raw, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_notification(secret, msg_id, stamp, raw),
        "content-type": "application/json",
    }


async def test_a_signed_notification_settles_an_unknown_outcome(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    created = await shop.pay(4_000, "pm_card_lateSuccess")
    await shop.work()  # the call times out: unknown, the job waits before asking
    [attempt] = (await shop.intent(created["id"]))["attempts"]
    assert attempt["outcome"] == "unknown"
    [auth] = httpx.get(
        f"{sim_a.base_url}/v1/authorizations", params={"reference": created["id"]}
    ).json()["data"]
    note = {"type": "authorization.captured", "processor": "sim_a",
            "idempotency_key": auth["idempotency_key"], "data": auth}  # fmt: skip

    forged, headers = signed(note, "whsec_" + "QUJDREVGR0hJSktMTU5PUA==")
    r = await shop.client.post("/v1/processor_notifications/sim_a", content=forged, headers=headers)
    problem(r, 401, "invalid_signature")
    raw, headers = signed(note)
    r = await shop.client.post("/v1/processor_notifications/sim_b", content=raw, headers=headers)
    problem(r, 401, "invalid_signature")  # no secret for sim_b: nothing is trusted
    assert (await shop.intent(created["id"]))["status"] == "processing"

    r = await shop.client.post("/v1/processor_notifications/sim_a", content=raw, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": True, "applied": True}
    paid = await shop.intent(created["id"])
    assert paid["status"] == "succeeded"
    assert paid["processor_reference"] == auth["id"]
    again = await shop.client.post(
        "/v1/processor_notifications/sim_a", content=raw, headers=headers
    )
    assert again.json() == {"received": True, "applied": False}  # settled once
