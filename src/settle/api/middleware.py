"""The ASGI layer around every request: request ids, the body limit, metrics, access logs and
the last-resort 500 (as a problem, with nothing of the failure's data in it or in the log)."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import structlog
from starlette.exceptions import HTTPException

from settle.api.errors import InternalServerError, PayloadTooLargeError
from settle.api.problems import PROBLEM_JSON, problem_body

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from settle.api.metrics import Metrics
    from settle.api.settings import Settings

__all__ = ["RequestMiddleware"]

_log = structlog.get_logger("settle.api")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``: FastAPI passes HTTP exceptions through its body parsing."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is over the limit")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        status = 500
        response_started = False
        limit = self.settings.max_body_bytes

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        try:
            if _declared_length(scope) > limit:
                raise _BodyTooLarge
            if _query_has_nul(scope):
                # No parameter may hold NUL (PostgreSQL text cannot): refused before any route.
                status = await self._problem(
                    send_wrapper,
                    request_id,
                    "invalid_request",
                    "query parameters may not contain NUL characters",
                )
                return
            await self.app(scope, receive_wrapper, send_wrapper)
        except _BodyTooLarge:
            if not response_started:
                status = await self._problem(
                    send_wrapper,
                    request_id,
                    PayloadTooLargeError.code,
                    f"the request body is over the limit of {limit} bytes",
                )
        except Exception as exc:  # noqa: BLE001 - the last resort: answer, log without data
            _log.error(
                "unhandled error",
                error=type(exc).__name__,
                path=scope.get("path"),
                request_id=request_id,
            )
            if not response_started:
                status = await self._problem(
                    send_wrapper,
                    request_id,
                    InternalServerError.code,
                    "an unexpected error; nothing was half-written, and a retry with the same"
                    " Idempotency-Key is safe",
                )
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            self.metrics.observe_request(route, scope["method"], status, elapsed)
            if status >= 500 or self.settings.log_level == "debug":
                _log.info(
                    "request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                    request_id=request_id,
                )

    async def _problem(self, send: Send, request_id: str, code: str, detail: str) -> int:
        status, body = problem_body(
            code, detail, request_id=request_id, type_base=self.settings.problem_type_base
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return status


# Request ids: a random per-process prefix and a counter (no system call per request).
_ID_PREFIX = f"req_{secrets.token_hex(8)}"
_ids = itertools.count(1)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _CLIENT_REQUEST_ID.match(text):
                return text
            break
    return f"{_ID_PREFIX}{next(_ids):012x}"


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _query_has_nul(scope: Scope) -> bool:
    query = bytes(scope.get("query_string", b""))
    return b"%00" in query or b"\x00" in query


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path: object = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
