"""``/v1/processor_notifications/{processor}``: processors' signed reports of what they did.

No API key: the Standard Webhooks signature, made with the secret configured for that
processor, is the authentication. A verified notification settles the attempt or refund it
names (the same transaction the worker would run); anything else is acknowledged and ignored.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from settle.api.deps import get_state
from settle.api.errors import InvalidSignatureError
from settle.api.idempotency import JSON
from settle.api.payment_schemas import ProcessorNotificationPublic
from settle.api.render import dump
from settle.connectors.notifications import notification_result
from settle.webhooks.signing import verify

router = APIRouter(prefix="/v1/processor_notifications", tags=["processors"])


@router.post("/{processor}", response_model=ProcessorNotificationPublic)
async def receive(processor: str, request: Request) -> Response:
    """A processor's notification, verified against its secret; `applied` says whether it
    settled something still waiting for the processor's answer."""
    state = get_state(request)
    secret = state.processor_secrets.get(processor)
    body = await request.body()
    now = state.clock() // 1_000_000
    if secret is None or not verify(secret, body, request.headers, now=now):
        raise InvalidSignatureError("the notification's signature does not verify")
    try:
        parsed = orjson.loads(body)
    except ValueError:
        parsed = None
    found = notification_result(processor, parsed)
    applied = False
    if found is not None:
        key, result = found
        applied = await run_in_threadpool(state.payments.apply_notification, processor, key, result)
    return Response(dump({"received": True, "applied": applied}), media_type=JSON)
