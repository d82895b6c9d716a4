"""Apply a batch of transfer requests to locked balances, in order, in memory.

This is the heart of the ledger and it is pure: the store loads the state the batch needs (with
the touched accounts locked), :func:`apply_batch` checks each request against the balances left
by the requests before it and produces every row to write, and the store writes them with
set-based statements and commits once. Nothing here does I/O.

A *unit* is what one caller submitted: either independent requests (each succeeds or fails on
its own) or an atomic group (all succeed or none does). A failed atomic group is rolled back with
an undo log, so later units see the balances as if it had never run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from settle.ledger.errors import ResultCode
from settle.ledger.hashing import canonical_transfer, chain_hash
from settle.ledger.model import MAX_AMOUNT, TransferKind, to_micros
from settle.ledger.requests import (
    ExpirePending,
    PostPending,
    ReverseTransfer,
    TransferRequest,
    TransferSpec,
    VoidPending,
    canonical_json,
)

__all__ = [
    "AccountState",
    "BatchOutcome",
    "BatchState",
    "ChainHead",
    "Hold",
    "PostedLegs",
    "TransferResult",
    "Unit",
    "apply_batch",
]

_R = ResultCode
_MISSING: Any = object()

EVENT_TYPES: dict[TransferKind, str] = {
    TransferKind.TRANSFER: "transfer.posted",
    TransferKind.PENDING: "transfer.pending",
    TransferKind.POST_PENDING: "transfer.posted",
    TransferKind.VOID_PENDING: "transfer.voided",
    TransferKind.EXPIRE_PENDING: "transfer.expired",
    TransferKind.REVERSAL: "transfer.reversed",
}
_RESOLUTION_CODES = {
    TransferKind.POST_PENDING: _R.PENDING_ALREADY_POSTED,
    TransferKind.VOID_PENDING: _R.PENDING_ALREADY_VOIDED,
    TransferKind.EXPIRE_PENDING: _R.PENDING_EXPIRED,
}


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
        "id",
        "last_seq",
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
    ) -> None:
        self.tenant_id = tenant_id
        self.id = account_id
        self.currency = currency
        self.status = status
        limit = overdraft_limit or 0
        # None: unconstrained on that side; otherwise how far the constrained side may go over.
        self.dr_limit: int | None = limit if debits_must_not_exceed_credits else None
        self.cr_limit: int | None = limit if credits_must_not_exceed_debits else None
        self.dp, self.cp, self.dpe, self.cpe = dp, cp, dpe, cpe
        self.last_seq = last_seq
        self.touched = False


@dataclass(slots=True)
class ChainHead:
    """A tenant's sequence counters and the last link of its hash chain."""

    last_seq: int
    last_hash: bytes
    last_event_seq: int
    last_created_at: int


@dataclass(frozen=True, slots=True)
class Hold:
    """An open pending transfer: its legs are (account_id, side "D"/"C", currency, amount)."""

    transfer_id: uuid.UUID
    seq: int
    timeout_at: int | None
    legs: tuple[tuple[uuid.UUID, str, str, int], ...]


@dataclass(frozen=True, slots=True)
class PostedLegs:
    """A committed transfer as a reversal sees it: its kind and posted legs."""

    kind: TransferKind
    legs: tuple[tuple[uuid.UUID, str, str, int], ...]


@dataclass(slots=True)
class BatchState:
    """Everything a batch reads, loaded by the store under lock. Keys are (tenant_id, id)."""

    now: int
    heads: dict[uuid.UUID, ChainHead]
    accounts: dict[tuple[uuid.UUID, uuid.UUID], AccountState]
    existing: dict[tuple[uuid.UUID, uuid.UUID], bytes] = field(default_factory=dict)
    holds: dict[tuple[uuid.UUID, uuid.UUID], Hold] = field(default_factory=dict)
    resolved: dict[tuple[uuid.UUID, uuid.UUID], TransferKind] = field(default_factory=dict)
    reversible: dict[tuple[uuid.UUID, uuid.UUID], PostedLegs] = field(default_factory=dict)
    reversed: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """The outcome of one request: its code, and the sequence number it was committed at."""

    id: uuid.UUID
    code: ResultCode
    seq: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Unit:
    """What one caller submitted: its requests, and whether they stand or fall together."""

    requests: Sequence[TransferRequest]
    atomic: bool = False


