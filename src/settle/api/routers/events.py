"""``/v1/events``: the tenant's ordered, replayable event feed (the outbox)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from settle.api.deps import ReadCaller
from settle.api.idempotency import JSON
from settle.api.render import dump, transfer_json
from settle.api.routers.common import Limit
from settle.api.schemas import EventsPublic
from settle.clock import from_micros
from settle.errors import ValidationError
from settle.store.ledger_lists import FeedEvent, events_page

router = APIRouter(prefix="/v1/events", tags=["events"])

_PREFIX = "evt_"


def event_id(seq: int) -> str:
    return f"{_PREFIX}{seq}"


def _after(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    digits = cursor.removeprefix(_PREFIX)
    if cursor.startswith(_PREFIX) and digits.isdigit() and len(digits) <= 18:
        return int(digits)
    raise ValidationError("not an event id this API issued (evt_…)", param="after")


def _event_json(e: FeedEvent) -> dict[str, Any]:
    data: dict[str, Any] | None = e.payload
    if e.transfer is not None:
        data = transfer_json(e.transfer)
    return {
        "id": event_id(e.seq),
        "object": "event",
        "seq": e.seq,
        "type": e.type,
        "object_id": e.object_id,
        "created_at": from_micros(e.created_at),
        "data": data,
    }


@router.get("", response_model=EventsPublic)
def list_events(
    caller: ReadCaller,
    after: Annotated[
        str | None, Query(pattern=r"^evt_\d{1,18}$", description="An event id (evt_…)")
    ] = None,
    limit: Limit = 10,
) -> Response:
    """Events in the order they were committed, after the event `after` (from the start if
    absent). A consumer stores the last id it processed and resumes from it after an outage."""
    with caller.state.store.read() as repo:
        page = events_page(repo, caller.tenant_id, after_seq=_after(after), limit=limit)
    body = {"data": [_event_json(e) for e in page.data], "has_more": page.has_more}
    return Response(dump(body), media_type=JSON)
