"""The one place where errors become RFC 9457 problem details (``application/problem+json``).

Routers never build error bodies: they raise the domain's errors (or return a refused transfer
result) and this module maps each stable ``code`` to an HTTP status, a title and a body with
``type``, ``title``, ``status``, ``detail``, ``code``, ``param`` and ``request_id``.
"""

from __future__ import annotations

import re
import uuid
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
    "invalid_signature": 401,
    # 404: the thing named does not exist for this tenant.
    "route_not_found": 404,
    "account_not_found": 404,
    "transfer_not_found": 404,
    "pending_not_found": 404,
    "tenant_not_found": 404,
    "api_key_not_found": 404,
    "payment_intent_not_found": 404,
    "refund_not_found": 404,
    "job_not_found": 404,
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
    "payment_intent_unexpected_state": 409,
    "job_not_retryable": 409,
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
    # An account definition whose fields contradict each other (a limit without a flag).
    "invalid_account": 422,
    "idempotency_key_reused": 422,
    # 422: a payment rule refuses it.
    "amount_exceeds_capturable": 422,
    "invalid_payment_method": 422,
    "invalid_payment": 422,
    "refund_exceeds_captured": 422,
    "payment_ledger_refused": 422,
    # Webhooks: what does not exist, what conflicts, and URLs the guard refuses.
    "webhook_endpoint_not_found": 404,
    "webhook_delivery_not_found": 404,
    "webhook_endpoint_disabled": 409,
    "invalid_delivery_transition": 409,
    "invalid_webhook_url": 422,
    "webhook_address_not_allowed": 422,
    "webhook_host_unresolvable": 422,
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
    status: int | None = None,
) -> tuple[int, bytes]:
    """The status and JSON bytes of a problem with ``code`` (its own status unless given)."""
    status = status_for_code(code) if status is None else status
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


# A body that is a union of models (TransferShorthandCreate | TransferPostingsCreate) is
# reported by pydantic once per member, each error's location naming its member's class.
_MEMBER = re.compile(r"^[A-Z][A-Za-z0-9]*$")  # fields are snake_case
_SHAPE = frozenset({"missing", "extra_forbidden"})


def _member_of(loc: Sequence[Any]) -> int | None:
    for i, part in enumerate(loc):
        if isinstance(part, str) and _MEMBER.match(part) and (i == 0 or loc[i - 1] != "metadata"):
            return i
    return None


def _closest_member(errors: list[Any]) -> list[Any]:
    """The errors of the union member the request is closest to (the fewest of its own fields
    missing or extra), without the member's name in their locations."""
    members: dict[str, list[Any]] = {}
    plain: list[Any] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        at = _member_of(loc)
        if at is None:
            plain.append(error)
        else:
            members.setdefault(loc[at], []).append({**error, "loc": loc[:at] + loc[at + 1 :]})
    if not members:
        return errors

    def misfits(errs: list[Any]) -> int:
        return sum(e.get("type") in _SHAPE for e in errs)

    return plain + min(members.values(), key=lambda errs: (misfits(errs), len(errs)))


def _validation_problem(exc: RequestValidationError) -> tuple[str, str, str | None]:
    errors = _closest_member(list(exc.errors()))
    first = errors[0] if errors else {"type": "value_error", "loc": (), "msg": "invalid request"}
    kind = str(first.get("type", ""))
    loc = tuple(first.get("loc", ()))
    param = _param_of(loc)
    if loc == ("body",) and isinstance(first.get("input"), bytes):
        # FastAPI hands the raw bytes on only when the Content-Type is not JSON.
        return (
            api_errors.UnsupportedMediaTypeError.code,
            "request bodies are JSON: send Content-Type: application/json",
            None,
        )
    if kind == "json_invalid":
        return api_errors.MalformedJsonError.code, "the request body is not valid JSON", None
    if loc and loc[0] == "header" and str(loc[-1]).lower() == "idempotency-key":
        return (
            api_errors.InvalidIdempotencyKeyError.code,
            "Idempotency-Key is 1 to 255 printable ASCII characters, bare or as a quoted string",
            "Idempotency-Key",
        )
    field = str(loc[-1]) if loc else ""
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    where = param or "the request"
    if kind == "missing":  # a field left out is not a bad amount or currency
        code = "invalid_request"
    elif field in ("amount", "overdraft_limit") or field.endswith("_amount"):
        code = ResultCode.INVALID_AMOUNT.value
        message = "amounts are JSON integers of minor units (no floats, strings or booleans)"
    elif field == "currency" or kind == "unknown_currency":
        code = "unknown_currency"
        message = "currencies are upper-case ISO 4217 codes with minor units, such as USD"
    else:
        code = "invalid_request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return code, f"{where}: {message}{more}", param


def _allowed_methods(request: Request) -> str:
    """Every method the OpenAPI document gives the request's path. (Starlette's own Allow
    header names only the first route's methods: PUT /v1/accounts said "POST", not "GET,
    POST".) An id segment that is no UUID names no resource of its route, so
    /v1/transfers/batch takes POST only, not the GET of /v1/transfers/{transfer_id}."""
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        request.app.state, "allowed_methods", None
    )
    if table is None:
        table = []
        for template, operations in request.app.openapi().get("paths", {}).items():
            source = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            table.append((re.compile(f"^{source}$"), sorted(m.upper() for m in operations)))
        request.app.state.allowed_methods = table
    methods: set[str] = set()
    for compiled, names in table:
        match = compiled.match(request.url.path)
        if match and all(_is_uuid(v) for k, v in match.groupdict().items() if k.endswith("_id")):
            methods.update(names)
    return ", ".join(sorted(methods))


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def install_problem_handlers(app: FastAPI) -> None:
    """Every error the app can raise, answered as a problem."""

    async def on_settle_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SettleError)  # noqa: S101 - registered for SettleError only
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "invalid_api_key" else None
        return problem_response(request, exc.code, exc.detail, param=exc.param, headers=headers)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
        if any(tuple(e.get("loc", ()))[:1] == ("path",) for e in exc.errors()):
            # An id segment that is no UUID: when the path is another route's, this method
            # is what is wrong (GET /v1/transfers/batch: 405, Allow: POST); else the id (400).
            allowed = _allowed_methods(request)
            if allowed:
                return problem_response(
                    request,
                    api_errors.MethodNotAllowedError.code,
                    f"{request.method} is not allowed on {request.url.path}",
                    headers={"Allow": allowed},
                )
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
                headers={"Allow": _allowed_methods(request)},
            )
        if exc.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8)
            return problem_response(
                request,
                api_errors.MalformedJsonError.code,
                "the request body is not valid JSON (UTF-8)",
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
    """A refused transfer result as a problem (status and bytes, for storing and sending).

    The ledger checked a well-formed request, so a refusal is 422, except for what does not
    exist (404) and conflicts with the current state (409).
    """
    status = status_for_code(code.value)
    return problem_body(
        code.value,
        detail or code.value.replace("_", " "),
        request_id=request_id_of(request),
        param=param,
        type_base=request.app.state.settle.settings.problem_type_base,
        status=status if status in (404, 409) else 422,
    )