@dataclass(slots=True)
class BatchOutcome:
    """The rows a batch writes, and one result list per unit."""

    results: list[list[TransferResult]]
    # (tenant_id, id, seq, kind, pending_id, reversal_of, timeout_at, description, metadata_json,
    #  effective_at, created_at, fingerprint, hash)
    transfers: list[tuple[Any, ...]] = field(default_factory=list)
    # (tenant_id, seq, idx, transfer_id, account_id, side, currency, posted_amount,
    #  pending_amount, created_at, debits_posted, credits_posted, debits_pending, credits_pending)
    postings: list[tuple[Any, ...]] = field(default_factory=list)
    # (tenant_id, seq, type, object_id, payload, created_at)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    holds_added: list[tuple[uuid.UUID, uuid.UUID, int, int | None]] = field(default_factory=list)
    holds_released: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)

    def touched_accounts(self, state: BatchState) -> list[AccountState]:
        return [a for a in state.accounts.values() if a.touched]


class _Refusal(Exception):  # noqa: N818 - internal control flow, never escapes this module
    __slots__ = ("code", "detail")

    def __init__(self, code: ResultCode, detail: str) -> None:
        self.code = code
        self.detail = detail


# Effects of one request: (account, side "D"/"C", posted delta, pending delta, currency)
_Leg = tuple[AccountState, str, int, int]


