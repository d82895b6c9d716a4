"""Liveness, readiness and metrics (unauthenticated; bind the server to a private address)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from starlette.responses import Response

from settle.api.deps import StateDep
from settle.api.errors import ServiceUnavailableError
from settle.api.idempotency import JSON
from settle.store.db import migrations_current

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> Response:
    """The process is up."""
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get("/readyz", responses={503: {"description": "Database unreachable or not migrated"}})
def readyz(state: StateDep) -> Response:
    """The database answers and its schema is at the newest migration."""
    try:
        current = migrations_current(state.store.db)
    except sa.exc.SQLAlchemyError:
        raise ServiceUnavailableError("the database is unreachable") from None
    if not current:
        raise ServiceUnavailableError("the database schema is not at the newest migration")
    return Response(b'{"status":"ready"}', media_type=JSON)


@router.get("/metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    """Prometheus metrics: requests by route and status, ledger batch sizes and commit times."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
