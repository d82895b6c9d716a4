"""Random interleavings of client retries, processor faults and worker crashes.

Whatever happens, once the faults stop and the worker catches up: every intent ends in one
state that agrees with the processors' own records, no processor holds two charges for one
intent (nor for one attempt key), refunds never exceed what was captured and agree with the
processor's refunds, and the ledger verifies and matches the payments to the minor unit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from settle.api import Settings, create_app
from settle.jobs.model import Job
from settle.payments.service import JOB_AUTHORIZE
from settle.simulator import SimulatorConfig, SimulatorThread
from settle.store.jobs_repo import claim_jobs
from settle.store.ledger_verify import verify_ledger
from settle.worker.settings import PaymentSettings

from .support import fee, make_tenant

CARDS = ["pm_card_visa", "pm_card_visa", "pm_card_insufficientFunds", "pm_card_stolen",
         "pm_card_lateSuccess", "pm_card_processingError"]  # fmt: skip
SECOND = 1_000_000

pytestmark = pytest.mark.slow

create = st.tuples(
    st.just("create"),
    st.sampled_from(CARDS),
    st.sampled_from(["automatic", "manual"]),
    st.integers(100, 20_000),
)
capture = st.tuples(st.just("capture"), st.integers(0, 20), st.integers(1, 100))
cancel = st.tuples(st.just("cancel"), st.integers(0, 20))
refund = st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 100))
retry = st.tuples(st.just("retry"), st.integers(0, 40))
fault = st.tuples(st.just("fault"), st.sampled_from(["sim_a", "sim_b"]),
                  st.sampled_from(["down", "flaky", "fine"]))  # fmt: skip
crash = st.tuples(st.just("crash"))
crash_after_send = st.tuples(st.just("crash_after_send"), st.integers(0, 20))
work = st.tuples(st.just("work"))
operations = st.lists(
    st.one_of(
        create, create, capture, cancel, refund, retry, fault, crash, crash_after_send, work, work
    ),
    min_size=4,
    max_size=18,
)


class SyncClient:
    """The app over ``httpx.ASGITransport``, called from synchronous code on a loop of its own."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://settle.test"
        )

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.post(path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.get(path, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


class SteppingClock:
    """The system clock, plus however far the drain has jumped it (past backoffs)."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000 + self.offset


class Platform:
    def __init__(self, db_url: str) -> None:
        self.clock = SteppingClock()
        self.sims = {
            name: SimulatorThread(
                SimulatorConfig(name=name, latency_ms=0, hang_seconds=0.4, late_seconds=0.4)
            ).start()
            for name in ("sim_a", "sim_b")
        }
        payments = PaymentSettings(
            processors=",".join(f"{n}={s.base_url}" for n, s in self.sims.items()),
            processor_timeout_seconds=0.2,
            embedded_worker=False,
            worker_concurrency=4,
            resolve_after_seconds=0.05,
        )
        self.app = create_app(
            Settings(
                database_url=db_url,
                maintenance_seconds=0,
                payments=payments,
                webhook_delivery=False,
            ),
            clock=self.clock,
        )
        self.client = SyncClient(self.app)
        self.db_url = db_url

    @property
    def state(self) -> Any:
        return self.app.state.settle

    def close(self) -> None:
        self.client.close()
        self.state.close()
        for sim in self.sims.values():
            sim.stop()

    def faults(self, name: str, **changes: Any) -> None:
        r = httpx.post(f"{self.sims[name].base_url}/_control/faults", json=changes)
        assert r.status_code == 200

    def records(self, path: str, **params: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for sim in self.sims.values():
            data = httpx.get(f"{sim.base_url}{path}", params=params).json()["data"]
            found.extend({**d, "processor": sim.app.state.simulator.config.name} for d in data)
        return found


@pytest.fixture
def platform(db_url: str) -> Iterator[Platform]:
    p = Platform(db_url)
    yield p
    p.close()


def _send_and_die(p: Platform, tenant_id: uuid.UUID, intent_id: str) -> None:
    """A worker records an authorization attempt and sends it, then dies before recording the
    answer: the processor may hold a charge that Settle has not heard of yet."""
    authorizations = p.state.payments.authorizations
    job = Job(uuid.uuid4(), tenant_id, JOB_AUTHORIZE, {"intent_id": intent_id}, 1, 12, "crashed")
    steps = authorizations._authorization_steps([job], {})
    if steps and not steps[0].ask:
        authorizations._call(steps[0])  # sent; the answer is never recorded


def _run(
    p: Platform, tenant_id: uuid.UUID, headers: dict[str, str], ops: list[tuple[Any, ...]]
) -> list[str]:
    intents: list[str] = []
    sent: list[tuple[str, Any, str]] = []  # (path, body, idempotency key): for client retries

    def post(path: str, body: Any, key: str | None = None) -> httpx.Response:
        key = key or uuid.uuid4().hex
        sent.append((path, body, key))
        return p.client.post(path, json=body, headers={**headers, "Idempotency-Key": key})

    for op in ops:
        kind = op[0]
        if kind == "create":
            body = {"amount": op[3], "currency": "USD", "payment_method": op[1],
                    "capture_method": op[2], "confirm": True}  # fmt: skip
            r = post("/v1/payment_intents", body)
            assert r.status_code == 201, r.text
            intents.append(r.json()["id"])
        elif kind in ("capture", "cancel", "refund") and intents:
            intent_id = intents[op[1] % len(intents)]
            if kind == "capture":
                got = p.client.get(f"/v1/payment_intents/{intent_id}", headers=headers).json()
                amount = max(1, got["amount"] * op[2] // 100)
                r = post(f"/v1/payment_intents/{intent_id}/capture", {"amount_to_capture": amount})
            elif kind == "cancel":
                r = post(f"/v1/payment_intents/{intent_id}/cancel", None)
            else:
                got = p.client.get(f"/v1/payment_intents/{intent_id}", headers=headers).json()
                amount = max(1, got["amount"] * op[2] // 200)
                r = post("/v1/refunds", {"payment_intent": intent_id, "amount": amount})
            assert r.status_code < 500, r.text
        elif kind == "retry" and sent:
            path, body, key = sent[op[1] % len(sent)]
            r = p.client.post(path, json=body, headers={**headers, "Idempotency-Key": key})
            assert r.status_code < 500, r.text
        elif kind == "fault":
            p.faults(op[1], down=op[2] == "down", failure_rate=0.5 if op[2] == "flaky" else 0.0)
        elif kind == "crash":
            # A worker claims what is due and dies: its leases lapse before anyone runs them.
            claim_jobs(p.state.store.db, worker_id="crashed", now=p.state.clock(),
                       lease_us=SECOND // 5, limit=10)  # fmt: skip
        elif kind == "crash_after_send" and intents:
            _send_and_die(p, tenant_id, intents[op[1] % len(intents)])
        elif kind == "work":
            p.state.jobs.run_once()
    return intents


def _drain(p: Platform, headers: dict[str, str], intents: list[str]) -> None:
    for name in p.sims:
        p.faults(name, down=False, failure_rate=0.0)
    deadline = time.monotonic() + 30
    while True:
        ran = p.state.jobs.run_once(limit=50)
        busy = [
            i for i in intents
            if p.client.get(f"/v1/payment_intents/{i}", headers=headers).json()["status"]
            == "processing"
        ]  # fmt: skip
        pending = p.client.get("/v1/refunds", params={"limit": 100}, headers=headers).json()
        if not ran and not busy and all(r["status"] != "pending" for r in pending["data"]):
            return
        assert time.monotonic() < deadline, f"not settled: {busy} {pending}"
        if not ran:
            # Jobs that failed during the faults wait out their backoff: jump past it.
            p.clock.offset += 120 * SECOND
            time.sleep(0.05)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_any_interleaving_settles_consistently(platform: Platform, ops: list[Any]) -> None:
    tenant = make_tenant(platform.db_url, f"shop-{uuid.uuid4().hex[:6]}", ["admin"])
    headers = tenant.headers
    intents = _run(platform, tenant.id, headers, ops)
    _drain(platform, headers, intents)

    received = fees = refunded_total = 0
    clearing: dict[str, int] = {"sim_a": 0, "sim_b": 0}
    held: dict[str, int] = {"sim_a": 0, "sim_b": 0}  # authorized, not yet captured
    for intent_id in intents:
        intent = platform.client.get(f"/v1/payment_intents/{intent_id}", headers=headers).json()
        auths = platform.records("/v1/authorizations", reference=intent_id)
        live = [a for a in auths if a["status"] != "declined"]
        # One charge at most per intent, and per attempt key.
        assert len(live) <= 1, auths
        keys = [a["idempotency_key"] for a in auths]
        assert len(keys) == len(set(keys))
        status = intent["status"]
        if status == "succeeded":
            [auth] = live
            assert auth["status"] == "captured"
            assert auth["captured_amount"] == intent["amount_received"]
            assert auth["processor"] == intent["processor"]
            assert intent["fee"] == fee(intent["amount_received"])
            refunds = platform.client.get(
                "/v1/refunds", params={"payment_intent": intent_id, "limit": 100}, headers=headers
            ).json()["data"]
            done = [r for r in refunds if r["status"] == "succeeded"]
            assert intent["amount_refunded"] == sum(r["amount"] for r in done)
            assert intent["amount_refunded"] <= intent["amount_received"]
            at_processor = platform.records("/v1/refunds", authorization=auth["id"])
            assert sorted(r["amount"] for r in at_processor) == sorted(r["amount"] for r in done)
            received += intent["amount_received"]
            fees += intent["fee"]
            refunded_total += intent["amount_refunded"]
            clearing[auth["processor"]] += intent["amount_received"] - intent["amount_refunded"]
        elif status == "requires_capture":
            [auth] = live
            assert auth["status"] == "authorized"
            assert intent["amount_capturable"] == auth["amount"]
            held[auth["processor"]] += auth["amount"]
        elif status == "canceled":
            assert all(a["status"] == "voided" for a in live)
        else:
            assert status in ("requires_payment_method", "failed"), intent
            assert live == []

    def posted(code: str) -> int:
        with platform.state.store.read() as repo:
            account = repo.get_account_by_code(tenant.id, code)
        if account is None:
            return 0
        net = account.balances.credits_posted - account.balances.debits_posted
        return int(-net if account.normal_side.value == "debit" else net)

    def pending_debits(code: str) -> int:
        with platform.state.store.read() as repo:
            account = repo.get_account_by_code(tenant.id, code)
        return 0 if account is None else int(account.balances.debits_pending)

    assert posted("payments:merchant:USD") == received - fees - refunded_total
    assert posted("payments:fees:USD") == fees
    for name, expected in clearing.items():
        assert posted(f"payments:clearing:{name}:USD") == expected
        assert pending_debits(f"payments:clearing:{name}:USD") == held[name]
    assert pending_debits("payments:merchant:USD") == 0  # no refund is left pending
    report = verify_ledger(platform.state.store.db, tenant.id)
    assert report.ok, report.problems
