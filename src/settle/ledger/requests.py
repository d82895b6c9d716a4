"""Transfer requests: what a client asks the ledger to do, before it is checked or committed.

Four shapes: a new transfer (posted at once or pending), posting or voiding a pending transfer,
and reversing a posted one. Each carries a client-chosen ``id``: submitting the same id again is
idempotent (``exists``) when the request is the same, which the request fingerprint decides.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from settle.ledger.model import Side, to_micros

__all__ = [
    "ExpirePending",
    "PostPending",
    "PostingRequest",
    "ReverseTransfer",
    "TransferRequest",
    "TransferSpec",
    "VoidPending",
    "canonical_json",
]

_EMPTY: Mapping[str, str] = {}
_sha256 = hashlib.sha256


def canonical_json(value: Mapping[str, str]) -> str:
    """Deterministic JSON (sorted keys, no spaces) for hashing and storage."""
    if not value:
        return "{}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PostingRequest:
    """One line of a transfer: ``amount`` minor units of ``currency`` to one side of an account."""

    account_id: uuid.UUID
    side: Side
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """A new transfer: posted at once, or held as pending (optionally with a timeout)."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    postings: tuple[PostingRequest, ...]
    pending: bool = False
    timeout_seconds: int | None = None
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    effective_at: datetime | None = None

    @classmethod
    def shorthand(
        cls,
        tenant_id: uuid.UUID,
        id: uuid.UUID,
        *,
        debit_account_id: uuid.UUID,
        credit_account_id: uuid.UUID,
        amount: int,
        currency: str,
        pending: bool = False,
        timeout_seconds: int | None = None,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        effective_at: datetime | None = None,
    ) -> TransferSpec:
        """The common two-line transfer: debit one account, credit another, same amount."""
        return cls(
            tenant_id,
            id,
            (
                PostingRequest(debit_account_id, Side.DEBIT, amount, currency),
                PostingRequest(credit_account_id, Side.CREDIT, amount, currency),
            ),
            pending,
            timeout_seconds,
            description,
            metadata or _EMPTY,
            effective_at,
        )

    def fingerprint(self) -> bytes:
        """SHA-256 of everything the client asked for; equal fingerprints mean the same request."""
        lines = ";".join(
            [f"{p.account_id.int:032x}:{p.side}:{p.amount}:{p.currency}" for p in self.postings]
        )
        effective = "" if self.effective_at is None else str(to_micros(self.effective_at))
        description, metadata = self.description, self.metadata
        text = (
            f"transfer|{self.pending}|{self.timeout_seconds}|{effective}|{lines}|"
            f"{len(description)}:{description}|{canonical_json(metadata) if metadata else '{}'}"
        )
        return _sha256(text.encode()).digest()


@dataclass(frozen=True, slots=True)
class PostPending:
    """Post a pending transfer, in full or in part; whatever is not posted is released.

    ``amount`` posts part of a two-line pending transfer; ``postings`` gives an amount per line
    (matched by account and side) for pending transfers with more lines. With neither, the
    whole pending amount is posted.
    """

    tenant_id: uuid.UUID
    id: uuid.UUID
    pending_id: uuid.UUID
    amount: int | None = None
    postings: tuple[PostingRequest, ...] | None = None
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def fingerprint(self) -> bytes:
        lines = (
            ""
            if self.postings is None
            else ";".join(
                f"{p.account_id.int:032x}:{p.side}:{p.amount}:{p.currency}" for p in self.postings
            )
        )
        text = (
            f"post_pending|{self.pending_id.hex}|{self.amount}|{lines}|"
            f"{len(self.description)}:{self.description}|{canonical_json(self.metadata)}"
        )
        return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True, slots=True)
class VoidPending:
    """Release a pending transfer without posting anything."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    pending_id: uuid.UUID
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def fingerprint(self) -> bytes:
        text = (
            f"void_pending|{self.pending_id.hex}|"
            f"{len(self.description)}:{self.description}|{canonical_json(self.metadata)}"
        )
        return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True, slots=True)
class ExpirePending:
    """The system releasing a pending transfer whose timeout has passed."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    pending_id: uuid.UUID

    def fingerprint(self) -> bytes:
        return hashlib.sha256(f"expire_pending|{self.pending_id.hex}".encode()).digest()


@dataclass(frozen=True, slots=True)
class ReverseTransfer:
    """Undo a posted transfer with a new transfer that mirrors its postings."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    reversal_of: uuid.UUID
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def fingerprint(self) -> bytes:
        text = (
            f"reversal|{self.reversal_of.hex}|"
            f"{len(self.description)}:{self.description}|{canonical_json(self.metadata)}"
        )
        return hashlib.sha256(text.encode()).digest()


TransferRequest = TransferSpec | PostPending | VoidPending | ExpirePending | ReverseTransfer
