"""A card processor spoken to over HTTP (the simulator's contract, ``docs/processor-simulator.md``).

Every call carries our ``Idempotency-Key``, has a connect and a read timeout, is retried (with
tenacity, the same key, capped exponential backoff with jitter) only when the processor
certainly did nothing, and ends in a :class:`ProcessorResult` whose outcome says what happened;
nothing is raised for the processor's answers or its absence.

====================================================  ===========================================
what happened                                         outcome
====================================================  ===========================================
201 / 200                                             ``approved``: reference = the object's id
402                                                   ``declined`` with its decline code
other 4xx (409 already captured, 422 too much, ...)   ``declined``: the code, do_not_retry
401 / 403                                             ``not_processed`` (our credentials)
5xx, refused or timed-out connect, after retries      ``not_processed``
409 ``request_in_flight`` after retries               ``unknown`` (the first may still succeed)
read timeout or broken connection once sent           ``unknown``: never retried
open circuit                                          ``not_processed``, nothing sent
====================================================  ===========================================
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import tenacity

from settle.clock import Clock, system_clock
from settle.connectors.retry import IN_FLIGHT, Delivery, backoff_delay, classify_error
from settle.connectors.retry import is_retryable_status as _retryable_status
from settle.payments.processors import (
    AuthorizeRequest,
    CaptureRequest,
    LookupResult,
    ProcessorOutcome,
    ProcessorResult,
    RefundRequest,
    VoidRequest,
)

if TYPE_CHECKING:
    from types import TracebackType

    from settle.connectors.breaker import CircuitBreaker

__all__ = ["HttpProcessor"]


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One attempt: an answer, or the transport error and whether the request left."""

    response: httpx.Response | None
    error: str | None = None
    delivery: Delivery | None = None

    @property
    def payload(self) -> Any:
        if self.response is None:
            return None
        try:
            return self.response.json()
        except ValueError:
            return None

    @property
    def retryable(self) -> bool:
        if self.response is None:
            return self.delivery is Delivery.NOT_SENT
        return _retryable_status(self.response.status_code, _error_code(self.payload))


def _error_code(payload: Any) -> str | None:
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _error_message(payload: Any) -> str | None:
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


