"""Dependencies of the routes, as ``Annotated`` aliases: the app state and the caller."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from settle.api.state import AppState
from settle.errors import ValidationError
from settle.security.model import Principal, Scope

__all__ = [
    "Caller",
    "ReadCaller",
    "StateDep",
    "WriteCaller",
    "authenticate",
    "get_state",
    "known_query_only",
]


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


async def authenticate(request: Request, scope: Scope) -> Principal:
    """The caller's principal, holding ``scope``; the query string checked too (see
    :func:`known_query_only`). One function, not a chain of dependencies: FastAPI resolves
    each dependency anew on every request, and that was half the cost of a small POST."""
    authenticator = get_state(request).authenticator
    token = _bearer(request)
    found = authenticator.cached_principal(token)  # one hash, no I/O, on the hot path
    if found is None:  # a database read: off the event loop
        found = await run_in_threadpool(authenticator.authenticate, token)
    found.require(scope)
    known_query_only(request)
    return found


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, and the app state the route works on."""

    state: AppState
    principal: Principal

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.principal.tenant_id


def _caller(scope: Scope) -> Callable[[Request], Awaitable[Caller]]:
    async def caller(request: Request) -> Caller:
        return Caller(get_state(request), await authenticate(request, scope))

    caller.__name__ = f"caller_with_{scope.name.lower()}"
    return caller


ReadCaller = Annotated[Caller, Depends(_caller(Scope.LEDGER_READ))]
WriteCaller = Annotated[Caller, Depends(_caller(Scope.LEDGER_WRITE))]
PaymentsReadCaller = Annotated[Caller, Depends(_caller(Scope.PAYMENTS_READ))]
PaymentsWriteCaller = Annotated[Caller, Depends(_caller(Scope.PAYMENTS_WRITE))]
WebhooksCaller = Annotated[Caller, Depends(_caller(Scope.WEBHOOKS_MANAGE))]
AdminCaller = Annotated[Caller, Depends(_caller(Scope.ADMIN))]


def _query_names(dependant: Any) -> frozenset[str]:
    """The query parameters of a route and of every dependency it has."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(p.alias for p in current.query_params)
        stack.extend(current.dependencies)
    return frozenset(names)


# Routes that take a family of parameters by prefix (``metadata[key]=value``).
_DYNAMIC_FILTERS = {"list_accounts": "metadata["}


def known_query_only(request: Request) -> None:
    """Refuse query parameters the route does not take: a misspelt filter (``?curency=USD``)
    must not quietly list everything."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed: frozenset[str] | None = getattr(route, "settle_query_names", None)
    if allowed is None:
        allowed = _query_names(dependant)
        route.settle_query_names = allowed  # type: ignore[union-attr]
    dynamic = _DYNAMIC_FILTERS.get(getattr(route, "name", ""))
    for name in request.query_params:
        if name in allowed or (dynamic is not None and name.startswith(dynamic)):
            continue
        raise ValidationError(f"this route takes no query parameter {name!r}", param=name)
