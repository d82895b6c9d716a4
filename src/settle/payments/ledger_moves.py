"""How payments move money: the ledger transfers of an authorization, a capture, a void and
a refund, with ids derived from the attempt or refund they settle (a replay moves nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from settle.ledger.model import Side
from settle.ledger.requests import PostingRequest, PostPending, TransferSpec
from settle.payments.errors import PaymentLedgerRefusedError

if TYPE_CHECKING:
    from settle.ledger.apply import TransferResult
    from settle.payments.accounts import PaymentAccounts
    from settle.payments.fees import FeeSchedule

__all__ = [
    "capture_lines",
    "check_moved",
    "derived_id",
    "hold_spec",
    "payment_lines",
    "post_hold",
]

_NAMESPACE = uuid.UUID("0b8e6f3a-2d4c-4a1b-8e9f-7c6d5a4b3e21")


def derived_id(purpose: str, source: uuid.UUID) -> uuid.UUID:
    """The id of the transfer that settles ``source`` for ``purpose`` (always the same one)."""
    return uuid.uuid5(_NAMESPACE, f"{purpose}:{source.hex}")


def check_moved(results: Sequence[TransferResult]) -> None:
    """Every transfer is in the ledger (new or already there), else the whole change fails."""
    for result in results:
        if not result.code.succeeded:
            raise PaymentLedgerRefusedError(
                f"the ledger refused the payment's transfer: {result.code.value}"
                + (f" ({result.detail})" if result.detail else ""),
                ledger_code=result.code.value,
            )


def payment_lines(
    accounts: PaymentAccounts, amount: int, currency: str, fees: FeeSchedule
) -> tuple[PostingRequest, ...]:
    """The processor owes ``amount``; the merchant gets it less the fee, the platform the fee.

    Lines of zero are left out (a ledger line moves something).
    """
    fee = fees.fee_for(amount)
    lines = [
        PostingRequest(accounts.clearing, Side.DEBIT, amount, currency),
        PostingRequest(accounts.merchant, Side.CREDIT, amount - fee, currency),
        PostingRequest(accounts.fees, Side.CREDIT, fee, currency),
    ]
    return tuple(line for line in lines if line.amount)


def capture_lines(
    accounts: PaymentAccounts, authorized: int, captured: int, currency: str, fees: FeeSchedule
) -> tuple[PostingRequest, ...]:
    """Per-line amounts posting ``captured`` of a hold made by :func:`payment_lines` for
    ``authorized``: the lines the hold has, each no more than it holds (the fee and the
    merchant's share are monotonic in the amount, see FeeSchedule)."""
    held = {
        (line.account_id, line.side) for line in payment_lines(accounts, authorized, currency, fees)
    }
    return tuple(
        line
        for line in (
            PostingRequest(accounts.clearing, Side.DEBIT, captured, currency),
            PostingRequest(
                accounts.merchant, Side.CREDIT, captured - fees.fee_for(captured), currency
            ),
            PostingRequest(accounts.fees, Side.CREDIT, fees.fee_for(captured), currency),
        )
        if (line.account_id, line.side) in held
    )


def hold_spec(
    tenant_id: uuid.UUID,
    transfer_id: uuid.UUID,
    lines: tuple[PostingRequest, ...],
    *,
    pending: bool,
    description: str,
    metadata: dict[str, str],
) -> TransferSpec:
    return TransferSpec(tenant_id, transfer_id, lines, pending, None, description, metadata)


def post_hold(
    tenant_id: uuid.UUID,
    transfer_id: uuid.UUID,
    hold_id: uuid.UUID,
    lines: tuple[PostingRequest, ...] | None,
    description: str,
) -> PostPending:
    return PostPending(tenant_id, transfer_id, hold_id, None, lines, description)
