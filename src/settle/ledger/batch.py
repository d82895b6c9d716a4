"""The state a ledger batch works on, and what it produces.

The store loads a :class:`BatchState` (with the touched accounts locked), the applier in
:mod:`settle.ledger.apply` mutates it while checking each request, and fills a
:class:`BatchOutcome` with every row to write and one :class:`TransferResult` per request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from settle.ledger.errors import ResultCode
    from settle.ledger.model import TransferKind
    from settle.ledger.requests import TransferRequest

__all__ = [
    "AccountState",
    "BatchOutcome",
    "BatchState",
    "ChainHead",
    "Hold",
    "Leg",
    "StoredLeg",
    "TenantState",
    "TransferResult",
    "Unit",
]


class AccountState:
    """An account's mutable counters while a batch runs (the row is locked meanwhile)."""

    __slots__ = (
        "cp",
        "cpe",
        "cr_limit",
        "currency",
        "dp",
        "dpe",
        "dr_limit",
        "hex",
        "id",
        "last_seq",
        "ref",
        "status",
        "tenant_id",
        "touched",
    )

    def __init__(
        self,
        tenant_id: uuid.UUID,
        account_id: uuid.UUID,
        currency: str,
        status: str,
        debits_must_not_exceed_credits: bool,
        credits_must_not_exceed_debits: bool,
        overdraft_limit: int | None,
        dp: int,
        cp: int,
        dpe: int,
        cpe: int,
        last_seq: int,
        ref: Any = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.id = account_id
        self.hex = f"{account_id.int:032x}"  # as the canonical form spells it
        # The id as the store writes it (e.g. hex text on SQLite), computed once per batch.
        self.ref = account_id if ref is None else ref
        self.currency = currency
        self.status = status
        limit = overdraft_limit or 0
        # None: unconstrained on that side; otherwise how far the constrained side may go over.
        self.dr_limit: int | None = limit if debits_must_not_exceed_credits else None
        self.cr_limit: int | None = limit if credits_must_not_exceed_debits else None
        self.dp, self.cp, self.dpe, self.cpe = dp, cp, dpe, cpe
        self.last_seq = last_seq
        self.touched = False


class ChainHead:
    """A tenant's sequence counters and the last link of its hash chain."""

    __slots__ = ("last_created_at", "last_event_seq", "last_hash", "last_seq")

    def __init__(
        self, last_seq: int, last_hash: bytes, last_event_seq: int, last_created_at: int
    ) -> None:
        self.last_seq = last_seq
        self.last_hash = last_hash
        self.last_event_seq = last_event_seq
        self.last_created_at = last_created_at


# A leg as loaded from storage: (account_id, side "D"/"C", currency, amount)
StoredLeg = tuple[uuid.UUID, str, str, int]
# A leg being applied: (account, side "D"/"C", posted delta, pending delta)
Leg = tuple[AccountState, str, int, int]


class Hold(NamedTuple):
    """An open pending transfer and the amounts it holds, line by line."""

    transfer_id: uuid.UUID
    seq: int
    timeout_at: int | None
    legs: tuple[StoredLeg, ...]


class TenantState:
    """One tenant's part of a batch. Maps are keyed by ``uuid.int``."""

    __slots__ = (
        "accounts",
        "entries",
        "existing",
        "head",
        "hex",
        "holds",
        "ref",
        "resolved",
        "reversed",
        "targets",
        "tenant_id",
    )

    def __init__(self, tenant_id: uuid.UUID, head: ChainHead, ref: Any = None) -> None:
        self.tenant_id = tenant_id
        self.hex = f"{tenant_id.int:032x}"  # as the canonical form spells it
        self.ref = tenant_id if ref is None else ref
        self.head = head
        self.accounts: dict[int, AccountState] = {}
        # Fingerprints of transfers that exist already (in the database or earlier in the batch).
        self.existing: dict[int, bytes] = {}
        self.holds: dict[int, Hold] = {}
        # For pendings no longer open: the kind of transfer that resolved them.
        self.resolved: dict[int, TransferKind] = {}
        # Reversal targets loaded from the database: kind and posted legs.
        self.targets: dict[int, tuple[TransferKind, tuple[StoredLeg, ...]]] = {}
        self.reversed: set[int] = set()
        # Transfers committed earlier in this batch: kind and applied legs.
        self.entries: dict[int, tuple[TransferKind, list[Leg]]] = {}


class BatchState:
    """Everything a batch reads, loaded by the store under lock."""

    __slots__ = ("encode_digest", "encode_id", "now", "pause", "tenants")

    def __init__(
        self,
        now: int,
        tenants: dict[uuid.UUID, TenantState],
        encode_id: Callable[[uuid.UUID], Any] | None = None,
        encode_digest: Callable[[bytes], Any] | None = None,
        pause: Callable[[], None] | None = None,
    ) -> None:
        self.now = now
        self.tenants = tenants
        # How the store writes an id and a digest (identity for native columns).
        self.encode_id: Callable[[uuid.UUID], Any] = encode_id or (lambda value: value)
        self.encode_digest: Callable[[bytes], Any] = encode_digest or (lambda value: value)
        # Called every PAUSE_EVERY requests: a point where the applier may let another thread
        # run (the committer of the previous batch waits for the interpreter meanwhile).
        self.pause = pause


class TransferResult(NamedTuple):
    """The outcome of one request: its code, and the sequence number it was committed at."""

    id: uuid.UUID
    code: ResultCode
    seq: int | None = None
    detail: str | None = None


class Unit(NamedTuple):
    """What one caller submitted: its requests, and whether they stand or fall together.

    ``receipt`` is opaque to the ledger: a record the store writes in the same transaction as
    the unit's effect (the HTTP API's idempotency key and response).
    """

    requests: Sequence[TransferRequest]
    atomic: bool = False
    receipt: Any = None


class BatchOutcome:
    """The rows a batch writes, and one result list per unit."""

    __slots__ = (
        "balances",
        "events",
        "heads",
        "holds_added",
        "holds_released",
        "postings",
        "results",
        "touched",
        "transfers",
    )

    def __init__(self) -> None:
        self.results: list[list[TransferResult]] = []
        # (tenant, id, seq, kind, pending_id, reversal_of, timeout_at, description,
        #  metadata_json, effective_at, created_at, fingerprint, hash)
        self.transfers: list[tuple[Any, ...]] = []
        # (tenant, seq, idx, transfer_id, account_id, side, currency, posted_amount,
        #  pending_amount, created_at, debits_posted, credits_posted, debits_pending,
        #  credits_pending)
        self.postings: list[tuple[Any, ...]] = []
        # (tenant, seq, type, object_id, payload, created_at)
        self.events: list[tuple[Any, ...]] = []
        # (tenant, transfer_id, seq, timeout_at)
        self.holds_added: list[tuple[Any, ...]] = []
        # (tenant_id, transfer_id)
        self.holds_released: list[tuple[uuid.UUID, uuid.UUID]] = []
        self.touched: list[AccountState] = []
        # Snapshots taken when the batch is done (the next batch may change the live objects):
        # per tenant, (account id as 32 hex digits, ref, debits_posted, credits_posted,
        # debits_pending, credits_pending, last_seq) of every account the batch changed...
        self.balances: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
        # ...and (last_seq, last_hash, last_event_seq, last_created_at) of its chain head.
        self.heads: dict[uuid.UUID, tuple[int, bytes, int, int]] = {}
