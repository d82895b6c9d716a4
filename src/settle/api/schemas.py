"""Request and response bodies: ``XCreate`` / ``XUpdate`` in, ``XPublic`` / ``XsPublic`` out.

Amounts are JSON integers of minor units (floats, strings and booleans are refused), currencies
upper-case ISO 4217 codes, timestamps RFC 3339 in UTC, ids UUIDs.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from settle.ledger.model import MAX_AMOUNT, AccountStatus, AccountType, Side
from settle.money import Currency, UnknownCurrencyError

__all__ = [
    "AccountCreate",
    "AccountPublic",
    "AccountUpdate",
    "AccountsPublic",
    "BalancePublic",
    "BatchResultPublic",
    "EventPublic",
    "EventsPublic",
    "PostPendingCreate",
    "PostingCreate",
    "PostingPublic",
    "ProblemPublic",
    "ReverseCreate",
    "StatementEntryPublic",
    "StatementPublic",
    "TransferBatchCreate",
    "TransferBatchPublic",
    "TransferCreate",
    "TransferPostingsCreate",
    "TransferPublic",
    "TransferShorthandCreate",
    "TransfersPublic",
    "VoidCreate",
]

MAX_BATCH = 8190


def _known_currency(code: str) -> str:
    try:
        Currency.of(code)
    except UnknownCurrencyError as exc:
        # A pydantic error keeps the field's location (postings[0].currency) for `param`.
        raise PydanticCustomError("unknown_currency", exc.detail) from None
    return code


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
    if "\x00" in text:
        raise ValueError("text may not contain NUL characters")
    return text


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339_only(value: object) -> object:
    # Pydantic would also read numbers (and dates without a zone) as moments.
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("timestamps need a time zone")
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("timestamps are RFC 3339 with a time zone, e.g. 2026-12-01T10:00:00Z")
    return value


Rfc3339 = Annotated[
    datetime,
    BeforeValidator(_rfc3339_only),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _RFC3339.pattern}),
]

Amount = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)]
NonNegativeAmount = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
CURRENCY_SCHEMA = {"type": "string", "enum": list(Currency.codes()), "examples": ["USD"]}
CurrencyCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_known_currency),
    WithJsonSchema(CURRENCY_SCHEMA),
]
# PostgreSQL text cannot hold NUL: the schema says so, and the validator enforces it.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(max_length=1000, pattern=NO_NUL), AfterValidator(_no_nul)]
_METADATA_SCHEMA = {
    "type": "object",
    "maxProperties": 50,
    "propertyNames": {"minLength": 1, "maxLength": 40, "pattern": NO_NUL},
    "additionalProperties": {"type": "string", "maxLength": 500, "pattern": NO_NUL},
    "description": "Up to 50 string keys (1-40 chars) and string values (up to 500 chars).",
}
Metadata = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_no_nul)],
        Annotated[str, Field(max_length=500), AfterValidator(_no_nul)],
    ],
    Field(max_length=50),
    # Pydantic would render the key rule as patternProperties, leaving other keys unchecked.
    WithJsonSchema(_METADATA_SCHEMA),
]


AccountCode = Annotated[
    str, Field(min_length=1, max_length=128, pattern=NO_NUL), AfterValidator(_no_nul)
]
AccountName = Annotated[
    str, Field(min_length=1, max_length=256, pattern=NO_NUL), AfterValidator(_no_nul)
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- accounts ------------------------------------------------------------------------------


class AccountCreate(_In):
    id: uuid.UUID | None = Field(None, description="Optional client-chosen id (idempotent).")
    code: Annotated[
        str, Field(min_length=1, max_length=128, pattern=NO_NUL), AfterValidator(_no_nul)
    ]
    name: Annotated[
        str, Field(min_length=1, max_length=256, pattern=NO_NUL), AfterValidator(_no_nul)
    ]
    type: AccountType
    currency: CurrencyCode
    parent_id: uuid.UUID | None = None
    debits_must_not_exceed_credits: Annotated[bool, Field(strict=True)] = False
    credits_must_not_exceed_debits: Annotated[bool, Field(strict=True)] = False
    overdraft_limit: NonNegativeAmount | None = None
    metadata: Metadata = Field(default_factory=dict)


class AccountUpdate(_In):
    name: (
        Annotated[str, Field(min_length=1, max_length=256, pattern=NO_NUL), AfterValidator(_no_nul)]
        | None
    ) = None
    metadata: Metadata | None = None
    status: AccountStatus | None = None


class BalancesPublic(_Out):
    posted: int = Field(description="Posted balance on the account's normal side.")
    pending: int = Field(description="Net amount on hold, on the normal side.")
    available: int = Field(description="Posted balance less outgoing holds.")
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


class AccountPublic(_Out):
    id: uuid.UUID
    object: Literal["account"] = "account"
    code: str
    name: str
    type: AccountType
    currency: str
    parent_id: uuid.UUID | None
    status: AccountStatus
    normal_side: Side
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    overdraft_limit: int | None
    metadata: dict[str, str]
    created_at: datetime
    balances: BalancesPublic
    last_seq: int


class AccountsPublic(_Out):
    data: list[AccountPublic]
    has_more: bool


class BalancePublic(_Out):
    object: Literal["balance"] = "balance"
    account_id: uuid.UUID
    currency: str
    as_of: datetime | None = Field(description="Null: the current balance.")
    balances: BalancesPublic
    rolled_up: BalancesPublic | None = Field(
        description="The account with all its descendants (current balances only)."
    )


class StatementEntryPublic(_Out):
    id: str = Field(description="The entry's cursor, for starting_after / ending_before.")
    transfer_id: uuid.UUID
    seq: int
    index: int
    side: Side
    amount: int
    posted_amount: int
    pending_amount: int
    currency: str
    created_at: datetime
    balance_after: BalancesPublic


class StatementPublic(_Out):
    object: Literal["statement"] = "statement"
    account_id: uuid.UUID
    currency: str
    data: list[StatementEntryPublic]
    has_more: bool


# ---- transfers -----------------------------------------------------------------------------


class PostingCreate(_In):
    account_id: uuid.UUID
    side: Side
    amount: Amount
    currency: CurrencyCode


class _TransferFields(_In):
    id: uuid.UUID | None = Field(
        None, description="Optional client-chosen id; derived from the Idempotency-Key if absent."
    )
    pending: Annotated[bool, Field(strict=True)] = False
    timeout_seconds: Annotated[int, Field(strict=True, gt=0, le=10 * 365 * 86400)] | None = Field(
        None, description="For a pending transfer: expire it after this many seconds."
    )
    description: Text = ""
    metadata: Metadata = Field(default_factory=dict)
    effective_at: Rfc3339 | None = None


class TransferShorthandCreate(_TransferFields):
    """The common two-line transfer: debit one account, credit another, the same amount."""

    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: Amount
    currency: CurrencyCode


class TransferPostingsCreate(_TransferFields):
    """A transfer of two or more postings, balanced per currency."""

    postings: Annotated[list[PostingCreate], Field(min_length=2, max_length=64)]


TransferCreate = TransferShorthandCreate | TransferPostingsCreate


class TransferBatchCreate(_In):
    transfers: Annotated[list[TransferCreate], Field(min_length=1, max_length=MAX_BATCH)]
    atomic: Annotated[bool, Field(strict=True)] = False


class PostPendingCreate(_In):
    id: uuid.UUID | None = Field(None, description="Id of the posting transfer.")
    amount: Amount | None = Field(None, description="Post less than held (two-line holds).")
    postings: Annotated[list[PostingCreate], Field(min_length=1, max_length=64)] | None = None
    description: Text = ""
    metadata: Metadata = Field(default_factory=dict)


class VoidCreate(_In):
    id: uuid.UUID | None = Field(None, description="Id of the voiding transfer.")
    description: Text = ""
    metadata: Metadata = Field(default_factory=dict)


class ReverseCreate(_In):
    id: uuid.UUID | None = Field(None, description="Id of the reversal transfer.")
    description: Text = ""
    metadata: Metadata = Field(default_factory=dict)


class PostingPublic(_Out):
    index: int
    account_id: uuid.UUID
    side: Side
    amount: int
    currency: str
    posted_amount: int
    pending_amount: int


class TransferPublic(_Out):
    id: uuid.UUID
    object: Literal["transfer"] = "transfer"
    seq: int
    kind: str
    status: Literal["posted", "pending", "voided", "expired"]
    postings: list[PostingPublic]
    pending_id: uuid.UUID | None
    reversal_of: uuid.UUID | None
    timeout_at: datetime | None
    description: str
    metadata: dict[str, str]
    effective_at: datetime
    created_at: datetime
    hash: str
    resolved_by: uuid.UUID | None
    reversed_by: uuid.UUID | None


class TransfersPublic(_Out):
    data: list[TransferPublic]
    has_more: bool


class BatchResultPublic(_Out):
    id: uuid.UUID
    code: str
    seq: int | None
    detail: str | None


class TransferBatchPublic(_Out):
    object: Literal["transfer_batch"] = "transfer_batch"
    atomic: bool
    data: list[BatchResultPublic]


# ---- events --------------------------------------------------------------------------------


class EventPublic(_Out):
    id: str = Field(description="The event's cursor: pass it as `after` to read what follows.")
    object: Literal["event"] = "event"
    seq: int
    type: str
    object_id: uuid.UUID
    created_at: datetime
    data: dict[str, Any] | None = Field(
        description="The account snapshot, or the transfer as it is now."
    )


class EventsPublic(_Out):
    data: list[EventPublic]
    has_more: bool


# ---- errors --------------------------------------------------------------------------------


class ProblemPublic(_Out):
    """An RFC 9457 problem (``application/problem+json``); ``code`` is the stable part."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["https://settle.dev/errors#insufficient_funds"])
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable error code, one of docs/errors.md")
    param: str | None = Field(None, description="The field at fault, if one is")
    request_id: str | None = Field(description="Also the response's X-Request-Id header")
