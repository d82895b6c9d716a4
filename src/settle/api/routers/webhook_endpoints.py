"""``/v1/webhook_endpoints``: endpoints, secret rotation, deliveries and manual retries."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from settle.api.deps import WebhooksCaller
from settle.api.idempotency import JSON, Keyed, WebhooksKeyedDep, idempotent_call
from settle.api.render import dump
from settle.api.routers.common import Limit
from settle.api.state import AppState
from settle.api.webhook_schemas import (
    RotateSecretCreate,
    WebhookDeliveriesPublic,
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointDeletedPublic,
    WebhookEndpointPublic,
    WebhookEndpointsPublic,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecretPublic,
    delivery_json,
    endpoint_json,
)
from settle.store.idempotency import find_stored_response
from settle.store.uow import SqlUnitOfWork
from settle.store.webhooks_repo import read_webhooks
from settle.webhooks.address import Destination, UrlGuard
from settle.webhooks.errors import WebhookDeliveryNotFoundError, WebhookEndpointNotFoundError
from settle.webhooks.model import Attempt, Delivery, EndpointChanges, NewEndpoint, WebhookEndpoint
from settle.webhooks.service import (
    create_endpoint,
    delete_endpoint,
    retry_delivery,
    rotate_secret,
    update_endpoint,
)

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhooks"])


def _guard(state: AppState) -> UrlGuard:
    return UrlGuard(allow_private=state.settings.webhook_allow_private)


def _found(endpoint: WebhookEndpoint | None, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    if endpoint is None:
        raise WebhookEndpointNotFoundError(
            f"webhook endpoint {endpoint_id} not found", param="endpoint_id"
        )
    return endpoint


def _json(body: object, status: int = 200) -> Response:
    return Response(dump(body), status, media_type=JSON)


def _check_unless_replay(keyed: Keyed, url: str) -> Destination | None:
    """The checked URL, resolved before any transaction starts (a DNS lookup never runs under
    a lock); None for a retry whose first answer is stored (it is replayed as it was)."""
    if keyed.key is not None:
        with keyed.state.store.db.connect() as conn:
            stored = find_stored_response(conn, keyed.tenant_id, keyed.key)
            conn.rollback()
        if stored is not None:
            return None
    return _guard(keyed.state).check(url)


@router.post("", status_code=201, response_model=WebhookEndpointWithSecretPublic)
async def create_webhook_endpoint(body: WebhookEndpointCreate, keyed: WebhooksKeyedDep) -> Response:
    """Create an endpoint. It gets the events committed from now on that `enabled_events`
    names, signed with its `secret`, which only this answer shows."""
    cmd = NewEndpoint(
        tenant_id=keyed.tenant_id,
        url=body.url,
        enabled_events=body.enabled_events,
        description=body.description,
        enabled=body.enabled,
        metadata=body.metadata,
    )
    checked = await run_in_threadpool(_check_unless_replay, keyed, body.url)

    def effect(uow: SqlUnitOfWork) -> WebhookEndpoint:
        destination = checked or _guard(keyed.state).check(cmd.url)
        return create_endpoint(uow, cmd, destination)

    def render(endpoint: WebhookEndpoint) -> tuple[int, bytes]:
        return 201, dump(endpoint_json(endpoint, with_secret=True))

    return await idempotent_call(keyed, effect, render)


@router.get("", response_model=WebhookEndpointsPublic)
def list_webhook_endpoints(
    caller: WebhooksCaller,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
    ending_before: uuid.UUID | None = None,
) -> Response:
    """The tenant's endpoints in id order; with both cursors, those between them."""
    with read_webhooks(caller.state.store.db) as repo:
        page = repo.list_endpoints(
            caller.tenant_id,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )
    return _json({"data": [endpoint_json(e) for e in page.data], "has_more": page.has_more})


@router.get("/{endpoint_id}", response_model=WebhookEndpointPublic)
def get_webhook_endpoint(endpoint_id: uuid.UUID, caller: WebhooksCaller) -> Response:
    with read_webhooks(caller.state.store.db) as repo:
        endpoint = _found(repo.get_endpoint(caller.tenant_id, endpoint_id), endpoint_id)
    return _json(endpoint_json(endpoint))


