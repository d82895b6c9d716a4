"""The simulator's books, in memory: authorizations, refunds and the requests it has seen.

One lock guards everything: each operation checks and changes state without awaiting, so a
request either sees another's whole effect or none of it. Refusals are :class:`Refusal` (an
HTTP status and an error code); this is an outside service, so nothing here is a SettleError.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from settle.clock import Clock, from_micros

__all__ = [
    "Authorization",
    "AuthorizationAction",
    "AuthorizationStatus",
    "Refund",
    "Refusal",
    "RequestRecord",
    "RequestStatus",
    "SimulatorState",
]


class Refusal(Exception):  # noqa: N818 - an answer, not a failure of the simulator
    """The simulator refuses a request: ``status`` and ``code`` go into the error answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class AuthorizationStatus(StrEnum):
    AUTHORIZED = "authorized"  # the amount is held on the card; it may be captured or voided
    CAPTURED = "captured"  # captured_amount is charged; refunds may return up to it
    VOIDED = "voided"  # the hold is released; nothing was charged
    DECLINED = "declined"  # refused at authorization; nothing is held or charged


class AuthorizationAction(StrEnum):
    CAPTURE = "capture"
    VOID = "void"


_TRANSITIONS: dict[tuple[AuthorizationStatus, AuthorizationAction], AuthorizationStatus] = {
    (AuthorizationStatus.AUTHORIZED, AuthorizationAction.CAPTURE): AuthorizationStatus.CAPTURED,
    (AuthorizationStatus.AUTHORIZED, AuthorizationAction.VOID): AuthorizationStatus.VOIDED,
}
# Why each other (status, action) is refused: the error code answered with 409.
_REFUSALS: dict[tuple[AuthorizationStatus, AuthorizationAction], str] = {
    (AuthorizationStatus.CAPTURED, AuthorizationAction.CAPTURE): "already_captured",
    (AuthorizationStatus.CAPTURED, AuthorizationAction.VOID): "already_captured",
    (AuthorizationStatus.VOIDED, AuthorizationAction.CAPTURE): "authorization_voided",
    (AuthorizationStatus.VOIDED, AuthorizationAction.VOID): "already_voided",
    (AuthorizationStatus.DECLINED, AuthorizationAction.CAPTURE): "authorization_declined",
    (AuthorizationStatus.DECLINED, AuthorizationAction.VOID): "authorization_declined",
}


def _next_status(status: AuthorizationStatus, action: AuthorizationAction) -> AuthorizationStatus:
    """The status after ``action``; a 409 Refusal naming both when it is not allowed."""
    following = _TRANSITIONS.get((status, action))
    if following is None:
        raise Refusal(
            409, _REFUSALS[status, action], f"cannot {action} an authorization that is {status}"
        )
    return following


def _timestamp(micros: int) -> str:
    return from_micros(micros).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class Authorization:
    id: str
    amount: int
    currency: str
    card_last4: str
    reference: str
    idempotency_key: str
    created_at: int
    status: AuthorizationStatus
    captured_amount: int = 0
    refunded_amount: int = 0
    decline_code: str | None = None
    do_not_retry: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "authorization",
            "status": self.status.value,
            "amount": self.amount,
            "captured_amount": self.captured_amount,
            "refunded_amount": self.refunded_amount,
            "currency": self.currency,
            "card_last4": self.card_last4,
            "reference": self.reference,
            "idempotency_key": self.idempotency_key,
            "decline_code": self.decline_code,
            "do_not_retry": self.do_not_retry,
            "created_at": _timestamp(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    authorization: str
    amount: int
    currency: str
    idempotency_key: str
    created_at: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "refund",
            "status": "succeeded",
            "authorization": self.authorization,
            "amount": self.amount,
            "currency": self.currency,
            "idempotency_key": self.idempotency_key,
            "created_at": _timestamp(self.created_at),
        }


class RequestStatus(StrEnum):
    PROCESSING = "processing"  # claimed by a call still running: repeats get 409
    COMPLETED = "completed"  # answered with a non-5xx status: repeats get the stored answer


@dataclass(slots=True)
class RequestRecord:
    fingerprint: str
    status: RequestStatus
    http_status: int = 0
    body: bytes = b""


