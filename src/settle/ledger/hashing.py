"""Tamper evidence: the canonical form of a committed transfer and the per-tenant hash chain.

``hash = SHA-256(previous hash ‖ canonical transfer)``. The canonical form is built from the
stored columns only, so ``settle ledger verify`` can recompute every link from the database.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

__all__ = [
    "GENESIS_HASH",
    "PostingLine",
    "canonical_transfer",
    "canonical_transfer_hex",
    "chain_hash",
    "render_lines",
]

GENESIS_HASH = bytes(32)

# (idx, account_id, side "D"/"C", currency, posted_amount, pending_amount)
PostingLine = tuple[int, uuid.UUID, str, str, int, int]


def canonical_transfer(
    tenant_id: uuid.UUID,
    transfer_id: uuid.UUID,
    seq: int,
    kind: str,
    pending_id: uuid.UUID | None,
    reversal_of: uuid.UUID | None,
    timeout_at: int | None,
    description: str,
    metadata_json: str,
    effective_at: int,
    created_at: int,
    fingerprint: bytes,
    lines: str,
) -> bytes:
    """The bytes that stand for one committed transfer in the hash chain.

    ``lines`` is :func:`render_lines` of its postings. Free text is length-prefixed so no
    choice of description can shift a field boundary; ids are lowercase hex (``uuid.hex``).
    """
    return canonical_transfer_hex(
        f"{tenant_id.int:032x}", f"{transfer_id.int:032x}", seq, kind,
        "" if pending_id is None else f"{pending_id.int:032x}",
        "" if reversal_of is None else f"{reversal_of.int:032x}",
        timeout_at, description, metadata_json, effective_at, created_at, fingerprint, lines,
    )  # fmt: skip


def canonical_transfer_hex(
    tenant_hex: str,
    transfer_hex: str,
    seq: int,
    kind: str,
    pending_hex: str,
    reversal_hex: str,
    timeout_at: int | None,
    description: str,
    metadata_json: str,
    effective_at: int,
    created_at: int,
    fingerprint: bytes,
    lines: str,
) -> bytes:
    """:func:`canonical_transfer` with the ids already spelled as hex ("" for none).

    The batch applier's hot path: it knows the tenant's hex once per batch.
    """
    return (
        f"v1|{tenant_hex}|{transfer_hex}|{seq}|{kind}|{pending_hex}|{reversal_hex}|"
        f"{'' if timeout_at is None else timeout_at}|{len(description)}:{description}|"
        f"{len(metadata_json)}:{metadata_json}|{effective_at}|{created_at}|{fingerprint.hex()}|"
        f"{lines}"
    ).encode()


def render_lines(postings: Iterable[PostingLine]) -> str:
    """The postings part of the canonical form (``lines`` of :func:`canonical_transfer`)."""
    return ";".join(f"{i}:{a.int:032x}:{s}:{c}:{p}:{q}" for i, a, s, c, p, q in postings)


def chain_hash(previous: bytes, canonical: bytes) -> bytes:
    """The next link of a tenant's chain."""
    return hashlib.sha256(previous + canonical).digest()
