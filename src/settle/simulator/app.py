"""The card-processor simulator: a Starlette app with the HTTP contract of
``docs/processor-simulator.md``.

Every API call passes the same gate, in this order: ``down`` (503), latency and jitter, the
random ``failure_rate`` (500), the API key (401), the ``Idempotency-Key`` of a POST (400; then
replay, 422 reused or 409 in flight), the random ``timeout_rate`` (held, then 504), and only
then the operation. A 5xx answer is never stored and leaves nothing done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from settle.clock import Clock, system_clock
from settle.simulator.cards import CardBehaviour, card_rule
from settle.simulator.notifier import Notifier, Sleep
from settle.simulator.state import Refusal, RequestStatus, SimulatorState

if TYPE_CHECKING:
    from settle.simulator.config import FaultSettings, SimulatorConfig

__all__ = ["Simulator", "create_simulator_app"]

_JSON = "application/json"
_MAX_AMOUNT = 10**15


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _error_body(code: str, message: str) -> bytes:
    return _dump({"error": {"code": code, "message": message}})


def _error(status: int, code: str, message: str) -> Response:
    return Response(_error_body(code, message), status, media_type=_JSON)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What an operation answers: stored (unless 5xx), notified, and maybe answered late."""

    status: int
    body: bytes
    event: tuple[str, dict[str, Any]] | None = None
    delay: float = 0.0

    @classmethod
    def of(cls, status: int, value: Any, event: str | None = None, delay: float = 0.0) -> _Answer:
        return cls(status, _dump(value), None if event is None else (event, value), delay)

    @classmethod
    def refused(cls, refusal: Refusal) -> _Answer:
        return cls(refusal.status, _error_body(refusal.code, refusal.message))


Operation = Callable[[Request, dict[str, Any], str], Awaitable[_Answer]]


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "invalid_request", "the body is not JSON") from None
    if not isinstance(value, dict):
        raise Refusal(400, "invalid_request", "the body is a JSON object")
    return value


