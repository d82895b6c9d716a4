"""Idempotency-Key handling for every POST: parse, fingerprint, claim, replay.

The stored record is written in the same transaction as the effect: inside the ledger's batch
for money movements (a :class:`~settle.store.idempotency.Receipt`), in the service's own
transaction for everything else (:func:`~settle.store.idempotency.run_idempotent`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypeVar

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from settle.api.deps import authenticate, get_state
from settle.api.errors import (
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
)
from settle.api.problems import PROBLEM_JSON
from settle.api.state import AppState
from settle.security.keys import KeyMode
from settle.security.model import Scope
from settle.store.idempotency import (
    Receipt,
    StoredResponse,
    TransferLookup,
    run_idempotent,
    store_response,
)

if TYPE_CHECKING:
    from settle.ledger.apply import TransferResult
    from settle.ledger.requests import TransferRequest
    from settle.store.uow import SqlUnitOfWork

__all__ = [
    "AdminKeyedDep",
    "Keyed",
    "KeyedDep",
    "PaymentsKeyedDep",
    "WebhooksKeyedDep",
    "derived_id",
    "idempotent_call",
    "idempotent_ledger_write",
    "parse_idempotency_key",
]

_T = TypeVar("_T")
_BARE = re.compile(r"^[\x21-\x7e]{1,255}$")
_QUOTED = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
# Transfer ids derived from an idempotency key: the same key always names the same transfers.
_KEYED_IDS = uuid.UUID("4f7c8a52-1d3e-4b6a-9c0f-2e8d5b7a1c93")
JSON = "application/json"


def parse_idempotency_key(header: str | None) -> str | None:
    """The key from an ``Idempotency-Key`` header: a bare token or an RFC 8941 string."""
    if header is None:
        return None
    value = header.strip()
    quoted = _QUOTED.match(value)
    if quoted:
        key = re.sub(r"\\(.)", r"\1", quoted.group(1))
        if 1 <= len(key) <= 255:
            return key
    elif _BARE.match(value) and '"' not in value:
        return value
    raise InvalidIdempotencyKeyError(
        "Idempotency-Key is 1 to 255 printable ASCII characters, bare or as a quoted string",
        param="Idempotency-Key",
    )


@dataclass(frozen=True, slots=True)
class Keyed:
    """A write request as idempotency sees it: whose, which key, and its fingerprint (and the
    app state the route works on)."""

    state: AppState
    tenant_id: uuid.UUID
    key: str | None
    fingerprint: bytes
    live: bool = False  # a live key (sk_live_): test payment methods are refused


# Surrounding blanks are not part of a header value (RFC 9110 5.5): servers strip them.
IDEMPOTENCY_KEY_PATTERN = r'^[ \t]*(?:[!#-~]{1,255}|"(?:[ !#-\[\]-~]|\\["\\]){1,255}")[ \t]*$'


def _keyed_with(scope: Scope) -> Callable[..., Awaitable[Keyed]]:
    """The dependency of a keyed write that needs ``scope``."""

    async def keyed(
        request: Request,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="Makes the request safe to retry: the same key and body replay the"
                " first answer. 1 to 255 printable ASCII characters, bare or quoted.",
            ),
        ] = None,
    ) -> Keyed:
        # The caller too, in this one dependency (see settle.api.deps.authenticate).
        principal = await authenticate(request, scope)
        state = get_state(request)
        key = parse_idempotency_key(idempotency_key)
        live = principal.mode is KeyMode.LIVE
        if key is None:
            return Keyed(state, principal.tenant_id, None, b"", live)
        body = await request.body()  # already read by FastAPI: served from its cache
        digest = hashlib.sha256()
        for part in (request.method.encode(), request.url.path.encode(), body):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return Keyed(state, principal.tenant_id, key, digest.digest(), live)

    keyed.__name__ = f"keyed_with_{scope.name.lower()}"
    return keyed


KeyedDep = Annotated[Keyed, Depends(_keyed_with(Scope.LEDGER_WRITE))]
PaymentsKeyedDep = Annotated[Keyed, Depends(_keyed_with(Scope.PAYMENTS_WRITE))]
WebhooksKeyedDep = Annotated[Keyed, Depends(_keyed_with(Scope.WEBHOOKS_MANAGE))]
AdminKeyedDep = Annotated[Keyed, Depends(_keyed_with(Scope.ADMIN))]


def derived_id(keyed: Keyed, index: int = 0) -> uuid.UUID:
    """The id of the ``index``-th transfer a request creates when the client gave none."""
    if keyed.key is None:
        return uuid.uuid4()
    return uuid.uuid5(_KEYED_IDS, f"{keyed.tenant_id.hex}:{index}:{keyed.key}")


def _response(status: int, body: bytes, *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(
        body, status, headers=headers, media_type=PROBLEM_JSON if status >= 400 else JSON
    )


def _replay(stored: StoredResponse, keyed: Keyed) -> Response:
    if stored.fingerprint != keyed.fingerprint:
        raise IdempotencyKeyReusedError(
            "this Idempotency-Key was used with a different request", param="Idempotency-Key"
        )
    return _response(stored.status, stored.body, replayed=True)


class _Claim:
    """This process's claim on a key while its request runs (released on exit)."""

    def __init__(self, keyed: Keyed) -> None:
        self.state, self.keyed = keyed.state, keyed

    def __enter__(self) -> None:
        k = self.keyed
        if k.key is None:
            return
        holder = self.state.in_flight.claim(k.tenant_id, k.key, k.fingerprint)
        if holder is None:
            return
        if holder != k.fingerprint:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key is in use by a different request", param="Idempotency-Key"
            )
        raise IdempotencyKeyInFlightError(
            "a request with this Idempotency-Key is still in flight; retry when it is done",
            param="Idempotency-Key",
        )

    def __exit__(self, *exc: object) -> None:
        if self.keyed.key is not None:
            self.state.in_flight.release(self.keyed.tenant_id, self.keyed.key)


