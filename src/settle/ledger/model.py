"""The ledger's domain model: accounts, balances, transfers and postings.

Money is integer minor units; every account holds one currency. Transfers and postings are
immutable once committed: a pending transfer is resolved by a *new* transfer (post, void or
expiry) and a posted one is undone by a new reversal.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from settle.clock import from_micros, to_micros
from settle.ledger.errors import InvalidStatusTransitionError

__all__ = [
    "MAX_AMOUNT",
    "Account",
    "AccountStatus",
    "AccountType",
    "Balances",
    "NewAccount",
    "Posting",
    "Side",
    "Transfer",
    "TransferKind",
    "from_micros",
    "to_micros",
]

# Counters are BIGINT in the database: any amount or balance must fit in a signed 64-bit integer.
MAX_AMOUNT = 2**63 - 1


class Side(StrEnum):
    """Which column of an account a posting lands in."""

    DEBIT = "debit"
    CREDIT = "credit"

    @property
    def opposite(self) -> Side:
        return Side.CREDIT if self is Side.DEBIT else Side.DEBIT


class AccountType(StrEnum):
    """The five account types of double-entry bookkeeping; each has a normal balance side."""

    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"

    @property
    def normal_side(self) -> Side:
        """Debit for assets and expenses, credit for liabilities, equity and revenue."""
        return Side.DEBIT if self in (AccountType.ASSET, AccountType.EXPENSE) else Side.CREDIT


class AccountStatus(StrEnum):
    """What an account may still do with money."""

    ACTIVE = "active"  # takes transfers on both sides
    FROZEN = "frozen"  # takes no new transfers; existing holds may still be voided or expire
    CLOSED = "closed"  # empty for good: no transfers, ever again

    def check_transition(self, target: AccountStatus) -> None:
        """Raise unless the account may move from this status to ``target``."""
        if target not in _STATUS_TRANSITIONS[self]:
            raise InvalidStatusTransitionError(
                f"an account cannot go from {self.value} to {target.value}", param="status"
            )


_STATUS_TRANSITIONS: Mapping[AccountStatus, frozenset[AccountStatus]] = {
    AccountStatus.ACTIVE: frozenset(
        {AccountStatus.ACTIVE, AccountStatus.FROZEN, AccountStatus.CLOSED}
    ),
    AccountStatus.FROZEN: frozenset(
        {AccountStatus.FROZEN, AccountStatus.ACTIVE, AccountStatus.CLOSED}
    ),
    AccountStatus.CLOSED: frozenset({AccountStatus.CLOSED}),
}


class TransferKind(StrEnum):
    """What a transfer does; each kind is one immutable entry in the journal."""

    TRANSFER = "transfer"  # posts its postings at once
    PENDING = "pending"  # holds its postings: counts against available until resolved
    POST_PENDING = "post_pending"  # posts a pending transfer in full or in part, releasing it
    VOID_PENDING = "void_pending"  # releases a pending transfer without posting anything
    EXPIRE_PENDING = "expire_pending"  # the system releasing a pending transfer past its timeout
    REVERSAL = "reversal"  # posts the mirror image of an earlier posted transfer


@dataclass(frozen=True, slots=True)
class Balances:
    """An account's four counters, from which every balance is derived."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def posted(self, normal: Side) -> int:
        """Posted balance on the normal side (positive when the account holds its normal value)."""
        diff = self.debits_posted - self.credits_posted
        return diff if normal is Side.DEBIT else -diff

    def pending(self, normal: Side) -> int:
        """Net amount on hold, on the normal side."""
        diff = self.debits_pending - self.credits_pending
        return diff if normal is Side.DEBIT else -diff

    def available(self, normal: Side) -> int:
        """Posted balance less outgoing holds: what can be spent now. Incoming holds don't count."""
        if normal is Side.DEBIT:
            return self.debits_posted - self.credits_posted - self.credits_pending
        return self.credits_posted - self.debits_posted - self.debits_pending

    def __add__(self, other: Balances) -> Balances:
        return Balances(
            self.debits_posted + other.debits_posted,
            self.credits_posted + other.credits_posted,
            self.debits_pending + other.debits_pending,
            self.credits_pending + other.credits_pending,
        )


@dataclass(frozen=True, slots=True)
class NewAccount:
    """A request to open an account. ``id`` may be supplied by the client (then it's idempotent)."""

    tenant_id: uuid.UUID
    code: str
    name: str
    type: AccountType
    currency: str
    id: uuid.UUID | None = None
    parent_id: uuid.UUID | None = None
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    overdraft_limit: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Account:
    """An account with its balances as of its last transfer."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    code: str
    name: str
    type: AccountType
    currency: str
    parent_id: uuid.UUID | None
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    overdraft_limit: int | None
    status: AccountStatus
    metadata: Mapping[str, str]
    created_at: datetime
    balances: Balances
    last_seq: int = 0

    @property
    def normal_side(self) -> Side:
        return self.type.normal_side

    @property
    def posted_balance(self) -> int:
        return self.balances.posted(self.normal_side)

    @property
    def pending_balance(self) -> int:
        return self.balances.pending(self.normal_side)

    @property
    def available_balance(self) -> int:
        return self.balances.available(self.normal_side)


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of a committed transfer, with the account's counters right after it."""

    index: int
    account_id: uuid.UUID
    side: Side
    currency: str
    posted_amount: int
    pending_amount: int
    balances_after: Balances
    # Where the line sits in the journal (what a statement shows and pages by).
    transfer_id: uuid.UUID | None = None
    seq: int = 0
    created_at: datetime | None = None

    @property
    def amount(self) -> int:
        """The amount this line moves or holds (a release shows the amount released)."""
        return self.posted_amount or abs(self.pending_amount)


@dataclass(frozen=True, slots=True)
class Transfer:
    """A committed journal entry. ``status`` is derived for pending transfers."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    seq: int
    kind: TransferKind
    postings: tuple[Posting, ...]
    description: str
    metadata: Mapping[str, str]
    effective_at: datetime
    created_at: datetime
    pending_id: uuid.UUID | None = None
    reversal_of: uuid.UUID | None = None
    timeout_at: datetime | None = None
    hash: bytes = b""
    # For a pending transfer: PENDING while open, else the kind of the transfer that resolved it
    # (POST_PENDING, VOID_PENDING or EXPIRE_PENDING); None for other kinds.
    resolution: TransferKind | None = None
    resolved_by: uuid.UUID | None = None
    reversed_by: uuid.UUID | None = None
