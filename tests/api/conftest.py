"""The API in process: an app on a fresh database of each kind, a tenant and its keys.

``api`` drives the app through ``httpx.ASGITransport`` (real HTTP semantics, no sockets);
tests that need a real server process start one (see ``test_real_server.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from settle.api import Settings, create_app

from .support import Api, make_tenant


@pytest.fixture
def api_settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, maintenance_seconds=0)


@pytest.fixture
def app(api_settings: Settings) -> Iterator[Any]:
    application = create_app(api_settings)
    yield application
    application.state.settle.close()


@pytest.fixture
async def api(app: Any, db_url: str) -> AsyncIterator[Api]:
    tenant = make_tenant(db_url, "acme", ["admin"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://settle.test") as client:
        yield Api(client, app, db_url, tenant)
