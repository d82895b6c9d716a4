"""What a processor's notification reports, as the result of the request it names.

The simulator (and processors like it) notify ``{"type", "processor", "idempotency_key",
"data"}`` after finishing a request; the key is the one Settle sent with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from settle.payments.processors import ProcessorOutcome, ProcessorResult

__all__ = ["notification_result"]

_APPROVING = frozenset(
    {
        "authorization.authorized",
        "authorization.captured",
        "authorization.voided",
        "refund.succeeded",
    }
)


def _amount(data: Mapping[str, Any]) -> int | None:
    key = "captured_amount" if data.get("status") == "captured" else "amount"
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def notification_result(processor: str, body: Any) -> tuple[str, ProcessorResult] | None:
    """(idempotency key, final result) of a notification; None for one that settles nothing."""
    if not isinstance(body, dict):
        return None
    kind, key, data = body.get("type"), body.get("idempotency_key"), body.get("data")
    if not isinstance(key, str) or not isinstance(data, dict):
        return None
    reference = data.get("id") if isinstance(data.get("id"), str) else None
    if kind == "authorization.declined":
        decline_code = data.get("decline_code")
        return key, ProcessorResult(
            ProcessorOutcome.DECLINED,
            processor,
            reference=reference,
            decline_code=decline_code if isinstance(decline_code, str) else "declined",
            do_not_retry=data.get("do_not_retry") is True,
            detail="notified",
        )
    if kind in _APPROVING and reference is not None:
        return key, ProcessorResult(
            ProcessorOutcome.APPROVED,
            processor,
            reference=reference,
            amount=_amount(data),
            detail="notified",
        )
    return None
