"""What payments need from a card processor, as plain types and a protocol.

A connector (``settle.connectors``) speaks a processor's HTTP API behind :class:`Processor`;
the payments service only sees :class:`ProcessorResult` and decides from its ``outcome``:

* ``approved``: the processor did it (authorized, captured, voided, refunded).
* ``declined``: the processor refused it for good reasons of its own (``decline_code``);
  ``do_not_retry`` says the card must not be tried again.
* ``not_processed``: the processor certainly did nothing (refused connection, a 5xx it
  documents as "nothing done", an open circuit): safe to try again, here or elsewhere.
* ``unknown``: the request may have been processed (a timeout after sending): nothing may be
  retried until :meth:`Processor.lookup` says what happened.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = [
    "AuthorizeRequest",
    "CaptureRequest",
    "LookupResult",
    "Processor",
    "ProcessorDirectory",
    "ProcessorOutcome",
    "ProcessorResult",
    "RefundRequest",
    "VoidRequest",
]


class ProcessorOutcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    NOT_PROCESSED = "not_processed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ProcessorResult:
    """One call's outcome. ``reference`` is the processor's id of the authorization (or of the
    refund), set when approved; ``latency_us`` is the whole call, retries included."""

    outcome: ProcessorOutcome
    processor: str
    reference: str | None = None
    decline_code: str | None = None
    do_not_retry: bool = False
    amount: int | None = None
    latency_us: int = 0
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """Authorize ``amount`` on a card; with ``capture`` the processor captures it at once.

    ``idempotency_key`` is derived from our attempt id: the processor answers a repeat of it
    with the first answer and never charges twice.
    """

    idempotency_key: str
    amount: int
    currency: str
    card_number: str
    capture: bool
    reference: str  # ours (the payment intent id), for the processor's records


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    idempotency_key: str
    authorization: str  # the processor's reference
    amount: int


@dataclass(frozen=True, slots=True)
class VoidRequest:
    idempotency_key: str
    authorization: str


@dataclass(frozen=True, slots=True)
class RefundRequest:
    idempotency_key: str
    authorization: str
    amount: int


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What the processor knows of one of our requests, by its idempotency key.

    ``found`` False: it never received (or never kept) the request, so nothing happened.
    ``pending`` True: it is still working on it; ask again later. Otherwise ``result`` is the
    request's final outcome (``approved`` or ``declined``).
    """

    found: bool
    pending: bool = False
    result: ProcessorResult | None = None


class Processor(Protocol):
    """One configured card processor. Every call has a timeout and never raises for the
    processor's answers or its absence: the outcome says what happened."""

    @property
    def name(self) -> str: ...

    def available(self) -> bool:
        """Whether calls may be sent now (False while its circuit breaker is open)."""
        ...

    def authorize(self, request: AuthorizeRequest) -> ProcessorResult: ...

    def capture(self, request: CaptureRequest) -> ProcessorResult: ...

    def void(self, request: VoidRequest) -> ProcessorResult: ...

    def refund(self, request: RefundRequest) -> ProcessorResult: ...

    def lookup(self, idempotency_key: str) -> LookupResult: ...


class ProcessorDirectory(Protocol):
    """The configured processors, in order of preference."""

    def get(self, name: str) -> Processor:
        """The processor named ``name`` (KeyError if none is configured by that name)."""
        ...

    def pick(self, exclude: Collection[str] = ()) -> Processor | None:
        """The first available processor not in ``exclude``; None if there is none."""
        ...