class _Applier:
    def __init__(self, state: BatchState, outcome: BatchOutcome) -> None:
        self.s = state
        self.out = outcome
        self.undo: list[tuple[Any, ...]] | None = None

    # ---- request shapes -------------------------------------------------------------------

    def legs_for_spec(self, req: TransferSpec) -> tuple[list[_Leg], TransferKind, int | None]:
        postings = req.postings
        if len(postings) < 2:
            raise _Refusal(_R.INVALID_POSTINGS, "a transfer needs at least two postings")
        accounts = self.s.accounts
        tenant = req.tenant_id
        pending = req.pending
        legs: list[_Leg] = []
        sums: dict[str, int] = {}
        seen: set[uuid.UUID] = set()
        for p in postings:
            amount = p.amount
            if type(amount) is not int or amount <= 0 or amount > MAX_AMOUNT:
                raise _Refusal(_R.INVALID_AMOUNT, f"amount must be a positive integer: {amount!r}")
            if p.account_id in seen:
                raise _Refusal(_R.INVALID_POSTINGS, "an account may appear once in a transfer")
            seen.add(p.account_id)
            debit = p.side == "debit"
            sums[p.currency] = sums.get(p.currency, 0) + (amount if debit else -amount)
            acct = accounts.get((tenant, p.account_id))
            if acct is None:
                raise _Refusal(_R.ACCOUNT_NOT_FOUND, f"account {p.account_id} not found")
            if acct.currency != p.currency:
                raise _Refusal(
                    _R.CURRENCY_MISMATCH,
                    f"account {p.account_id} holds {acct.currency}, not {p.currency}",
                )
            side = "D" if debit else "C"
            legs.append((acct, side, 0, amount) if pending else (acct, side, amount, 0))
        if any(sums.values()):
            raise _Refusal(_R.UNBALANCED, "debits and credits differ")
        timeout_at = None
        if req.timeout_seconds is not None:
            t = req.timeout_seconds
            if not pending or type(t) is not int or t <= 0:
                raise _Refusal(
                    _R.INVALID_TIMEOUT, "timeout_seconds must be a positive integer on a pending"
                )
            timeout_at = self.s.now + t * 1_000_000
        return legs, (TransferKind.PENDING if pending else TransferKind.TRANSFER), timeout_at

    def open_hold(self, tenant: uuid.UUID, pending_id: uuid.UUID, *, expiring: bool) -> Hold:
        key = (tenant, pending_id)
        hold = self.s.holds.get(key)
        if hold is None:
            resolution = self.s.resolved.get(key)
            if resolution is None:
                raise _Refusal(_R.PENDING_NOT_FOUND, f"no pending transfer {pending_id}")
            raise _Refusal(_RESOLUTION_CODES[resolution], f"pending transfer {pending_id}")
        timed_out = hold.timeout_at is not None and hold.timeout_at <= self.s.now
        if timed_out and not expiring:
            raise _Refusal(_R.PENDING_EXPIRED, f"pending transfer {pending_id} has timed out")
        if expiring and not timed_out:
            raise _Refusal(_R.INVALID_TIMEOUT, f"pending transfer {pending_id} has not timed out")
        return hold

    def legs_for_post(self, req: PostPending, hold: Hold) -> list[_Leg]:
        amounts = [leg[3] for leg in hold.legs]
        if req.amount is not None and req.postings is not None:
            raise _Refusal(_R.INVALID_POSTINGS, "give either amount or postings, not both")
        if req.amount is not None:
            if len(hold.legs) != 2:
                raise _Refusal(
                    _R.INVALID_POSTINGS, "a partial amount needs a two-line pending transfer"
                )
            a = req.amount
            if type(a) is not int or a <= 0:
                raise _Refusal(_R.INVALID_AMOUNT, f"amount must be a positive integer: {a!r}")
            if a > amounts[0]:
                raise _Refusal(_R.AMOUNT_EXCEEDS_PENDING, f"{a} exceeds the pending {amounts[0]}")
            amounts = [a, a]
        elif req.postings is not None:
            wanted = {(p.account_id, "D" if p.side == "debit" else "C"): p for p in req.postings}
            if len(wanted) != len(req.postings):
                raise _Refusal(_R.INVALID_POSTINGS, "an account may appear once in a transfer")
            amounts = []
            sums: dict[str, int] = {}
            for account_id, side, currency, held in hold.legs:
                p = wanted.pop((account_id, side), None)
                a = 0 if p is None else p.amount
                if type(a) is not int or a < 0:
                    raise _Refusal(_R.INVALID_AMOUNT, f"amount must be a whole number: {a!r}")
                if p is not None and p.currency != currency:
                    raise _Refusal(_R.CURRENCY_MISMATCH, f"the pending line is in {currency}")
                if a > held:
                    raise _Refusal(_R.AMOUNT_EXCEEDS_PENDING, f"{a} exceeds the pending {held}")
                sums[currency] = sums.get(currency, 0) + (a if side == "D" else -a)
                amounts.append(a)
            if wanted:
                raise _Refusal(_R.INVALID_POSTINGS, "a posting matches no line of the pending")
            if any(sums.values()):
                raise _Refusal(_R.UNBALANCED, "debits and credits differ")
            if not any(amounts):
                raise _Refusal(_R.INVALID_AMOUNT, "posting nothing is a void")
        legs: list[_Leg] = []
        for (account_id, side, _currency, held), a in zip(hold.legs, amounts, strict=True):
            acct = self.s.accounts[(req.tenant_id, account_id)]
            legs.append((acct, side, a, -held))
        return legs

    def legs_for_release(self, tenant: uuid.UUID, hold: Hold) -> list[_Leg]:
        accounts = self.s.accounts
        return [(accounts[(tenant, a)], side, 0, -held) for a, side, _c, held in hold.legs]

    def legs_for_reversal(self, req: ReverseTransfer) -> list[_Leg]:
        key = (req.tenant_id, req.reversal_of)
        target = self.s.reversible.get(key)
        if target is None:
            raise _Refusal(_R.TRANSFER_NOT_FOUND, f"no transfer {req.reversal_of}")
        if target.kind in (
            TransferKind.PENDING,
            TransferKind.VOID_PENDING,
            TransferKind.EXPIRE_PENDING,
        ):
            raise _Refusal(_R.NOT_REVERSIBLE, f"a {target.kind.value} transfer posted nothing")
        if key in self.s.reversed:
            raise _Refusal(_R.ALREADY_REVERSED, f"transfer {req.reversal_of} is already reversed")
        accounts = self.s.accounts
        return [
            (accounts[(req.tenant_id, a)], "C" if side == "D" else "D", amount, 0)
            for a, side, _c, amount in target.legs
            if amount
        ]

    # ---- checking and applying ------------------------------------------------------------

    @staticmethod
    def check_legs(legs: list[_Leg], *, releasing: bool) -> list[tuple[int, int, int, int]]:
        """The counters each leg's account would have; refuses if any constraint breaks."""
        after = []
        for acct, side, posted, pending in legs:
            if not releasing and acct.status != "active" and (posted or pending > 0):
                code = _R.ACCOUNT_FROZEN if acct.status == "frozen" else _R.ACCOUNT_CLOSED
                raise _Refusal(code, f"account {acct.id} is {acct.status}")
            dp, cp, dpe, cpe = acct.dp, acct.cp, acct.dpe, acct.cpe
            if side == "D":
                dp += posted
                dpe += pending
                if dp > MAX_AMOUNT or dpe > MAX_AMOUNT:
                    raise _Refusal(_R.BALANCE_OVERFLOW, f"account {acct.id} would overflow")
            else:
                cp += posted
                cpe += pending
                if cp > MAX_AMOUNT or cpe > MAX_AMOUNT:
                    raise _Refusal(_R.BALANCE_OVERFLOW, f"account {acct.id} would overflow")
            if acct.dr_limit is not None and dp + dpe > cp + acct.dr_limit:
                raise _Refusal(
                    _R.INSUFFICIENT_FUNDS, f"account {acct.id} has insufficient available funds"
                )
            if acct.cr_limit is not None and cp + cpe > dp + acct.cr_limit:
                raise _Refusal(_R.EXCEEDS_DEBITS, f"credits would exceed debits on {acct.id}")
            after.append((dp, cp, dpe, cpe))
        return after

    def commit(
        self,
        req: TransferRequest,
        fingerprint: bytes,
        kind: TransferKind,
        legs: list[_Leg],
        after: list[tuple[int, int, int, int]],
        *,
        pending_id: uuid.UUID | None = None,
        reversal_of: uuid.UUID | None = None,
        timeout_at: int | None = None,
    ) -> int:
        s, out, undo = self.s, self.out, self.undo
        tenant = req.tenant_id
        head = s.heads[tenant]
        if undo is not None:
            undo.append(("head", head, head.last_seq, head.last_hash, head.last_event_seq))
        seq = head.last_seq + 1
        now = s.now
        description = getattr(req, "description", "")
        meta = getattr(req, "metadata", None)
        metadata_json = canonical_json(meta) if meta else "{}"
        effective = getattr(req, "effective_at", None)
        effective_at = now if effective is None else to_micros(effective)
        tid = req.id
        lines = []
        posting_rows = out.postings
        for idx, ((acct, side, posted, pending), counters) in enumerate(
            zip(legs, after, strict=True)
        ):
            if undo is not None:
                undo.append(
                    (
                        "acct",
                        acct,
                        acct.dp,
                        acct.cp,
                        acct.dpe,
                        acct.cpe,
                        acct.last_seq,
                        acct.touched,
                    )
                )
            acct.dp, acct.cp, acct.dpe, acct.cpe = counters
            acct.last_seq = seq
            acct.touched = True
            lines.append((idx, acct.id, side, acct.currency, posted, pending))
            posting_rows.append(
                (
                    tenant,
                    seq,
                    idx,
                    tid,
                    acct.id,
                    side,
                    acct.currency,
                    posted,
                    pending,
                    now,
                    *counters,
                )
            )
        canonical = canonical_transfer(
            tenant,
            tid,
            seq,
            kind.value,
            pending_id,
            reversal_of,
            timeout_at,
            description,
            metadata_json,
            effective_at,
            now,
            fingerprint,
            lines,
        )
        digest = chain_hash(head.last_hash, canonical)
        out.transfers.append(
            (
                tenant,
                tid,
                seq,
                kind.value,
                pending_id,
                reversal_of,
                timeout_at,
                description,
                metadata_json,
                effective_at,
                now,
                fingerprint,
                digest,
            )
        )
        head.last_seq = seq
        head.last_hash = digest
        head.last_event_seq += 1
        out.events.append((tenant, head.last_event_seq, EVENT_TYPES[kind], tid, None, now))

        key = (tenant, tid)
        self._set(s.existing, key, fingerprint)
        if kind is TransferKind.PENDING:
            hold_legs = tuple((a.id, side, a.currency, pend) for a, side, _p, pend in legs)
            self._set(s.holds, key, Hold(tid, seq, timeout_at, hold_legs))
            out.holds_added.append((tenant, tid, seq, timeout_at))
        elif pending_id is not None:
            pkey = (tenant, pending_id)
            self._set(s.holds, pkey, _MISSING)
            self._set(s.resolved, pkey, kind)
            out.holds_released.append(pkey)
        if reversal_of is not None:
            rkey = (tenant, reversal_of)
            if undo is not None:
                undo.append(("reversed", rkey))
            s.reversed.add(rkey)
        self._set(
            s.reversible,
            key,
            PostedLegs(kind, tuple((a.id, side, a.currency, p) for a, side, p, _q in legs)),
        )
        return seq

    def _set(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        if self.undo is not None:
            self.undo.append(("map", mapping, key, mapping.get(key, _MISSING)))
        if value is _MISSING:
            mapping.pop(key, None)
        else:
            mapping[key] = value

    def rollback(self, marks: tuple[int, int, int, int, int]) -> None:
        assert self.undo is not None  # noqa: S101 - only called for atomic units
        for entry in reversed(self.undo):
            tag = entry[0]
            if tag == "acct":
                acct = entry[1]
                acct.dp, acct.cp, acct.dpe, acct.cpe, acct.last_seq, acct.touched = entry[2:]
            elif tag == "head":
                head = entry[1]
                head.last_seq, head.last_hash, head.last_event_seq = entry[2:]
            elif tag == "map":
                _tag, mapping, key, old = entry
                if old is _MISSING:
                    mapping.pop(key, None)
                else:
                    mapping[key] = old
            else:
                self.s.reversed.discard(entry[1])
        out = self.out
        del out.transfers[marks[0] :]
        del out.postings[marks[1] :]
        del out.events[marks[2] :]
        del out.holds_added[marks[3] :]
        del out.holds_released[marks[4] :]

    def apply_one(self, req: TransferRequest) -> TransferResult:
        fingerprint = req.fingerprint()
        tenant = req.tenant_id
        known = self.s.existing.get((tenant, req.id))
        if known is not None:
            if known == fingerprint:
                return TransferResult(req.id, _R.EXISTS)
            return TransferResult(
                req.id,
                _R.EXISTS_WITH_DIFFERENT_FIELDS,
                detail=f"transfer {req.id} exists with different fields",
            )
        try:
            if isinstance(req, TransferSpec):
                legs, kind, timeout_at = self.legs_for_spec(req)
                after = self.check_legs(legs, releasing=False)
                seq = self.commit(req, fingerprint, kind, legs, after, timeout_at=timeout_at)
            elif isinstance(req, PostPending):
                hold = self.open_hold(tenant, req.pending_id, expiring=False)
                legs = self.legs_for_post(req, hold)
                after = self.check_legs(legs, releasing=False)
                seq = self.commit(
                    req, fingerprint, TransferKind.POST_PENDING, legs, after,
                    pending_id=req.pending_id,
                )  # fmt: skip
            elif isinstance(req, VoidPending | ExpirePending):
                expiring = isinstance(req, ExpirePending)
                hold = self.open_hold(tenant, req.pending_id, expiring=expiring)
                legs = self.legs_for_release(tenant, hold)
                after = self.check_legs(legs, releasing=True)
                kind = TransferKind.EXPIRE_PENDING if expiring else TransferKind.VOID_PENDING
                seq = self.commit(req, fingerprint, kind, legs, after, pending_id=req.pending_id)
            else:
                legs = self.legs_for_reversal(req)
                after = self.check_legs(legs, releasing=False)
                seq = self.commit(
                    req, fingerprint, TransferKind.REVERSAL, legs, after,
                    reversal_of=req.reversal_of,
                )  # fmt: skip
        except _Refusal as refusal:
            return TransferResult(req.id, refusal.code, detail=refusal.detail)
        return TransferResult(req.id, _R.OK, seq)


def apply_batch(state: BatchState, units: Sequence[Unit]) -> BatchOutcome:
    """Check and apply every unit in order against ``state``, which it updates in place.

    Returns the rows to write and, per unit, one result per request in the order given.
    """
    outcome = BatchOutcome(results=[])
    applier = _Applier(state, outcome)
    for unit in units:
        if not unit.atomic:
            applier.undo = None
            outcome.results.append([applier.apply_one(req) for req in unit.requests])
            continue
        applier.undo = []
        marks = (
            len(outcome.transfers),
            len(outcome.postings),
            len(outcome.events),
            len(outcome.holds_added),
            len(outcome.holds_released),
        )
        results: list[TransferResult] = []
        for req in unit.requests:
            result = applier.apply_one(req)
            results.append(result)
            if not result.code.succeeded:
                applier.rollback(marks)
                detail = f"transfer {req.id} in the same atomic group failed"
                results = [
                    result
                    if i == len(results) - 1
                    else TransferResult(other.id, _R.LINKED_TRANSFER_FAILED, detail=detail)
                    for i, other in enumerate(unit.requests)
                ]
                break
        outcome.results.append(results)
        applier.undo = None
    return outcome
