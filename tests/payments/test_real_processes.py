"""The whole platform as real processes on 127.0.0.1: ``settle serve`` (with its embedded
worker), two ``settle simulate processor`` processes that notify it, and a webhook receiver.

One merchant's day: an approval, a soft decline, a partial capture, a late answer resolved
without a second charge, a failover after a processor outage, a refund, webhooks retried
through a receiver outage, and a secret rotation. Every webhook is verified with the
``standardwebhooks`` library over the exact bytes received; the ledger verifies afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from api.server import ServerProcess, create_tenant_via_cli, free_port, run_cli, settle_command
from webhooks.receiver import Receiver

NOTIFY_SECRETS = {
    "sim_a": "whsec_" + base64.b64encode(b"sim-a-notification-key-000").decode(),
    "sim_b": "whsec_" + base64.b64encode(b"sim-b-notification-key-000").decode(),
}

pytestmark = pytest.mark.slow


class Simulator:
    def __init__(self, name: str, settle_port: int, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        args = settle_command(
            "simulate", "processor", "--port", str(self.port), "--name", name,
            "--latency-ms", "2", "--hang-seconds", "1.5", "--late-seconds", "1.5",
            "--notify-url", f"http://127.0.0.1:{settle_port}/v1/processor_notifications/{name}",
            "--notify-secret", NOTIFY_SECRETS[name],
        )  # fmt: skip
        self.log = (log_dir / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.base_url}/_control/faults", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, f"{name} exited"
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.1)

    def faults(self, **changes: Any) -> None:
        assert httpx.post(f"{self.base_url}/_control/faults", json=changes).status_code == 200

    def authorizations(self, reference: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.base_url}/v1/authorizations", params={"reference": reference})
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def platform(db_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    settle_port = free_port()
    receiver = Receiver().start()
    sims = {name: Simulator(name, settle_port, tmp_path) for name in ("sim_a", "sim_b")}
    env = {
        "SETTLE_PROCESSORS": ",".join(f"{n}={s.base_url}" for n, s in sims.items()),
        "SETTLE_PROCESSOR_SECRETS": ",".join(f"{n}={s}" for n, s in NOTIFY_SECRETS.items()),
        "SETTLE_PROCESSOR_TIMEOUT_SECONDS": "0.5",
        "SETTLE_RESOLVE_AFTER_SECONDS": "0.2",
        "SETTLE_WEBHOOK_ALLOW_PRIVATE": "1",
    }
    server = ServerProcess(db_url, log_dir=tmp_path / "serve", env=env)
    try:
        server.start(port=settle_port)
        tenant = create_tenant_via_cli(db_url, "merchant")
        yield {"server": server, "sims": sims, "receiver": receiver, "tenant": tenant}
    finally:
        server.close()
        for sim in sims.values():
            sim.stop()
        receiver.stop()


class Client:
    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=10)
        self.n = 0

    def post(self, path: str, body: Any = None) -> httpx.Response:
        self.n += 1
        return self.http.post(path, json=body, headers={"Idempotency-Key": f"k{self.n}"})

    def pay(self, amount: int, method: str = "pm_card_visa", capture: str = "automatic") -> str:
        response = self.post("/v1/payment_intents", {"amount": amount, "currency": "USD",
                             "payment_method": method, "capture_method": capture,
                             "confirm": True})  # fmt: skip
        assert response.status_code == 201, response.text
        intent_id: str = response.json()["id"]
        return intent_id

    def until(self, path: str, *statuses: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found: dict[str, Any] = self.http.get(path).json()
            if found.get("status") in statuses:
                return found
            assert time.monotonic() < deadline, f"{path} stuck at {found}"
            time.sleep(0.05)


def test_a_merchants_day_across_real_processes(platform: dict[str, Any], db_url: str) -> None:
    server = platform["server"]
    api = Client(server.base_url, platform["tenant"].headers)
    try:
        _merchants_day(api, platform, db_url)
    finally:
        api.http.close()


def _merchants_day(api: Client, platform: dict[str, Any], db_url: str) -> None:
    sims, receiver = platform["sims"], platform["receiver"]
    endpoint = api.post(
        "/v1/webhook_endpoints",
        {"url": receiver.url(), "enabled_events": ["payment_intent.*", "refund.*"]},
    )
    assert endpoint.status_code == 201, endpoint.text
    secret = endpoint.json()["secret"]

    # An approval, captured at once.
    paid = api.until(f"/v1/payment_intents/{api.pay(10_000)}", "succeeded")
    assert paid["amount_received"] == 10_000

    # A soft decline: nothing moves, another card may be tried.
    declined = api.until(
        f"/v1/payment_intents/{api.pay(2_000, 'pm_card_insufficientFunds')}",
        "requires_payment_method",
    )
    assert declined["last_payment_error"]["decline_code"] == "insufficient_funds"

    # Authorize, then capture part of it.
    manual = api.pay(8_000, capture="manual")
    api.until(f"/v1/payment_intents/{manual}", "requires_capture")
    assert api.post(
        f"/v1/payment_intents/{manual}/capture", {"amount_to_capture": 5_000}
    ).is_success
    captured = api.until(f"/v1/payment_intents/{manual}", "succeeded")
    assert captured["amount_received"] == 5_000

    # A late answer: the call times out, the outcome is resolved, one charge only.
    late = api.pay(3_000, "pm_card_lateSuccess")
    resolved = api.until(f"/v1/payment_intents/{late}", "succeeded")
    assert [a["outcome"] for a in resolved["attempts"]] == ["approved"]
    assert len(sims["sim_a"].authorizations(late)) == 1
    assert sims["sim_b"].authorizations(late) == []

    # sim_a is down: the payment fails over to sim_b.
    sims["sim_a"].faults(down=True)
    moved = api.until(f"/v1/payment_intents/{api.pay(4_000)}", "succeeded")
    sims["sim_a"].faults(down=False)
    assert [(a["processor"], a["outcome"]) for a in moved["attempts"]] == [
        ("sim_a", "not_processed"),
        ("sim_b", "approved"),
    ]

    # A partial refund of the first payment.
    refund = api.post("/v1/refunds", {"payment_intent": paid["id"], "amount": 2_500})
    assert refund.status_code == 201, refund.text
    assert api.until(f"/v1/refunds/{refund.json()['id']}", "succeeded")["amount"] == 2_500

    # The receiver goes down; the deliveries made meanwhile are retried once it is back.
    receiver.wait_for(1)
    receiver.stop()
    during = api.pay(1_000)
    api.until(f"/v1/payment_intents/{during}", "succeeded")
    time.sleep(0.5)  # the first attempts fail while it is down
    receiver.start()

    def delivered(intent_id: str, event: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(
            json.loads(r.body)["type"] == event and json.loads(r.body)["data"]["object"]["id"]
            == intent_id for r in receiver.requests
        ):  # fmt: skip
            assert time.monotonic() < deadline, f"{event} of {intent_id} never delivered"
            time.sleep(0.1)

    delivered(during, "payment_intent.succeeded")

    # Every delivery so far verifies with the endpoint's secret, over the exact bytes.
    for request in receiver.requests:
        Webhook(secret).verify(request.body, request.headers)

    # Rotation: during the overlap, both the old and the new secret verify a delivery.
    rotated = api.post(
        f"/v1/webhook_endpoints/{endpoint.json()['id']}/rotate_secret",
        {"expire_previous_in_seconds": 3600},
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    seen = len(receiver.requests)
    after = api.pay(1_200)
    api.until(f"/v1/payment_intents/{after}", "succeeded")
    delivered(after, "payment_intent.succeeded")
    for request in receiver.requests[seen:]:
        assert len(request.headers["webhook-signature"].split()) == 2
        Webhook(new_secret).verify(request.body, request.headers)
        Webhook(secret).verify(request.body, request.headers)

    # Each intent's events carry its version: the newest one says where it ended.
    newest: dict[str, dict[str, Any]] = {}
    for request in receiver.requests:
        event = json.loads(request.body)
        obj = event["data"]["object"]
        if obj["object"] != "payment_intent":
            continue
        assert event["sequence"] == obj["sequence"]
        if obj["id"] not in newest or obj["sequence"] > newest[obj["id"]]["sequence"]:
            newest[obj["id"]] = obj
    for intent_id in (paid["id"], manual, late, moved["id"], during, after):
        assert newest[intent_id]["status"] == "succeeded"
    assert newest[declined["id"]]["status"] == "requires_payment_method"

    verified = run_cli("ledger", "verify", "--json", database_url=db_url)
    assert verified.returncode == 0, verified
    assert os.environ.get("SETTLE_PROCESSORS") is None  # nothing leaked into this process