def _approved_amount(payload: dict[str, Any]) -> int | None:
    """A refund's amount; a captured authorization's captured amount; else its amount."""
    key = "captured_amount" if payload.get("status") == "captured" else "amount"
    if payload.get("object") == "refund":
        key = "amount"
    value = payload.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class HttpProcessor:
    """One processor behind the :class:`~settle.payments.processors.Processor` protocol.

    Args:
        name: the processor's name in our configuration (``[a-z0-9_]+``).
        base_url: e.g. ``http://127.0.0.1:9101``.
        api_key: sent as ``Authorization: Bearer``; never shown by ``repr``.
        timeout: seconds to wait for an answer (read, write, a free pooled connection).
        connect_timeout: seconds to wait for a connection.
        max_attempts: attempts in all for a call that certainly did nothing.
        backoff_initial: the first retry waits up to this many seconds (full jitter) ...
        backoff_max: ... doubling per retry up to this cap.
        breaker: the processor's circuit breaker (None: always available).
        clock: measures ``latency_us``.
        sleep: waits between attempts (tests pass one that does not wait).
        rng: the backoff's jitter.
        transport: an httpx transport (default: a pooled keep-alive HTTP transport).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 2.0,
        connect_timeout: float = 0.5,
        max_attempts: int = 3,
        backoff_initial: float = 0.05,
        backoff_max: float = 1.0,
        breaker: CircuitBreaker | None = None,
        clock: Clock = system_clock,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._name = name
        self._base_url = base_url
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._breaker = breaker
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter only
        headers = {"Accept": "application/json", "User-Agent": "settle-connector"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"HttpProcessor({self._name!r}, {self._base_url!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._breaker

    def available(self) -> bool:
        """Whether calls may be sent now (False while the circuit breaker is open)."""
        return self._breaker is None or self._breaker.available()

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def __enter__(self) -> HttpProcessor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- the protocol ------------------------------------------------------------------------

    def authorize(self, request: AuthorizeRequest) -> ProcessorResult:
        body = {
            "amount": request.amount,
            "currency": request.currency,
            "card_number": request.card_number,
            "capture": request.capture,
            "reference": request.reference,
        }
        return self._write("/v1/authorizations", request.idempotency_key, body)

    def capture(self, request: CaptureRequest) -> ProcessorResult:
        path = f"/v1/authorizations/{quote(request.authorization, safe='')}/capture"
        return self._write(path, request.idempotency_key, {"amount": request.amount})

    def void(self, request: VoidRequest) -> ProcessorResult:
        path = f"/v1/authorizations/{quote(request.authorization, safe='')}/void"
        return self._write(path, request.idempotency_key, {})

    def refund(self, request: RefundRequest) -> ProcessorResult:
        body = {"authorization": request.authorization, "amount": request.amount}
        return self._write("/v1/refunds", request.idempotency_key, body)

    def lookup(self, idempotency_key: str) -> LookupResult:
        """What the processor knows of the request sent with ``idempotency_key``.

        When the processor cannot be asked (unreachable, 5xx, open circuit) nothing can be
        concluded, so the answer is "pending: ask again later" with an ``unknown`` result
        saying why; never ``found=False``, which would claim nothing happened.
        """
        started = self._clock()
        if self._breaker is not None and not self._breaker.allow():
            return self._unanswered(started, "circuit open: not sent")
        try:
            path = f"/v1/requests/{quote(idempotency_key, safe='')}"
            exchange, attempts = self._send("GET", path, idempotency_key, None)
        except BaseException:
            self._record(ProcessorOutcome.UNKNOWN)
            raise
        payload, response = exchange.payload, exchange.response
        status = payload.get("status") if isinstance(payload, dict) else None
        found: LookupResult | None = None
        if response is not None and response.status_code == 404 and status == "not_found":
            found = LookupResult(found=False)
        elif response is not None and response.status_code == 200 and status == "processing":
            found = LookupResult(found=True, pending=True)
        elif response is not None and response.status_code == 200 and status == "completed":
            stored = self._answer(payload.get("http_status"), payload.get("response"), 1)
            if stored.outcome in (ProcessorOutcome.APPROVED, ProcessorOutcome.DECLINED):
                latency = self._clock() - started
                found = LookupResult(found=True, result=replace(stored, latency_us=latency))
        if found is None:
            self._record(ProcessorOutcome.UNKNOWN)
            detail = exchange.error or f"lookup answered HTTP {_status(exchange)} {payload!r}"
            return self._unanswered(started, f"{detail} after {attempts} attempt(s)")
        self._record(ProcessorOutcome.APPROVED)
        return found

    # ---- internals ---------------------------------------------------------------------------

    def _write(self, path: str, key: str, body: dict[str, Any]) -> ProcessorResult:
        started = self._clock()
        if self._breaker is not None and not self._breaker.allow():
            return ProcessorResult(
                ProcessorOutcome.NOT_PROCESSED,
                self._name,
                detail="circuit open: not sent",
                latency_us=self._clock() - started,
            )
        try:
            exchange, attempts = self._send("POST", path, key, body)
            if exchange.response is None:
                result = self._unsent(exchange, attempts)
            else:
                result = self._answer(exchange.response.status_code, exchange.payload, attempts)
        except BaseException:
            self._record(ProcessorOutcome.UNKNOWN)
            raise
        self._record(result.outcome)
        return replace(result, latency_us=self._clock() - started)

    def _send(
        self, method: str, path: str, key: str, body: dict[str, Any] | None
    ) -> tuple[_Exchange, int]:
        """Send with retries; the last attempt and the number of attempts made."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_result(lambda exchange: exchange.retryable),
            sleep=self._sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        exchange: _Exchange = retrying(self._send_once, method, path, key, body)
        return exchange, int(retrying.statistics.get("attempt_number", 1))

    def _send_once(
        self, method: str, path: str, key: str, body: dict[str, Any] | None
    ) -> _Exchange:
        try:
            response = self._client.request(
                method, path, json=body, headers={"Idempotency-Key": key}
            )
        except httpx.TransportError as exc:
            return _Exchange(None, f"{type(exc).__name__}: {exc}", classify_error(exc))
        return _Exchange(response)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        return backoff_delay(
            state.attempt_number,
            initial=self._backoff_initial,
            cap=self._backoff_max,
            rng=self._rng,
        )

    def _record(self, outcome: ProcessorOutcome) -> None:
        if self._breaker is None:
            return
        if outcome in (ProcessorOutcome.NOT_PROCESSED, ProcessorOutcome.UNKNOWN):
            self._breaker.record_failure()
        else:
            self._breaker.record_success()

    def _unsent(self, exchange: _Exchange, attempts: int) -> ProcessorResult:
        if exchange.delivery is Delivery.NOT_SENT:
            return ProcessorResult(
                ProcessorOutcome.NOT_PROCESSED,
                self._name,
                detail=f"{exchange.error} after {attempts} attempt(s)",
            )
        return ProcessorResult(
            ProcessorOutcome.UNKNOWN,
            self._name,
            detail=f"{exchange.error} after sending: may have been processed",
        )

    def _unanswered(self, started: int, detail: str) -> LookupResult:
        result = ProcessorResult(
            ProcessorOutcome.UNKNOWN, self._name, detail=detail, latency_us=self._clock() - started
        )
        return LookupResult(found=True, pending=True, result=result)

    def _answer(self, status: Any, payload: Any, attempts: int) -> ProcessorResult:
        """The outcome of an HTTP answer (live, or stored and found by lookup)."""
        name, code = self._name, _error_code(payload)
        if not isinstance(status, int):
            return ProcessorResult(ProcessorOutcome.UNKNOWN, name, detail=f"no status: {status!r}")
        said = f"HTTP {status} {code or ''}".rstrip()
        if 200 <= status < 300:
            if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
                return ProcessorResult(
                    ProcessorOutcome.UNKNOWN, name, detail=f"{said} without an object id"
                )
            return ProcessorResult(
                ProcessorOutcome.APPROVED,
                name,
                reference=payload["id"],
                amount=_approved_amount(payload),
            )
        if status == 402:
            fields = payload if isinstance(payload, dict) else {}
            decline_code = fields.get("decline_code")
            return ProcessorResult(
                ProcessorOutcome.DECLINED,
                name,
                decline_code=decline_code if isinstance(decline_code, str) else "declined",
                do_not_retry=fields.get("do_not_retry") is True,
                detail=f"declined authorization {fields.get('id')}",
            )
        if status in (401, 403):
            return ProcessorResult(
                ProcessorOutcome.NOT_PROCESSED, name, detail=f"{said}: our credentials were refused"
            )
        if status == 409 and code == IN_FLIGHT:
            return ProcessorResult(
                ProcessorOutcome.UNKNOWN, name, detail=f"{said} after {attempts} attempt(s)"
            )
        if status >= 500:
            return ProcessorResult(
                ProcessorOutcome.NOT_PROCESSED, name, detail=f"{said} after {attempts} attempt(s)"
            )
        if status >= 400:
            return ProcessorResult(
                ProcessorOutcome.DECLINED,
                name,
                decline_code=code or f"http_{status}",
                do_not_retry=True,
                detail=_error_message(payload),
            )
        return ProcessorResult(ProcessorOutcome.UNKNOWN, name, detail=f"unexpected {said}")


def _status(exchange: _Exchange) -> int | None:
    return None if exchange.response is None else exchange.response.status_code
