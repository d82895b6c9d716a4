"""Apply a batch of transfer requests to locked balances, in order, in memory.

This is the heart of the ledger and it is pure: the store loads the state the batch needs (with
the touched accounts locked), :func:`apply_batch` checks each request against the balances left
by the requests before it and produces every row to write, and the store writes them with
set-based statements and commits once. Nothing here does I/O.

A *unit* is what one caller submitted: either independent requests (each succeeds or fails on
its own) or an atomic group (all succeed or none does). A failed atomic group is rolled back with
an undo log, so later units see the balances as if it had never run.

This loop runs for every transfer, so it is written for speed: per-tenant maps keyed by the
UUID's integer (hashing a ``uuid.UUID`` runs Python code, hashing an int does not), result
tuples instead of dataclasses, and no work for features a request does not use.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from settle.ledger.batch import (
    AccountState,
    BatchOutcome,
    BatchState,
    ChainHead,
    Hold,
    Leg,
    TenantState,
    TransferResult,
    Unit,
)
from settle.ledger.errors import ResultCode
from settle.ledger.hashing import canonical_transfer_hex
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
    "EVENT_TYPES",
    "PAUSE_EVERY",
    "AccountState",
    "BatchOutcome",
    "BatchState",
    "ChainHead",
    "Hold",
    "TenantState",
    "TransferResult",
    "Unit",
    "apply_batch",
]

_R = ResultCode
# How many requests the applier runs between calls of ``BatchState.pause``.
PAUSE_EVERY = 128
_MISSING: Any = object()
_sha256 = hashlib.sha256

EVENT_TYPES: dict[TransferKind, str] = {
    TransferKind.TRANSFER: "transfer.posted",
    TransferKind.PENDING: "transfer.pending",
    TransferKind.POST_PENDING: "transfer.posted",
    TransferKind.VOID_PENDING: "transfer.voided",
    TransferKind.EXPIRE_PENDING: "transfer.expired",
    TransferKind.REVERSAL: "transfer.reversed",
}
_KIND_NAMES = {kind: kind.value for kind in TransferKind}
_RESOLUTION_CODES = {
    TransferKind.POST_PENDING: _R.PENDING_ALREADY_POSTED,
    TransferKind.VOID_PENDING: _R.PENDING_ALREADY_VOIDED,
    TransferKind.EXPIRE_PENDING: _R.PENDING_EXPIRED,
}
_NOT_REVERSIBLE = frozenset(
    {TransferKind.PENDING, TransferKind.VOID_PENDING, TransferKind.EXPIRE_PENDING}
)


class _Refusal(Exception):  # noqa: N818 - internal control flow, never escapes this module
    __slots__ = ("code", "detail")

    def __init__(self, code: ResultCode, detail: str) -> None:
        self.code = code
        self.detail = detail


class _Applier:
    def __init__(self, state: BatchState, outcome: BatchOutcome) -> None:
        self.s = state
        self.out = outcome
        self.undo: list[tuple[Any, ...]] | None = None
        self.last_tenant_id: uuid.UUID | None = None
        self.last_tenant: TenantState = _MISSING

    # ---- request shapes -------------------------------------------------------------------

    def legs_for_spec(self, t: TenantState, req: TransferSpec) -> list[Leg]:
        postings = req.postings
        if len(postings) < 2:
            raise _Refusal(_R.INVALID_POSTINGS, "a transfer needs at least two postings")
        accounts = t.accounts
        pending = req.pending
        legs: list[Leg] = []
        balance: dict[str, int] = {}
        for p in postings:
            amount = p.amount
            if type(amount) is not int or amount <= 0 or amount > MAX_AMOUNT:
                raise _Refusal(_R.INVALID_AMOUNT, f"amount must be a positive integer: {amount!r}")
            acct = accounts.get(p.account_id.int)
            if acct is None:
                raise _Refusal(_R.ACCOUNT_NOT_FOUND, f"account {p.account_id} not found")
            currency = p.currency
            if acct.currency != currency:
                raise _Refusal(
                    _R.CURRENCY_MISMATCH,
                    f"account {p.account_id} holds {acct.currency}, not {currency}",
                )
            if p.side == "debit":
                balance[currency] = balance.get(currency, 0) + amount
                legs.append((acct, "D", 0, amount) if pending else (acct, "D", amount, 0))
            else:
                balance[currency] = balance.get(currency, 0) - amount
                legs.append((acct, "C", 0, amount) if pending else (acct, "C", amount, 0))
        if (
            legs[0][0] is legs[1][0]
            if len(legs) == 2
            else len({id(leg[0]) for leg in legs}) != len(legs)
        ):
            raise _Refusal(_R.INVALID_POSTINGS, "an account may appear once in a transfer")
        if any(balance.values()):
            raise _Refusal(_R.UNBALANCED, "debits and credits differ")
        if len(legs) > 2 and sum(leg[2] + leg[3] for leg in legs if leg[1] == "D") > MAX_AMOUNT:
            # Each side's total must fit in 64 bits, like every counter it lands in.
            raise _Refusal(_R.INVALID_AMOUNT, "the transfer's total exceeds the largest amount")
        return legs

    def timeout_for(self, req: TransferSpec) -> int | None:
        t = req.timeout_seconds
        if t is None:
            return None
        if not req.pending or type(t) is not int or t <= 0:
            raise _Refusal(_R.INVALID_TIMEOUT, "timeout_seconds must be a positive integer")
        timeout_at = self.s.now + t * 1_000_000
        if timeout_at > MAX_AMOUNT:
            raise _Refusal(_R.INVALID_TIMEOUT, "timeout_seconds is too far in the future")
        return timeout_at

    def open_hold(self, t: TenantState, pending_id: uuid.UUID, *, expiring: bool) -> Hold:
        hold = t.holds.get(pending_id.int)
        if hold is None:
            resolution = t.resolved.get(pending_id.int)
            if resolution is None:
                raise _Refusal(_R.PENDING_NOT_FOUND, f"no pending transfer {pending_id}")
            raise _Refusal(_RESOLUTION_CODES[resolution], f"pending transfer {pending_id}")
        timed_out = hold.timeout_at is not None and hold.timeout_at <= self.s.now
        if timed_out and not expiring:
            raise _Refusal(_R.PENDING_EXPIRED, f"pending transfer {pending_id} has timed out")
        if expiring and not timed_out:
            raise _Refusal(_R.INVALID_TIMEOUT, f"pending transfer {pending_id} has not timed out")
        return hold

    @staticmethod
    def amounts_to_post(req: PostPending, hold: Hold) -> list[int]:
        if req.amount is not None and req.postings is not None:
            raise _Refusal(_R.INVALID_POSTINGS, "give either amount or postings, not both")
        if req.amount is not None:
            if len(hold.legs) != 2:
                raise _Refusal(
                    _R.INVALID_POSTINGS, "a partial amount needs a two-line pending transfer"
                )
            a, held = req.amount, hold.legs[0][3]
            if type(a) is not int or a <= 0:
                raise _Refusal(_R.INVALID_AMOUNT, f"amount must be a positive integer: {a!r}")
            if a > held:
                raise _Refusal(_R.AMOUNT_EXCEEDS_PENDING, f"{a} exceeds the pending {held}")
            return [a, a]
        if req.postings is None:
            return [leg[3] for leg in hold.legs]
        wanted = {(p.account_id, "D" if p.side == "debit" else "C"): p for p in req.postings}
        if len(wanted) != len(req.postings):
            raise _Refusal(_R.INVALID_POSTINGS, "an account may appear once per side")
        amounts = []
        balance: dict[str, int] = {}
        for account_id, side, currency, held in hold.legs:
            p = wanted.pop((account_id, side), None)
            a = 0 if p is None else p.amount
            if type(a) is not int or a < 0:
                raise _Refusal(_R.INVALID_AMOUNT, f"amount must be a whole number: {a!r}")
            if p is not None and p.currency != currency:
                raise _Refusal(_R.CURRENCY_MISMATCH, f"the pending line is in {currency}")
            if a > held:
                raise _Refusal(_R.AMOUNT_EXCEEDS_PENDING, f"{a} exceeds the pending {held}")
            balance[currency] = balance.get(currency, 0) + (a if side == "D" else -a)
            amounts.append(a)
        if wanted:
            raise _Refusal(_R.INVALID_POSTINGS, "a posting matches no line of the pending")
        if any(balance.values()):
            raise _Refusal(_R.UNBALANCED, "debits and credits differ")
        if not any(amounts):
            raise _Refusal(_R.INVALID_AMOUNT, "posting nothing is a void")
        return amounts

    def legs_for_reversal(self, t: TenantState, req: ReverseTransfer) -> list[Leg]:
        key = req.reversal_of.int
        accounts = t.accounts
        entry = t.entries.get(key)
        if entry is not None:
            kind = entry[0]
            legs = [(a, side, p, 0) for a, side, p, _q in entry[1]]
        elif key in t.targets:
            kind, stored = t.targets[key]
            legs = [(accounts[a.int], side, amount, 0) for a, side, _c, amount in stored]
        else:
            raise _Refusal(_R.TRANSFER_NOT_FOUND, f"no transfer {req.reversal_of}")
        if kind in _NOT_REVERSIBLE:
            raise _Refusal(_R.NOT_REVERSIBLE, f"a {kind.value} transfer posted nothing")
        if key in t.reversed:
            raise _Refusal(_R.ALREADY_REVERSED, f"transfer {req.reversal_of} is already reversed")
        return [(a, "C" if side == "D" else "D", p, 0) for a, side, p, _q in legs if p]

    # ---- checking and applying ------------------------------------------------------------

    @staticmethod
    def check_legs(legs: list[Leg], *, releasing: bool) -> list[tuple[int, int, int, int]]:
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
        t: TenantState,
        req: TransferRequest,
        kind: TransferKind,
        legs: list[Leg],
        after: list[tuple[int, int, int, int]],
        *,
        pending_id: uuid.UUID | None = None,
        reversal_of: uuid.UUID | None = None,
        timeout_at: int | None = None,
        description: str = "",
        metadata_json: str = "{}",
        effective_at: int | None = None,
    ) -> int:
        out, undo, state = self.out, self.undo, self.s
        # Only now: a refused request never needs its fingerprint (unless its id exists).
        fingerprint = req.fingerprint()
        head = t.head
        if undo is not None:
            undo.append(("head", head, head.last_seq, head.last_hash, head.last_event_seq))
        seq = head.last_seq + 1
        now = state.now
        if effective_at is None:
            effective_at = now
        tid = req.id
        tref = state.encode_id(tid)
        tenant = t.ref
        kind_name = _KIND_NAMES[kind]
        lines = []
        posting_rows = out.postings
        for idx, ((acct, side, posted, pending), counters) in enumerate(
            zip(legs, after, strict=True)
        ):
            if undo is not None:
                undo.append(
                    ("acct", acct, acct.dp, acct.cp, acct.dpe, acct.cpe, acct.last_seq,
                     acct.touched)
                )  # fmt: skip
            acct.dp, acct.cp, acct.dpe, acct.cpe = counters
            acct.last_seq = seq
            if not acct.touched:
                acct.touched = True
                out.touched.append(acct)
            currency = acct.currency
            lines.append(f"{idx}:{acct.hex}:{side}:{currency}:{posted}:{pending}")
            posting_rows.append(
                (tenant, seq, idx, tref, acct.ref, side, currency, posted, pending, now,
                 *counters)
            )  # fmt: skip
        canonical = canonical_transfer_hex(
            t.hex, f"{tid.int:032x}", seq, kind_name,
            "" if pending_id is None else f"{pending_id.int:032x}",
            "" if reversal_of is None else f"{reversal_of.int:032x}",
            timeout_at, description, metadata_json, effective_at, now, fingerprint,
            ";".join(lines),
        )  # fmt: skip
        digest = _sha256(head.last_hash + canonical).digest()
        encode, encode_digest = state.encode_id, state.encode_digest
        out.transfers.append(
            (tenant, tref, seq, kind_name,
             None if pending_id is None else encode(pending_id),
             None if reversal_of is None else encode(reversal_of),
             timeout_at, description, metadata_json, effective_at, now,
             encode_digest(fingerprint), encode_digest(digest))
        )  # fmt: skip
        head.last_seq = seq
        head.last_hash = digest
        event_seq = head.last_event_seq = head.last_event_seq + 1
        out.events.append((tenant, event_seq, EVENT_TYPES[kind], tref, None, now))

        key = tid.int
        if undo is None:
            t.existing[key] = fingerprint
            t.entries[key] = (kind, legs)
        else:
            self._set(t.existing, key, fingerprint)
            self._set(t.entries, key, (kind, legs))
        if kind is TransferKind.PENDING:
            hold_legs = tuple((a.id, side, a.currency, pend) for a, side, _p, pend in legs)
            self._set(t.holds, key, Hold(tid, seq, timeout_at, hold_legs))
            out.holds_added.append((tenant, tref, seq, timeout_at))
        elif pending_id is not None:
            self._set(t.holds, pending_id.int, _MISSING)
            self._set(t.resolved, pending_id.int, kind)
            out.holds_released.append((t.tenant_id, pending_id))
        if reversal_of is not None:
            if undo is not None:
                undo.append(("reversed", t.reversed, reversal_of.int))
            t.reversed.add(reversal_of.int)
        return seq

    def _set(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        if self.undo is not None:
            self.undo.append(("map", mapping, key, mapping.get(key, _MISSING)))
        if value is _MISSING:
            mapping.pop(key, None)
        else:
            mapping[key] = value

    def rollback(self, marks: tuple[int, int, int, int, int]) -> None:
        for entry in reversed(self.undo or ()):
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
                entry[1].discard(entry[2])
        out = self.out
        del out.transfers[marks[0] :]
        del out.postings[marks[1] :]
        del out.events[marks[2] :]
        del out.holds_added[marks[3] :]
        del out.holds_released[marks[4] :]

    def apply_one(self, req: TransferRequest) -> TransferResult:
        tenant_id = req.tenant_id
        if tenant_id is self.last_tenant_id:  # a batch's requests mostly share one tenant
            t = self.last_tenant
        else:
            t = self.last_tenant = self.s.tenants[tenant_id]
            self.last_tenant_id = tenant_id
        known = t.existing.get(req.id.int)
        if known is not None:
            if known == req.fingerprint():
                return TransferResult(req.id, _R.EXISTS)
            return TransferResult(
                req.id,
                _R.EXISTS_WITH_DIFFERENT_FIELDS,
                None,
                f"transfer {req.id} exists with different fields",
            )
        try:
            if isinstance(req, TransferSpec):
                legs = self.legs_for_spec(t, req)
                timeout_at = None if req.timeout_seconds is None else self.timeout_for(req)
                after = self.check_legs(legs, releasing=False)
                meta = req.metadata
                seq = self.commit(
                    t, req,
                    TransferKind.PENDING if req.pending else TransferKind.TRANSFER,
                    legs, after, timeout_at=timeout_at, description=req.description,
                    metadata_json=canonical_json(meta) if meta else "{}",
                    effective_at=None if req.effective_at is None else to_micros(req.effective_at),
                )  # fmt: skip
            elif isinstance(req, PostPending):
                hold = self.open_hold(t, req.pending_id, expiring=False)
                accounts = t.accounts
                legs = [
                    (accounts[a.int], side, amount, -held)
                    for (a, side, _c, held), amount in zip(
                        hold.legs, self.amounts_to_post(req, hold), strict=True
                    )
                ]
                after = self.check_legs(legs, releasing=False)
                seq = self.commit(
                    t, req, TransferKind.POST_PENDING, legs, after,
                    pending_id=req.pending_id, description=req.description,
                    metadata_json=canonical_json(req.metadata),
                )  # fmt: skip
            elif isinstance(req, VoidPending | ExpirePending):
                expiring = isinstance(req, ExpirePending)
                hold = self.open_hold(t, req.pending_id, expiring=expiring)
                accounts = t.accounts
                legs = [(accounts[a.int], side, 0, -held) for a, side, _c, held in hold.legs]
                after = self.check_legs(legs, releasing=True)
                seq = self.commit(
                    t, req,
                    TransferKind.EXPIRE_PENDING if expiring else TransferKind.VOID_PENDING,
                    legs, after, pending_id=req.pending_id,
                    description="" if expiring else req.description,  # type: ignore[union-attr]
                    metadata_json="{}" if expiring else canonical_json(req.metadata),  # type: ignore[union-attr]
                )  # fmt: skip
            else:
                legs = self.legs_for_reversal(t, req)
                after = self.check_legs(legs, releasing=False)
                seq = self.commit(
                    t, req, TransferKind.REVERSAL, legs, after,
                    reversal_of=req.reversal_of, description=req.description,
                    metadata_json=canonical_json(req.metadata),
                )  # fmt: skip
        except _Refusal as refusal:
            return TransferResult(req.id, refusal.code, None, refusal.detail)
        return TransferResult(req.id, _R.OK, seq)


def apply_batch(state: BatchState, units: Sequence[Unit]) -> BatchOutcome:
    """Check and apply every unit in order against ``state``, which it updates in place.

    Returns the rows to write and, per unit, one result per request in the order given.
    """
    outcome = BatchOutcome()
    applier = _Applier(state, outcome)
    apply_one = applier.apply_one
    pause = state.pause
    since_pause = 0
    for unit in units:
        requests = unit.requests
        since_pause += len(requests)
        if pause is not None and since_pause >= PAUSE_EVERY:
            since_pause = 0
            pause()
        if not unit.atomic:
            if pause is None or len(requests) <= PAUSE_EVERY:
                outcome.results.append([apply_one(req) for req in requests])
                continue
            unit_results: list[TransferResult] = []
            for start in range(0, len(requests), PAUSE_EVERY):
                unit_results += map(apply_one, requests[start : start + PAUSE_EVERY])
                pause()
            outcome.results.append(unit_results)
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
            result = apply_one(req)
            results.append(result)
            if not result.code.succeeded:
                applier.rollback(marks)
                detail = f"transfer {req.id} in the same atomic group failed"
                failed_at = len(results) - 1
                results = [
                    result
                    if i == failed_at
                    else TransferResult(other.id, _R.LINKED_TRANSFER_FAILED, None, detail)
                    for i, other in enumerate(unit.requests)
                ]
                break
        outcome.results.append(results)
        applier.undo = None
    for acct in outcome.touched:
        if acct.touched:  # not if an atomic group that touched it was rolled back
            outcome.balances.setdefault(acct.tenant_id, []).append(
                (acct.hex, acct.ref, acct.dp, acct.cp, acct.dpe, acct.cpe, acct.last_seq)
            )
            acct.touched = False
    for tenant_id, t in state.tenants.items():
        head = t.head
        head.last_created_at = max(head.last_created_at, state.now)
        outcome.heads[tenant_id] = (
            head.last_seq,
            head.last_hash,
            head.last_event_seq,
            head.last_created_at,
        )
    return outcome
