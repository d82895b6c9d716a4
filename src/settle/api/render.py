"""Domain objects as JSON bodies (dicts of the ``*Public`` schemas' shape, dumped by orjson).

Rendering by hand keeps the hot path free of a second validation pass; a test checks every
renderer's output against its schema, so the OpenAPI document stays the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from settle.ledger.apply import TransferResult
from settle.ledger.model import Account, Balances, Posting, Side, Transfer, TransferKind

__all__ = [
    "account_json",
    "balances_json",
    "dump",
    "posting_cursor",
    "statement_entry_json",
    "transfer_json",
]

_K = TransferKind
_STATUS_OF_KIND = {
    _K.TRANSFER: "posted",
    _K.POST_PENDING: "posted",
    _K.REVERSAL: "posted",
    _K.VOID_PENDING: "voided",
    _K.EXPIRE_PENDING: "expired",
}
_STATUS_OF_RESOLUTION = {
    None: "pending",
    _K.PENDING: "pending",
    _K.POST_PENDING: "posted",
    _K.VOID_PENDING: "voided",
    _K.EXPIRE_PENDING: "expired",
}


def dump(value: Any) -> bytes:
    """JSON bytes; datetimes as RFC 3339 UTC with a ``Z``."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def balances_json(b: Balances, normal: Side) -> dict[str, int]:
    return {
        "posted": b.posted(normal),
        "pending": b.pending(normal),
        "available": b.available(normal),
        "debits_posted": b.debits_posted,
        "credits_posted": b.credits_posted,
        "debits_pending": b.debits_pending,
        "credits_pending": b.credits_pending,
    }


def account_json(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "object": "account",
        "code": a.code,
        "name": a.name,
        "type": a.type.value,
        "currency": a.currency,
        "parent_id": a.parent_id,
        "status": a.status.value,
        "normal_side": a.normal_side.value,
        "debits_must_not_exceed_credits": a.debits_must_not_exceed_credits,
        "credits_must_not_exceed_debits": a.credits_must_not_exceed_debits,
        "overdraft_limit": a.overdraft_limit,
        "metadata": dict(a.metadata),
        "created_at": a.created_at,
        "balances": balances_json(a.balances, a.normal_side),
        "last_seq": a.last_seq,
    }


def transfer_json(t: Transfer) -> dict[str, Any]:
    status = (
        _STATUS_OF_RESOLUTION[t.resolution] if t.kind is _K.PENDING else _STATUS_OF_KIND[t.kind]
    )
    return {
        "id": t.id,
        "object": "transfer",
        "seq": t.seq,
        "kind": t.kind.value,
        "status": status,
        "postings": [
            {
                "index": p.index,
                "account_id": p.account_id,
                "side": p.side.value,
                "amount": p.amount,
                "currency": p.currency,
                "posted_amount": p.posted_amount,
                "pending_amount": p.pending_amount,
            }
            for p in t.postings
        ],
        "pending_id": t.pending_id,
        "reversal_of": t.reversal_of,
        "timeout_at": t.timeout_at,
        "description": t.description,
        "metadata": dict(t.metadata),
        "effective_at": t.effective_at,
        "created_at": t.created_at,
        "hash": t.hash.hex(),
        "resolved_by": t.resolved_by,
        "reversed_by": t.reversed_by,
    }


def posting_cursor(p: Posting) -> str:
    return f"{p.seq}.{p.index}"


def statement_entry_json(p: Posting, normal: Side) -> dict[str, Any]:
    return {
        "id": posting_cursor(p),
        "transfer_id": p.transfer_id,
        "seq": p.seq,
        "index": p.index,
        "side": p.side.value,
        "amount": p.amount,
        "posted_amount": p.posted_amount,
        "pending_amount": p.pending_amount,
        "currency": p.currency,
        "created_at": p.created_at,
        "balance_after": balances_json(p.balances_after, normal),
    }


def batch_results_json(results: Sequence[TransferResult], atomic: bool) -> dict[str, Any]:
    return {
        "object": "transfer_batch",
        "atomic": atomic,
        "data": [
            {"id": r.id, "code": r.code.value, "seq": r.seq, "detail": r.detail} for r in results
        ],
    }
