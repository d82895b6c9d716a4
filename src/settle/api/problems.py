"""The one place where errors become RFC 9457 problem details (``application/problem+json``).

Routers never build error bodies: they raise the domain's errors (or return a refused transfer
result) and this module maps each stable ``code`` to an HTTP status, a title and a body with
``type``, ``title``, ``status``, ``detail``, ``code``, ``param`` and ``request_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from settle.api import errors as api_errors
from settle.errors import SettleError
from settle.ledger.errors import ResultCode

__all__ = [
    "PROBLEM_JSON",
    "install_problem_handlers",
    "problem_body",
    "problem_response",
    "status_for_code",
]

PROBLEM_JSON = "application/problem+json"
_R = ResultCode

# Every code that is not 400 Bad Request. Codes not listed are 400: input that can never be
# valid, whatever the state of the system.
_STATUS: Mapping[str, int] = {
    # 401 / 403: who is calling and what the key may do.
    "invalid_api_key": 401,
    "insufficient_scope": 403,
    # 404: the thing named does not exist for this tenant.
    "route_not_found": 404,
    "account_not_found": 404,
    "transfer_not_found": 404,
    "pending_not_found": 404,
    "tenant_not_found": 404,
    "api_key_not_found": 404,
    "method_not_allowed": 405,
    # 409: the request conflicts with the current state.
    "exists_with_different_fields": 409,
    "account_exists_with_different_fields": 409,
    "account_code_taken": 409,
    "invalid_status_transition": 409,
    "account_not_empty": 409,
    "pending_already_posted": 409,
    "pending_already_voided": 409,
    "pending_expired": 409,
    "already_reversed": 409,
    "idempotency_key_in_flight": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    # 422: well-formed, but a ledger rule refuses it.
    "insufficient_funds": 422,
    "exceeds_debits": 422,
    "currency_mismatch": 422,
    "account_frozen": 422,
    "account_closed": 422,
    "unbalanced": 422,
    "balance_overflow": 422,
    "amount_exceeds_pending": 422,
    "not_reversible": 422,
    "linked_transfer_failed": 422,
    "invalid_parent_account": 422,
    "idempotency_key_reused": 422,
    "internal_error": 500,
    "service_unavailable": 503,
}

_TITLES: Mapping[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_for_code(code: str) -> int:
    return _STATUS.get(code, 400)


def problem_body(
    code: str,
    detail: str,
    *,
    request_id: str | None,
    param: str | None = None,
    type_base: str = "https://settle.dev/errors#",
    extra: Mapping[str, Any] | None = None,
) -> tuple[int, bytes]:
    """The status and JSON bytes of a problem with ``code``."""
    status = status_for_code(code)
    body: dict[str, Any] = {
        "type": f"{type_base}{code}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if param is not None:
        body["param"] = param
    if extra:
        body.update(extra)
    body["request_id"] = request_id
    return status, orjson.dumps(body)


def problem_response(
    request: Request,
    code: str,
    detail: str,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    status, body = problem_body(
        code,
        detail,
        request_id=request_id_of(request),
        param=param,
        type_base=request.app.state.settle.settings.problem_type_base,
    )
    return Response(body, status, headers=dict(headers or {}), media_type=PROBLEM_JSON)


def request_id_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def _param_of(loc: Sequence[Any]) -> str | None:
    # ("body", "transfers", 3, "amount") -> "transfers[3].amount"; ("query", "limit") -> "limit"
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else []
    if not parts:
        return None
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_problem(exc: RequestValidationError) -> tuple[str, str, str | None]:
    errors = list(exc.errors())
    first = errors[0] if errors else {"type": "value_error", "loc": (), "msg": "invalid request"}
    kind = str(first.get("type", ""))
    loc = tuple(first.get("loc", ()))
    param = _param_of(loc)
    if kind == "json_invalid":
        return api_errors.MalformedJsonError.code, "the request body is not valid JSON", None
    field = str(loc[-1]) if loc else ""
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    where = param or "the request"
    if field in ("amount", "overdraft_limit") or field.endswith("_amount"):
        code = ResultCode.INVALID_AMOUNT.value
        message = "amounts are JSON integers of minor units (no floats, strings or booleans)"
    elif field == "currency" or kind == "unknown_currency":
        code = "unknown_currency"
        message = "currencies are upper-case ISO 4217 codes with minor units, such as USD"
    else:
        code = "invalid_request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return code, f"{where}: {message}{more}", param


def install_problem_handlers(app: FastAPI) -> None:
    """Every error the app can raise, answered as a problem."""

    async def on_settle_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SettleError)  # noqa: S101 - registered for SettleError only
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "invalid_api_key" else None
        return problem_response(request, exc.code, exc.detail, param=exc.param, headers=headers)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
        code, detail, param = _validation_problem(exc)
        return problem_response(request, code, detail, param=param)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
        if exc.status_code == 404:
            return problem_response(
                request, api_errors.RouteNotFoundError.code, f"no route for {request.url.path}"
            )
        if exc.status_code == 405:
            return problem_response(
                request,
                api_errors.MethodNotAllowedError.code,
                f"{request.method} is not allowed on {request.url.path}",
                headers=exc.headers,
            )
        code = {413: "payload_too_large", 415: "unsupported_media_type"}.get(
            exc.status_code, "invalid_request"
        )
        return problem_response(request, code, str(exc.detail))

    app.add_exception_handler(SettleError, on_settle_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def result_problem(
    request: Request, code: ResultCode, detail: str | None, *, param: str | None = None
) -> tuple[int, bytes]:
    """A refused transfer result as a problem (status and bytes, for storing and sending)."""
    return problem_body(
        code.value,
        detail or code.value.replace("_", " "),
        request_id=request_id_of(request),
        param=param,
        type_base=request.app.state.settle.settings.problem_type_base,
    )