@router.patch("/{endpoint_id}", response_model=WebhookEndpointPublic)
def patch_webhook_endpoint(
    endpoint_id: uuid.UUID, body: WebhookEndpointUpdate, caller: WebhooksCaller
) -> Response:
    """Change the URL, event types, description, metadata, or enable or disable the endpoint
    (disabling cancels its pending deliveries; enabling clears why it was disabled)."""
    destination = None if body.url is None else _guard(caller.state).check(body.url)
    changes = EndpointChanges(
        url=body.url,
        enabled_events=body.enabled_events,
        description=body.description,
        enabled=body.enabled,
        metadata=body.metadata,
    )
    endpoint = update_endpoint(
        caller.state.store.uow(), caller.tenant_id, endpoint_id, changes, destination
    )
    return _json(endpoint_json(endpoint))


@router.delete("/{endpoint_id}", response_model=WebhookEndpointDeletedPublic)
def delete_webhook_endpoint(endpoint_id: uuid.UUID, caller: WebhooksCaller) -> Response:
    """Delete the endpoint: no more deliveries go to it."""
    endpoint = delete_endpoint(caller.state.store.uow(), caller.tenant_id, endpoint_id)
    return _json({"id": endpoint.id, "object": "webhook_endpoint", "deleted": True})


@router.post("/{endpoint_id}/rotate_secret", response_model=WebhookEndpointWithSecretPublic)
async def rotate_webhook_secret(
    endpoint_id: uuid.UUID, keyed: WebhooksKeyedDep, body: RotateSecretCreate | None = None
) -> Response:
    """A new signing secret (only this answer shows it). The previous one keeps signing too,
    as a second signature, for `expire_previous_in_seconds` (default a day)."""
    overlap = (body or RotateSecretCreate()).expire_previous_in_seconds

    def effect(uow: SqlUnitOfWork) -> WebhookEndpoint:
        return rotate_secret(uow, keyed.tenant_id, endpoint_id, expire_previous_in_seconds=overlap)

    def render(endpoint: WebhookEndpoint) -> tuple[int, bytes]:
        return 200, dump(endpoint_json(endpoint, with_secret=True))

    return await idempotent_call(keyed, effect, render)


@router.get("/{endpoint_id}/deliveries", response_model=WebhookDeliveriesPublic)
def list_webhook_deliveries(
    endpoint_id: uuid.UUID,
    caller: WebhooksCaller,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
    ending_before: uuid.UUID | None = None,
) -> Response:
    """The endpoint's deliveries in event order, each with its status, attempt count, next
    attempt time and attempts."""
    tenant = caller.tenant_id
    with read_webhooks(caller.state.store.db) as repo:
        _found(repo.get_endpoint(tenant, endpoint_id), endpoint_id)
        cursors: dict[str, int] = {}
        for name, cursor in (("starting_after", starting_after), ("ending_before", ending_before)):
            if cursor is not None:
                seq = repo.delivery_seq(tenant, endpoint_id, cursor)
                if seq is None:
                    raise WebhookDeliveryNotFoundError(
                        f"no delivery {cursor} to page from", param=name
                    )
                cursors[name] = seq
        page = repo.list_deliveries(
            tenant,
            endpoint_id,
            limit=limit,
            after_seq=cursors.get("starting_after"),
            before_seq=cursors.get("ending_before"),
        )
    data = [delivery_json(d, attempts) for d, attempts in page.data]
    return _json({"data": data, "has_more": page.has_more})


@router.post("/{endpoint_id}/deliveries/{delivery_id}/retry", response_model=WebhookDeliveryPublic)
async def retry_webhook_delivery(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, keyed: WebhooksKeyedDep, request: Request
) -> Response:
    """Attempt the delivery now, whatever its status: a succeeded one is sent again."""

    def effect(uow: SqlUnitOfWork) -> tuple[Delivery, list[Attempt]]:
        delivery = retry_delivery(uow, keyed.tenant_id, endpoint_id, delivery_id)
        with uow:
            attempts = uow.webhooks.attempts_of(keyed.tenant_id, [delivery.id])
        return delivery, attempts.get(delivery.id, [])

    def render(value: tuple[Delivery, list[Attempt]]) -> tuple[int, bytes]:
        return 200, dump(delivery_json(*value))

    response = await idempotent_call(keyed, effect, render)
    runner = getattr(request.app.state, "webhooks", None)
    if runner is not None:
        runner.wake()
    return response
