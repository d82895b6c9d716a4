"""``/v1/webhook_endpoints`` over HTTP: create, list, read, change, delete, rotate; deliveries
and retries; validation problems, the URL guard, tenancy and scopes; on SQLite and
PostgreSQL. The app here refuses private and loopback addresses (the default)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from pydantic import BaseModel

from settle.api import Settings, create_app
from settle.api.webhook_schemas import (
    WebhookDeliveriesPublic,
    WebhookDeliveryPublic,
    WebhookEndpointPublic,
    WebhookEndpointsPublic,
    WebhookEndpointWithSecretPublic,
)
from settle.worker.webhooks import fan_out

if TYPE_CHECKING:
    import httpx

    from .conftest import SteppingClock
    from .support import Hooks

M = TypeVar("M", bound=BaseModel)
URL = "https://93.184.215.14/hooks"  # a public address, written as one: no DNS needed


@pytest.fixture
def app(db_url: str, clock: SteppingClock) -> Iterator[Any]:
    application = create_app(
        Settings(database_url=db_url, maintenance_seconds=0, webhook_delivery=False),
        clock=clock,
    )
    yield application
    application.state.settle.close()


def conforms(model: type[M], response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The body is valid for ``model`` and says nothing the model would not say itself."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert model.model_validate_json(response.content).model_dump(mode="json") == response.json()
    body: dict[str, Any] = response.json()
    return body


def problem(response: httpx.Response, status: int, code: str, param: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body.get("param")) == (code, param), body


async def test_create_shows_the_secret_once_and_reads_never_do(hooks: Hooks) -> None:
    created = conforms(
        WebhookEndpointWithSecretPublic,
        await hooks.request(
            "POST", "/v1/webhook_endpoints",
            {"url": URL, "enabled_events": ["account.*", "transfer.posted", "account.*"],
             "description": "books", "metadata": {"team": "finance"}},
        ),
        201,
    )  # fmt: skip
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert created == {
        "id": created["id"], "object": "webhook_endpoint", "url": URL,
        "enabled_events": ["account.*", "transfer.posted"], "description": "books",
        "enabled": True, "disabled_reason": None, "metadata": {"team": "finance"},
        "previous_secret_expires_at": None, "created_at": created["created_at"],
        "updated_at": created["created_at"],
    }  # fmt: skip
    read = conforms(WebhookEndpointPublic, await hooks.request(
        "GET", f"/v1/webhook_endpoints/{created['id']}"))  # fmt: skip
    assert read == created
    listed = conforms(WebhookEndpointsPublic, await hooks.request("GET", "/v1/webhook_endpoints"))
    assert listed == {"data": [created], "has_more": False}


async def test_a_retried_create_replays_the_first_answer(hooks: Hooks) -> None:
    body = {"url": URL, "enabled_events": ["*"]}
    key = {"Idempotency-Key": "create-hooks-1"}
    first = await hooks.request("POST", "/v1/webhook_endpoints", body, headers=key)
    again = await hooks.request("POST", "/v1/webhook_endpoints", body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    other = await hooks.request("POST", "/v1/webhook_endpoints", {**body, "description": "x"},
                                headers=key)  # fmt: skip
    problem(other, 422, "idempotency_key_reused", "Idempotency-Key")
    listed = await hooks.request("GET", "/v1/webhook_endpoints")
    assert [e["id"] for e in listed.json()["data"]] == [first.json()["id"]]


MALFORMED = [
    ({"enabled_events": ["*"]}, "url"),
    ({"url": "ftp://93.184.215.14/", "enabled_events": ["*"]}, "url"),
    ({"url": URL, "enabled_events": []}, "enabled_events"),
    ({"url": URL, "enabled_events": ["account.created", "Account.Created"]}, "enabled_events[1]"),
    ({"url": URL, "enabled_events": ["account.*.created"]}, "enabled_events[0]"),
    ({"url": URL, "enabled_events": "*"}, "enabled_events"),
    ({"url": URL, "enabled_events": ["*"], "enabled": "yes"}, "enabled"),
    ({"url": URL, "enabled_events": ["*"], "metadata": {"n": 1}}, "metadata.n"),
    ({"url": URL, "enabled_events": ["*"], "secret": "whsec_AAAA"}, "secret"),
]
REFUSED = [
    ("https://user:pw@93.184.215.14/", "invalid_webhook_url"),
    ("http://localhost:8080/hooks", "webhook_address_not_allowed"),
    ("http://127.0.0.1/hooks", "webhook_address_not_allowed"),
    ("http://[::1]/hooks", "webhook_address_not_allowed"),
    ("http://10.1.2.3/hooks", "webhook_address_not_allowed"),
    ("http://169.254.169.254/latest/meta-data", "webhook_address_not_allowed"),
    ("http://0.0.0.0:80/", "webhook_address_not_allowed"),
]


async def test_malformed_endpoints_are_400_and_refused_urls_422_and_nothing_is_made(
    hooks: Hooks,
) -> None:
    for body, param in MALFORMED:
        response = await hooks.request("POST", "/v1/webhook_endpoints", body)
        problem(response, 400, "invalid_request", param)
    for url, code in REFUSED:
        response = await hooks.request(
            "POST", "/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"]}
        )
        problem(response, 422, code, "url")
    assert (await hooks.request("GET", "/v1/webhook_endpoints")).json()["data"] == []


async def test_endpoints_list_in_id_order_a_page_at_a_time(hooks: Hooks) -> None:
    ids = sorted([(await hooks.create(URL))["id"] for _ in range(3)], key=uuid.UUID)

    async def page(**params: Any) -> tuple[list[str], bool]:
        body = (await hooks.request("GET", "/v1/webhook_endpoints", params=params)).json()
        return [e["id"] for e in body["data"]], body["has_more"]

    assert await page(limit=2) == (ids[:2], True)
    assert await page(limit=2, starting_after=ids[1]) == (ids[2:], False)
    assert await page(limit=2, ending_before=ids[2]) == (ids[:2], False)
    assert await page(limit=1, ending_before=ids[2]) == (ids[1:2], True)
    assert await page(starting_after=ids[0], ending_before=ids[2]) == (ids[1:2], False)
    problem(await hooks.request("GET", "/v1/webhook_endpoints", params={"limit": 101}), 400,
            "invalid_request", "limit")  # fmt: skip
    problem(await hooks.request("GET", "/v1/webhook_endpoints", params={"status": "x"}), 400,
            "invalid_request", "status")  # fmt: skip


async def test_patch_changes_fields_and_disabling_and_enabling(hooks: Hooks) -> None:
    created = await hooks.create(URL)
    path = f"/v1/webhook_endpoints/{created['id']}"
    hooks.clock.advance(1)
    changed = conforms(WebhookEndpointPublic, await hooks.request("PATCH", path, {
        "url": "https://93.184.215.15/v2", "enabled_events": ["transfer.*"],
        "description": "v2", "metadata": {"v": "2"}}))  # fmt: skip
    assert (
        changed["url"],
        changed["enabled_events"],
        changed["description"],
        changed["metadata"],
    ) == ("https://93.184.215.15/v2", ["transfer.*"], "v2", {"v": "2"})
    assert changed["updated_at"] > changed["created_at"] == created["created_at"]

    off = (await hooks.request("PATCH", path, {"enabled": False})).json()
    assert (off["enabled"], off["disabled_reason"], off["url"]) == (False, "manual",
                                                                    changed["url"])  # fmt: skip
    on = (await hooks.request("PATCH", path, {"enabled": True})).json()
    assert (on["enabled"], on["disabled_reason"]) == (True, None)

    problem(await hooks.request("PATCH", path, {"url": "http://10.0.0.1/"}), 422,
            "webhook_address_not_allowed", "url")  # fmt: skip
    problem(await hooks.request("PATCH", path, {"enabled_events": []}), 400, "invalid_request",
            "enabled_events")  # fmt: skip
    assert (await hooks.endpoint(created["id"]))["url"] == "https://93.184.215.15/v2"
    problem(await hooks.request("PATCH", f"/v1/webhook_endpoints/{uuid.uuid4()}", {}), 404,
            "webhook_endpoint_not_found", "endpoint_id")  # fmt: skip


async def test_a_deleted_endpoint_is_gone_from_every_route(hooks: Hooks) -> None:
    kept, doomed = await hooks.create(URL), await hooks.create(URL)
    path = f"/v1/webhook_endpoints/{doomed['id']}"
    deleted = await hooks.request("DELETE", path)
    assert deleted.status_code == 200
    assert deleted.json() == {"id": doomed["id"], "object": "webhook_endpoint", "deleted": True}
    listed = (await hooks.request("GET", "/v1/webhook_endpoints")).json()["data"]
    assert [e["id"] for e in listed] == [kept["id"]]
    for method, suffix in (("GET", ""), ("DELETE", ""), ("PATCH", ""), ("GET", "/deliveries"),
                           ("POST", "/rotate_secret")):  # fmt: skip
        body = {} if method in ("PATCH", "POST") else None
        problem(await hooks.request(method, path + suffix, body), 404,
                "webhook_endpoint_not_found", "endpoint_id")  # fmt: skip


async def test_rotation_answers_a_new_secret_and_when_the_old_one_stops(hooks: Hooks) -> None:
    created = await hooks.create(URL)
    path = f"/v1/webhook_endpoints/{created['id']}/rotate_secret"
    rotated = conforms(WebhookEndpointWithSecretPublic, await hooks.request("POST", path))
    assert rotated["secret"] != created["secret"]
    assert rotated["secret"].startswith("whsec_")
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert expires - datetime.fromisoformat(rotated["updated_at"]) == timedelta(days=1)  # default
    assert "secret" not in (await hooks.endpoint(created["id"]))

    at_once = (await hooks.request("POST", path, {"expire_previous_in_seconds": 0})).json()
    assert at_once["previous_secret_expires_at"] is None
    week = (await hooks.request("POST", path, {"expire_previous_in_seconds": 604_800})).json()
    assert datetime.fromisoformat(week["previous_secret_expires_at"]) - datetime.fromisoformat(
        week["updated_at"]) == timedelta(days=7)  # fmt: skip
    for bad in (604_801, -1, 1.5, "60"):
        problem(await hooks.request("POST", path, {"expire_previous_in_seconds": bad}), 400,
                "invalid_request", "expire_previous_in_seconds")  # fmt: skip
    key = {"Idempotency-Key": "rotate-1"}
    first = await hooks.request("POST", path, {}, headers=key)
    again = await hooks.request("POST", path, {}, headers=key)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


async def test_deliveries_list_in_event_order_and_retry_answers_the_delivery(
    hooks: Hooks,
) -> None:
    endpoint = await hooks.create(URL)
    for code in ("a", "b", "c"):
        hooks.open_account(code)
    fan_out(hooks.engine, hooks.clock)
    path = f"/v1/webhook_endpoints/{endpoint['id']}/deliveries"
    first = conforms(WebhookDeliveriesPublic, await hooks.request("GET", path,
                                                                  params={"limit": 2}))  # fmt: skip
    assert [d["event_id"] for d in first["data"]] == ["evt_1", "evt_2"]
    assert first["has_more"] is True
    rest = await hooks.request("GET", path, params={"starting_after": first["data"][1]["id"]})
    assert [d["event_id"] for d in rest.json()["data"]] == ["evt_3"]
    before = await hooks.request("GET", path, params={"ending_before": first["data"][1]["id"]})
    assert [d["event_id"] for d in before.json()["data"]] == ["evt_1"]
    problem(await hooks.request("GET", path, params={"starting_after": str(uuid.uuid4())}), 404,
            "webhook_delivery_not_found", "starting_after")  # fmt: skip

    delivery = first["data"][0]
    hooks.clock.advance(1)
    retried = conforms(WebhookDeliveryPublic, await hooks.request(
        "POST", f"{path}/{delivery['id']}/retry"))  # fmt: skip
    assert (retried["status"], retried["attempt_count"], retried["attempts"]) == ("pending", 0, [])
    assert retried["next_attempt_at"] == retried["updated_at"] > delivery["next_attempt_at"]
    problem(await hooks.request("POST", f"{path}/{uuid.uuid4()}/retry"), 404,
            "webhook_delivery_not_found", "delivery_id")  # fmt: skip
    other = await hooks.create(URL)
    problem(await hooks.request(
        "POST", f"/v1/webhook_endpoints/{other['id']}/deliveries/{delivery['id']}/retry"), 404,
        "webhook_delivery_not_found", "delivery_id")  # fmt: skip


async def test_another_tenants_endpoints_do_not_exist_for_you(hooks: Hooks) -> None:
    mine = await hooks.create(URL)
    globex = hooks.other_tenant()
    theirs = await hooks.create(URL, tenant=globex)
    listed = (await hooks.request("GET", "/v1/webhook_endpoints", tenant=globex)).json()
    assert [e["id"] for e in listed["data"]] == [theirs["id"]]
    path = f"/v1/webhook_endpoints/{mine['id']}"
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/deliveries"),
                           ("POST", "/rotate_secret"),
                           ("POST", f"/deliveries/{uuid.uuid4()}/retry")):  # fmt: skip
        body = {} if method in ("PATCH", "POST") else None
        problem(await hooks.request(method, path + suffix, body, tenant=globex), 404,
                "webhook_endpoint_not_found", "endpoint_id")  # fmt: skip
    assert (await hooks.endpoint(mine["id"]))["enabled"] is True  # untouched


async def test_managing_webhooks_needs_the_webhooks_scope(hooks: Hooks) -> None:
    reader = hooks.other_tenant(["ledger:read", "ledger:write"])
    for method, path in (("GET", "/v1/webhook_endpoints"), ("POST", "/v1/webhook_endpoints")):
        response = await hooks.request(method, path, {"url": URL, "enabled_events": ["*"]},
                                       tenant=reader)  # fmt: skip
        problem(response, 403, "insufficient_scope", None)
