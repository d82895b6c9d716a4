"""The runner: latency when started, timeouts and dropped connections, the URL guard before
every attempt, leases, deletion; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import event as sa_event

from settle.store.uow import SqlUnitOfWork
from settle.store.webhooks_repo import Claim, read_webhooks
from settle.webhooks.address import UrlGuard
from settle.webhooks.model import AttemptResult, NewEndpoint
from settle.webhooks.service import AttemptReport, create_endpoint
from settle.worker.webhooks import WebhookRunner, fan_out

from .receiver import Answer

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .receiver import Receiver
    from .support import Hooks


async def test_a_started_runner_sends_within_a_second_of_the_commit(
    hooks: Hooks, engine: sa.Engine, receiver: Receiver
) -> None:
    await hooks.create(receiver.url())
    runner = WebhookRunner(engine, hooks.clock, allow_private=True, timeout=2.0)
    runner.start()
    try:
        latencies = []
        for i in range(12):
            hooks.open_account(f"wallet-{i}")
            committed = time.monotonic()
            if i % 3:
                runner.wake()  # as the app does after a commit; every third one is polled
            arrived = receiver.wait_for(i + 1, timeout=2.0)[i].at
            latencies.append(arrived - committed)
    finally:
        runner.stop()
    assert max(latencies) < 1.0, latencies


async def test_a_slow_or_vanishing_receiver_is_a_failed_attempt(
    hooks: Hooks, engine: sa.Engine, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url())
    runner = WebhookRunner(engine, hooks.clock, allow_private=True, timeout=0.3, rng=lambda: 0.5)
    try:
        receiver.answer(Answer(delay=1.0), Answer(drop=True))
        hooks.open_account("wallet")
        started = time.monotonic()
        assert runner.run_once() == 1
        assert time.monotonic() - started < 0.9
        hooks.clock.advance(6)
        assert runner.run_once() == 1
    finally:
        runner.stop()
    (delivery,) = await hooks.deliveries(endpoint["id"])
    slow, dropped = delivery["attempts"]
    assert (slow["result"], slow["status_code"], slow["error"]) == (
        "timeout", None, "ReadTimeout: timed out",
    )  # fmt: skip
    assert 300 <= slow["duration_ms"] < 900
    assert (dropped["result"], dropped["status_code"]) == ("network_error", None)
    assert dropped["error"].startswith("RemoteProtocolError")
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 2)


async def test_the_guard_checks_every_attempt_and_the_attempt_goes_where_it_checked(
    hooks: Hooks, engine: sa.Engine, receiver: Receiver
) -> None:
    url = f"http://hooks.example:{receiver.port}/in"
    public = UrlGuard(lambda _host, _port: ["93.184.215.14"])
    endpoint = create_endpoint(
        SqlUnitOfWork(engine, hooks.clock),
        NewEndpoint(tenant_id=hooks.tenant.id, url=url, enabled_events=["*"]),
        public.check(url),
    )
    hooks.open_account("wallet")

    rebound = WebhookRunner(engine, hooks.clock, resolver=lambda _host, _port: ["10.0.0.7"])
    try:
        assert rebound.run_once() == 1
    finally:
        rebound.stop()
    assert receiver.requests == []
    (delivery,) = await hooks.deliveries(str(endpoint.id))
    (refused,) = delivery["attempts"]
    assert refused["result"] == "refused"
    assert refused["error"] == (
        "webhook_address_not_allowed: hooks.example resolves to a private address;"
        " webhooks go to public addresses"
    )
    assert delivery["status"] == "pending"

    asked: list[tuple[str, int]] = []

    def loopback(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    hooks.clock.advance(6)
    pinned = WebhookRunner(engine, hooks.clock, allow_private=True, resolver=loopback)
    try:
        assert pinned.run_once() == 1
    finally:
        pinned.stop()
    (request,) = receiver.wait_for(1)
    assert asked == [("hooks.example", receiver.port)]  # resolved once: by the guard
    assert request.headers["host"] == f"hooks.example:{receiver.port}"
    assert request.path == "/in"


async def test_a_lease_that_ran_out_is_claimed_again(
    hooks: Hooks, engine: sa.Engine, runner: WebhookRunner, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url())
    hooks.open_account("wallet")
    runner.run_once()  # fans out, delivers
    (delivery,) = await hooks.deliveries(endpoint["id"])
    retried = await hooks.request(
        "POST", f"/v1/webhook_endpoints/{endpoint['id']}/deliveries/{delivery['id']}/retry"
    )
    assert retried.status_code == 200
    now = hooks.clock()
    with SqlUnitOfWork(engine, hooks.clock) as uow:  # a worker claims it, then dies
        (claim,) = uow.webhooks.claim_due(now, 10, "dead-worker", now + 70_000_000)
        uow.commit()
    assert isinstance(claim, Claim)
    assert str(claim.delivery.id) == retried.json()["id"]

    assert runner.run_once() == 0  # leased
    hooks.clock.advance(71)
    assert runner.run_once() == 1
    (delivery,) = await hooks.deliveries(endpoint["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 2)
    assert len(receiver.wait_for(2)) == 2


async def test_two_claimers_never_share_a_delivery(hooks: Hooks, engine: sa.Engine) -> None:
    endpoint = await hooks.create("http://127.0.0.1:9/hooks")
    for i in range(3):
        hooks.open_account(f"wallet-{i}")
    fan_out(engine, hooks.clock)
    now = hooks.clock()
    second: list[Claim] = []
    with SqlUnitOfWork(engine, hooks.clock) as first:
        claimed = first.webhooks.claim_due(now, 10, "first", now + 60_000_000)

        def claim_too() -> None:  # PostgreSQL skips the locked rows; SQLite waits its turn
            with SqlUnitOfWork(engine, hooks.clock) as other:
                second.extend(other.webhooks.claim_due(now, 10, "second", now + 60_000_000))
                other.commit()

        thread = threading.Thread(target=claim_too)
        thread.start()
        time.sleep(0.2)
        first.commit()
    thread.join()
    assert [c.delivery.event_seq for c in claimed] == [1, 2, 3]
    assert second == []
    with read_webhooks(engine) as repo:
        page = repo.list_deliveries(hooks.tenant.id, claimed[0].endpoint.id, limit=10)
    assert {d.lease_owner for d, _ in page.data} == {"first"}
    assert str(claimed[0].endpoint.id) == endpoint["id"]


async def test_a_deleted_endpoint_gets_nothing_more(
    hooks: Hooks, engine: sa.Engine, runner: WebhookRunner, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url())
    receiver.answer(Answer(500))
    hooks.open_account("wallet")
    assert runner.run_once() == 1
    deleted = await hooks.request("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}")
    assert deleted.json() == {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}

    hooks.clock.advance(3600)
    hooks.open_account("bank")
    assert runner.run_once() == 0
    assert len(receiver.requests) == 1
    with read_webhooks(engine) as repo:
        page = repo.list_deliveries(hooks.tenant.id, uuid.UUID(endpoint["id"]), limit=10)
    assert [(d.status.value, d.attempts, d.next_attempt_at) for d, _ in page.data] == [
        ("cancelled", 1, None)
    ]


def _commits(engine: sa.Engine) -> list[int]:
    count = [0]

    def counted(_conn: object) -> None:
        count[0] += 1

    sa_event.listen(engine, "commit", counted)
    return count


async def test_a_round_of_attempts_is_recorded_in_one_transaction(
    hooks: Hooks, engine: sa.Engine, runner: WebhookRunner, receiver: Receiver
) -> None:
    first = await hooks.create(receiver.url("/a"))
    second = await hooks.create(receiver.url("/b"))
    receiver.answer(*[Answer(200)] * 6, *[Answer(500)] * 6)
    for i in range(6):
        hooks.open_account(f"wallet-{i}")
    fan_out(engine, hooks.clock)
    commits = _commits(engine)

    assert runner.run_once() == 12
    assert commits[0] == 2  # the claim, and every attempt with what follows from it
    deliveries = [*await hooks.deliveries(first["id"]), *await hooks.deliveries(second["id"])]
    assert len(deliveries) == 12
    assert sorted(d["status"] for d in deliveries) == ["pending"] * 6 + ["succeeded"] * 6
    assert all(d["attempt_count"] == 1 and len(d["attempts"]) == 1 for d in deliveries)


async def test_a_report_that_cannot_be_recorded_does_not_lose_the_others(
    hooks: Hooks, engine: sa.Engine, receiver: Receiver
) -> None:
    endpoint = await hooks.create(receiver.url())
    for i in range(3):
        hooks.open_account(f"wallet-{i}")
    fan_out(engine, hooks.clock)
    runner = WebhookRunner(engine, hooks.clock, allow_private=True, timeout=2.0)
    runner.start()
    try:
        receiver.wait_for(3)
        deadline = time.monotonic() + 10
        while True:
            found = await hooks.deliveries(endpoint["id"])
            if all(d["status"] == "succeeded" for d in found) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert [d["status"] for d in found] == ["succeeded"] * 3
        # A report of a delivery that does not exist fails its batch; the others in it are
        # recorded one by one.
        hooks.open_account("wallet-3")
        fan_out(engine, hooks.clock)
        now = hooks.clock()
        with SqlUnitOfWork(engine, hooks.clock) as uow:
            (claim,) = uow.webhooks.claim_due(now, 10, runner.owner, now + 70_000_000)
            uow.commit()
        ghost = AttemptReport(
            hooks.tenant.id, uuid.uuid4(), claim.endpoint.id, runner.owner, now,
            AttemptResult.SUCCEEDED, status_code=200,
        )  # fmt: skip
        real = AttemptReport(
            hooks.tenant.id, claim.delivery.id, claim.endpoint.id, runner.owner, now,
            AttemptResult.SUCCEEDED, status_code=200,
        )  # fmt: skip
        runner._record([ghost, real])
        by_id = {d["id"]: d for d in await hooks.deliveries(endpoint["id"])}
        assert by_id[str(claim.delivery.id)]["status"] == "succeeded"
        assert len(by_id) == 4
    finally:
        runner.stop()