class SimulatorState:
    """Everything one simulated processor knows. Safe to call from any thread."""

    def __init__(self, clock: Clock, rng: random.Random, *, log_size: int = 1000) -> None:
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        self._authorizations: dict[str, Authorization] = {}
        self._refunds: dict[str, Refund] = {}
        self._requests: dict[str, RequestRecord] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)

    # ---- idempotency ---------------------------------------------------------------------

    def begin(self, key: str, fingerprint: str) -> RequestRecord | None:
        """Claim ``key`` for a new request; the stored record if it already completed.

        Raises:
            Refusal: 422 ``idempotency_key_reused`` (another request had the key) or 409
                ``request_in_flight`` (the first request with it is still running).
        """
        with self._lock:
            record = self._requests.get(key)
            if record is None:
                self._requests[key] = RequestRecord(fingerprint, RequestStatus.PROCESSING)
                return None
            if record.fingerprint != fingerprint:
                raise Refusal(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                )
            if record.status is RequestStatus.PROCESSING:
                raise Refusal(
                    409,
                    "request_in_flight",
                    "a request with this Idempotency-Key is still in flight",
                )
            return record

    def complete(self, key: str, http_status: int, body: bytes) -> None:
        """Store the final answer of the request that claimed ``key``."""
        with self._lock:
            record = self._requests[key]
            record.status, record.http_status, record.body = (
                RequestStatus.COMPLETED,
                http_status,
                body,
            )

    def release(self, key: str) -> None:
        """Forget a claimed request that did nothing (a 5xx answer): a repeat runs afresh."""
        with self._lock:
            record = self._requests.get(key)
            if record is not None and record.status is RequestStatus.PROCESSING:
                del self._requests[key]

    def request(self, key: str) -> RequestRecord | None:
        with self._lock:
            record = self._requests.get(key)
            if record is None:
                return None
            return RequestRecord(record.fingerprint, record.status, record.http_status, record.body)

    # ---- the call log (for audits and tests) ---------------------------------------------

    def log_call(
        self, method: str, path: str, key: str | None, status: int, *, replayed: bool = False
    ) -> None:
        """Note one answered API call (the newest ``log_size`` are kept)."""
        with self._lock:
            self._log.append(
                {
                    "method": method,
                    "path": path,
                    "idempotency_key": key,
                    "status": status,
                    "replayed": replayed,
                }
            )

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    # ---- authorizations and refunds ------------------------------------------------------

    def _new_id(self, prefix: str, taken: dict[str, Any]) -> str:
        while True:
            candidate = f"{prefix}_{self._rng.getrandbits(64):016x}"
            if candidate not in taken:
                return candidate

    def authorize(
        self,
        key: str,
        *,
        amount: int,
        currency: str,
        card_number: str,
        capture: bool,
        reference: str,
        decline: tuple[str, bool] | None = None,
    ) -> Authorization:
        """Record an authorization: approved (captured at once with ``capture``), or declined
        with ``decline`` = (code, do_not_retry)."""
        with self._lock:
            auth = Authorization(
                id=self._new_id("auth", self._authorizations),
                amount=amount,
                currency=currency,
                card_last4=card_number[-4:],
                reference=reference,
                idempotency_key=key,
                created_at=self._clock(),
                status=AuthorizationStatus.AUTHORIZED,
            )
            if decline is not None:
                auth.status = AuthorizationStatus.DECLINED
                auth.decline_code, auth.do_not_retry = decline
            elif capture:
                auth.status = AuthorizationStatus.CAPTURED
                auth.captured_amount = amount
            self._authorizations[auth.id] = auth
            return _copy(auth)

    def capture(self, authorization_id: str, amount: int | None) -> Authorization:
        """Capture ``amount`` (default: all) of an authorization, once.

        Raises:
            Refusal: 404 unknown id; 409 not capturable now; 422 more than authorized.
        """
        with self._lock:
            auth = self._get(authorization_id)
            status = _next_status(auth.status, AuthorizationAction.CAPTURE)
            amount = auth.amount if amount is None else amount
            if amount > auth.amount:
                raise Refusal(
                    422,
                    "amount_exceeds_authorized",
                    f"cannot capture {amount}: {auth.amount} is authorized",
                )
            auth.status, auth.captured_amount = status, amount
            return _copy(auth)

    def void(self, authorization_id: str) -> Authorization:
        """Release an authorization that is not captured.

        Raises:
            Refusal: 404 unknown id; 409 captured, voided or declined.
        """
        with self._lock:
            auth = self._get(authorization_id)
            auth.status = _next_status(auth.status, AuthorizationAction.VOID)
            return _copy(auth)

    def refund(self, key: str, authorization_id: str, amount: int) -> Refund:
        """Return ``amount`` of what was captured; refunds never exceed it in total.

        Raises:
            Refusal: 404 unknown authorization; 409 not captured; 422 more than is left.
        """
        with self._lock:
            auth = self._get(authorization_id)
            if auth.status is not AuthorizationStatus.CAPTURED:
                raise Refusal(409, "not_captured", f"the authorization is {auth.status}")
            left = auth.captured_amount - auth.refunded_amount
            if amount > left:
                raise Refusal(
                    422,
                    "amount_exceeds_captured",
                    f"cannot refund {amount}: {left} of the capture is left",
                )
            refund = Refund(
                self._new_id("re", self._refunds),
                auth.id,
                amount,
                auth.currency,
                key,
                self._clock(),
            )
            auth.refunded_amount += amount
            self._refunds[refund.id] = refund
            return refund

    def authorization(self, authorization_id: str) -> Authorization:
        """Raises: Refusal: 404 unknown id."""
        with self._lock:
            return _copy(self._get(authorization_id))

    def authorizations(self, reference: str | None = None) -> list[Authorization]:
        """Every authorization (of ``reference``), oldest first."""
        with self._lock:
            return [
                _copy(a)
                for a in self._authorizations.values()
                if reference is None or a.reference == reference
            ]

    def refunds(self, authorization_id: str | None = None) -> list[Refund]:
        """Every refund (of ``authorization_id``), oldest first."""
        with self._lock:
            return [
                r
                for r in self._refunds.values()
                if authorization_id is None or r.authorization == authorization_id
            ]

    def _get(self, authorization_id: str) -> Authorization:
        auth = self._authorizations.get(authorization_id)
        if auth is None:
            raise Refusal(404, "not_found", f"no authorization {authorization_id!r}")
        return auth


def _copy(auth: Authorization) -> Authorization:
    return replace(auth)
