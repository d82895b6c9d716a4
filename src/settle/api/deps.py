"""Dependencies of the routes, as ``Annotated`` aliases: the app state and the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from settle.api.state import AppState
from settle.security.model import Principal, Scope

__all__ = ["AdminPrincipal", "ReadPrincipal", "StateDep", "WritePrincipal", "get_state"]


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.settle
    return state


async def _state(request: Request) -> AppState:
    # async: FastAPI runs a plain function dependency on a worker thread, a hop per request.
    return get_state(request)


StateDep = Annotated[AppState, Depends(_state)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    async def principal(request: Request) -> Principal:
        authenticator = get_state(request).authenticator
        token = _bearer(request)
        if authenticator.is_cached(token):
            found = authenticator.authenticate(token)
        else:  # a database read: off the event loop
            found = await run_in_threadpool(authenticator.authenticate, token)
        found.require(scope)
        return found

    principal.__name__ = f"principal_with_{scope.name.lower()}"
    return principal


ReadPrincipal = Annotated[Principal, Depends(_require(Scope.LEDGER_READ))]
WritePrincipal = Annotated[Principal, Depends(_require(Scope.LEDGER_WRITE))]
AdminPrincipal = Annotated[Principal, Depends(_require(Scope.ADMIN))]