def _fingerprint(method: str, path: str, body: bytes) -> str:
    """Method, path and body; a JSON body in canonical form, so key order does not matter."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), canonical)).hexdigest()


def _amount(fields: dict[str, Any], name: str = "amount") -> int:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_AMOUNT:
        raise Refusal(400, "invalid_request", f"{name} is a positive integer of minor units")
    return value


def _string(fields: dict[str, Any], name: str, *, max_length: int = 255) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise Refusal(400, "invalid_request", f"{name} is a string of 1 to {max_length} characters")
    return value


class Simulator:
    """One simulated processor: its config, books, current faults and notifier."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Clock = system_clock,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.clock = clock
        # Seeded for reproducible runs; not for secrets.
        self.rng = rng if rng is not None else random.Random(config.seed)  # noqa: S311
        self.sleep = sleep
        self.state = SimulatorState(clock, self.rng)
        self.faults: FaultSettings = config.faults()
        self.notifier: Notifier | None = None
        if config.notify_url is not None and config.notify_secret is not None:
            self.notifier = Notifier(
                config.notify_url,
                config.notify_secret,
                processor=config.name,
                clock=clock,
                attempts=config.notify_attempts,
                backoff_seconds=config.notify_backoff_seconds,
                backoff_max_seconds=config.notify_backoff_max_seconds,
                timeout_seconds=config.notify_timeout_seconds,
                sleep=sleep,
            )
        self._api_key = None if config.api_key is None else f"Bearer {config.api_key}".encode()

    async def aclose(self, grace_seconds: float = 0.0) -> None:
        """Stop delivering notifications (after ``grace_seconds`` for those under way)."""
        if self.notifier is not None:
            await self.notifier.aclose(grace_seconds)

    # ---- the gate ----------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        if self._api_key is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, self._api_key)

    async def _hang(self) -> _Answer:
        await self.sleep(self.config.hang_seconds)
        return _Answer(504, _error_body("gateway_timeout", "the processor did not answer in time"))

    def _roll(self, probability: float) -> bool:
        return probability > 0 and self.rng.random() < probability

    async def _faults(self, request: Request) -> Response | None:
        faults = self.faults
        if faults.down:
            return _error(503, "service_unavailable", "the processor is down; nothing was done")
        delay_ms = faults.latency_ms + (
            self.rng.uniform(0, faults.jitter_ms) if faults.jitter_ms else 0
        )
        if delay_ms > 0:
            await self.sleep(delay_ms / 1000)
        if self._roll(faults.failure_rate):
            return _error(500, "simulated_failure", "an injected failure; nothing was done")
        if not self._authorized(request):
            return _error(401, "invalid_api_key", "send Authorization: Bearer <api key>")
        return None

    def read(
        self, handler: Callable[[Request], tuple[int, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A GET route: the gate, then ``handler(request) -> (status, JSON value)``."""

        async def endpoint(request: Request) -> Response:
            response = await self._faults(request)
            if response is None:
                if self._roll(self.faults.timeout_rate):
                    answer = await self._hang()
                    response = Response(answer.body, answer.status, media_type=_JSON)
                else:
                    try:
                        status, value = handler(request)
                    except Refusal as refusal:
                        status, value = (
                            refusal.status,
                            {"error": {"code": refusal.code, "message": refusal.message}},
                        )
                    response = Response(_dump(value), status, media_type=_JSON)
            self.state.log_call(request.method, request.url.path, None, response.status_code)
            return response

        return endpoint

    def write(self, operation: Operation) -> Callable[[Request], Awaitable[Response]]:
        """A POST route: the gate and idempotency, then ``operation(request, fields, key)``."""

        async def endpoint(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            response = await self._faults(request)
            if response is None:
                response = await self._keyed(request, key, operation)
            replayed = response.headers.get("idempotent-replayed") == "true"
            self.state.log_call(
                request.method, request.url.path, key, response.status_code, replayed=replayed
            )
            return response

        return endpoint

    async def _keyed(self, request: Request, key: str | None, operation: Operation) -> Response:
        if not key or len(key) > 255:
            return _error(
                400,
                "missing_idempotency_key",
                "send an Idempotency-Key header of 1 to 255 characters",
            )
        body = await request.body()
        try:
            stored = self.state.begin(key, _fingerprint(request.method, request.url.path, body))
        except Refusal as refusal:
            return _error(refusal.status, refusal.code, refusal.message)
        if stored is not None:
            return Response(
                stored.body,
                stored.http_status,
                media_type=_JSON,
                headers={"Idempotent-Replayed": "true"},
            )
        completed = False
        try:
            if self._roll(self.faults.timeout_rate):
                answer = await self._hang()
            else:
                try:
                    answer = await operation(request, _json_object(body), key)
                except Refusal as refusal:
                    answer = _Answer.refused(refusal)
            if answer.status < 500:
                self.state.complete(key, answer.status, answer.body)
                completed = True
                if answer.event is not None and self.notifier is not None:
                    self.notifier.notify(answer.event[0], key, answer.event[1])
        finally:
            if not completed:  # a 5xx, or the call was cancelled: nothing was done
                self.state.release(key)
        if answer.delay > 0:
            await self.sleep(answer.delay)
        return Response(answer.body, answer.status, media_type=_JSON)

    # ---- operations --------------------------------------------------------------------------

    async def authorize(self, _request: Request, fields: dict[str, Any], key: str) -> _Answer:
        amount = _amount(fields)
        currency = _string(fields, "currency", max_length=3)
        if len(currency) != 3 or not currency.isascii() or not currency.isupper():
            raise Refusal(400, "invalid_request", "currency is an ISO 4217 code, e.g. USD")
        card_number = _string(fields, "card_number", max_length=19)
        capture = fields.get("capture", False)
        if not isinstance(capture, bool):
            raise Refusal(400, "invalid_request", "capture is true or false")
        reference = _string(fields, "reference")
        rule = card_rule(card_number)
        if rule is None:
            raise Refusal(422, "invalid_card_number", "not 16 digits passing Luhn")
        if rule.behaviour is CardBehaviour.PROCESSING_ERROR:
            return _Answer(
                500, _error_body("processing_error", "the processor failed; nothing was done")
            )
        if rule.behaviour is CardBehaviour.TIMEOUT:
            return await self._hang()
        decline = None
        if rule.behaviour is CardBehaviour.DECLINE:
            decline = (rule.decline_code or "card_declined", rule.do_not_retry)
        auth = self.state.authorize(
            key,
            amount=amount,
            currency=currency,
            card_number=card_number,
            capture=capture,
            reference=reference,
            decline=decline,
        )
        delay = self.config.late_seconds if rule.behaviour is CardBehaviour.LATE_SUCCESS else 0.0
        status = 402 if decline is not None else 201
        return _Answer.of(status, auth.as_json(), f"authorization.{auth.status}", delay)

    async def capture(self, request: Request, fields: dict[str, Any], _key: str) -> _Answer:
        amount = None if fields.get("amount") is None else _amount(fields)
        auth = self.state.capture(request.path_params["id"], amount)
        return _Answer.of(200, auth.as_json(), "authorization.captured")

    async def void(self, request: Request, _fields: dict[str, Any], _key: str) -> _Answer:
        auth = self.state.void(request.path_params["id"])
        return _Answer.of(200, auth.as_json(), "authorization.voided")

    async def refund(self, _request: Request, fields: dict[str, Any], key: str) -> _Answer:
        authorization = _string(fields, "authorization")
        amount = _amount(fields)
        refund = self.state.refund(key, authorization, amount)
        return _Answer.of(201, refund.as_json(), "refund.succeeded")

    def get_authorization(self, request: Request) -> tuple[int, Any]:
        return 200, self.state.authorization(request.path_params["id"]).as_json()

    def list_authorizations(self, request: Request) -> tuple[int, Any]:
        found = self.state.authorizations(request.query_params.get("reference"))
        return 200, {"object": "list", "data": [a.as_json() for a in found]}

    def list_refunds(self, request: Request) -> tuple[int, Any]:
        found = self.state.refunds(request.query_params.get("authorization"))
        return 200, {"object": "list", "data": [r.as_json() for r in found]}

    def lookup(self, request: Request) -> tuple[int, Any]:
        record = self.state.request(request.path_params["key"])
        if record is None:
            return 404, {"status": "not_found"}
        if record.status is RequestStatus.PROCESSING:
            return 200, {"status": "processing"}
        return 200, {
            "status": "completed",
            "http_status": record.http_status,
            "response": json.loads(record.body),
        }

    # ---- control -----------------------------------------------------------------------------

    async def control_faults(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "invalid_api_key", "send Authorization: Bearer <api key>")
        if request.method == "POST":
            try:
                self.faults = self.faults.updated(_json_object(await request.body()))
            except Refusal as refusal:
                return _error(refusal.status, refusal.code, refusal.message)
            except ValueError as exc:
                return _error(400, "invalid_request", str(exc))
        return Response(_dump(self.faults.as_json()), 200, media_type=_JSON)

    async def control_calls(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "invalid_api_key", "send Authorization: Bearer <api key>")
        return Response(_dump({"object": "list", "data": self.state.calls()}), media_type=_JSON)

    async def health(self, _request: Request) -> Response:
        return Response(_dump({"status": "ok", "processor": self.config.name}), media_type=_JSON)


async def _http_error(_request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request")
    return _error(status, code, "no such route" if status == 404 else f"HTTP {status}")


def create_simulator_app(
    config: SimulatorConfig,
    *,
    clock: Clock = system_clock,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Starlette:
    """A new simulator app; its :class:`Simulator` is ``app.state.simulator``.

    Args:
        config: name, latency, faults, hold times, notifications, API key, seed.
        clock: timestamps of records and notifications (microseconds since the epoch).
        rng: ids, jitter and injected faults (default: ``random.Random(config.seed)``).
        sleep: how latency, holds and late answers wait (default ``asyncio.sleep``).
    """
    sim = Simulator(config, clock=clock, rng=rng, sleep=sleep)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sim.aclose(grace_seconds=1.0)

    routes = [
        Route("/v1/authorizations", sim.write(sim.authorize), methods=["POST"]),
        Route("/v1/authorizations", sim.read(sim.list_authorizations), methods=["GET"]),
        Route("/v1/authorizations/{id}", sim.read(sim.get_authorization), methods=["GET"]),
        Route("/v1/authorizations/{id}/capture", sim.write(sim.capture), methods=["POST"]),
        Route("/v1/authorizations/{id}/void", sim.write(sim.void), methods=["POST"]),
        Route("/v1/refunds", sim.write(sim.refund), methods=["POST"]),
        Route("/v1/refunds", sim.read(sim.list_refunds), methods=["GET"]),
        Route("/v1/requests/{key:path}", sim.read(sim.lookup), methods=["GET"]),
        Route("/_control/faults", sim.control_faults, methods=["GET", "POST"]),
        Route("/_control/calls", sim.control_calls, methods=["GET"]),
        Route("/healthz", sim.health, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error}
    )
    app.state.simulator = sim
    return app