async def idempotent_ledger_write(
    keyed: Keyed,
    requests: Sequence[TransferRequest],
    *,
    atomic: bool = False,
    render: Callable[[Sequence[TransferResult], TransferLookup], tuple[int, bytes] | None],
    render_after: Callable[[Sequence[TransferResult]], tuple[int, bytes]],
) -> Response:
    """Submit ledger requests with their idempotency record; answer (or replay) the response.

    ``render`` runs inside the batch (its answer is stored with the effect); when it returns
    None (the transfer existed already: nothing moved), ``render_after`` reads and answers,
    and that answer is stored on its own.
    """
    state = keyed.state
    with _Claim(keyed):
        receipt = Receipt(keyed.tenant_id, keyed.key, keyed.fingerprint, render)
        future = state.store.writer.submit_future(requests, atomic=atomic, receipt=receipt)
        results = await asyncio.wrap_future(future)
        if receipt.stored is not None:
            return _replay(receipt.stored, keyed)
        if not results:  # the same key twice in one batch: the first one's answer is pending
            raise IdempotencyKeyInFlightError(
                "a request with this Idempotency-Key is still in flight; retry when it is done",
                param="Idempotency-Key",
            )
        if receipt.rendered is not None:
            return _response(*receipt.rendered)
        status, body = await run_in_threadpool(render_after, results)
        if keyed.key is not None:
            answer = StoredResponse(keyed.fingerprint, status, body, state.clock())
            stored = await run_in_threadpool(
                store_response, state.store.db, keyed.tenant_id, keyed.key, answer
            )
            if stored is not answer:
                return _replay(stored, keyed)
        return _response(status, body)


async def idempotent_call(
    keyed: Keyed,
    effect: Callable[[SqlUnitOfWork], _T],
    render: Callable[[_T], tuple[int, bytes]],
) -> Response:
    """Run a service call (not a ledger batch) with its idempotency record, in one transaction."""
    state = keyed.state
    with _Claim(keyed):
        if keyed.key is None:

            def plain() -> tuple[int, bytes]:
                return render(effect(state.store.uow()))

            return _response(*await run_in_threadpool(plain))
        key = keyed.key

        def keyed_call() -> tuple[StoredResponse, bool]:
            return run_idempotent(
                state.store.db,
                state.clock,
                keyed.tenant_id,
                key,
                keyed.fingerprint,
                effect,
                render,
                after_commit=state.store.after_commit,
            )

        answer, replayed = await run_in_threadpool(keyed_call)
        if replayed:
            return _replay(answer, keyed)
        return _response(answer.status, answer.body)
