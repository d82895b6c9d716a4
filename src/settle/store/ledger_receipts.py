"""Idempotency receipts inside a ledger batch: checked under lock, written with the effect.

A unit that carries a :class:`~settle.store.idempotency.Receipt` is left out of the batch when
its key is stored already (the receipt then gets the stored response), and otherwise has its
rendered response written in the batch's own transaction.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from settle.clock import from_micros
from settle.ledger.apply import BatchOutcome, BatchState, TransferResult, Unit, apply_batch
from settle.ledger.model import Balances, Posting, Side, Transfer, TransferKind
from settle.store.idempotency import StoredResponse

if TYPE_CHECKING:
    from settle.store.idempotency import Receipt, TransferLookup
    from settle.store.ledger_sql import Dialect

__all__ = ["AppliedBatch", "apply_with_receipts", "stored_receipts"]

_SIDES = {"D": Side.DEBIT, "C": Side.CREDIT}

StoredKeys = dict[tuple[uuid.UUID, str], StoredResponse]


class AppliedBatch:
    """A batch applied: its rows, one result list per unit, and the receipts to write."""

    __slots__ = ("outcome", "receipt_rows", "results", "stored")

    def __init__(
        self,
        outcome: BatchOutcome,
        results: list[list[TransferResult]],
        receipt_rows: list[tuple[Any, ...]],
        stored: StoredKeys | None,
    ) -> None:
        self.outcome = outcome
        self.results = results
        self.receipt_rows = receipt_rows
        # The keys found stored when the batch was applied (None: no unit had a receipt).
        self.stored = stored


def stored_receipts(d: Dialect, units: Sequence[Unit]) -> StoredKeys | None:
    """The stored responses of the batch's receipt keys; None when no unit has a receipt."""
    wanted: dict[uuid.UUID, list[str]] = defaultdict(list)
    receipts = False
    for unit in units:
        if unit.receipt is not None:
            receipts = True
            if unit.receipt.key is not None:
                wanted[unit.receipt.tenant_id].append(unit.receipt.key)
    if not receipts:
        return None
    found: StoredKeys = {}
    for tenant, keys in wanted.items():
        clause, param = d.in_texts("key", keys)
        for row in d.rows(
            "SELECT key, fingerprint, status, body, created_at FROM idempotency_keys"
            f" WHERE tenant_id = {d.p} AND {clause}",
            (d.uuid_in(tenant), param),
        ):
            found[tenant, row[0]] = StoredResponse(
                bytes(row[1]), int(row[2]), bytes(row[3]), int(row[4])
            )
    return found


def apply_with_receipts(
    d: Dialect, state: BatchState, units: Sequence[Unit], stored: StoredKeys | None
) -> AppliedBatch:
    """Apply the units whose key is not used yet; render the receipts of those applied."""
    if stored is None:
        outcome = apply_batch(state, units)
        return AppliedBatch(outcome, outcome.results, [], None)
    live: list[Unit] = []
    skipped: set[int] = set()
    claimed: set[tuple[uuid.UUID, str]] = set(stored)
    for i, unit in enumerate(units):
        receipt = unit.receipt
        if receipt is not None and receipt.key is not None:
            key = (receipt.tenant_id, receipt.key)
            if key in claimed:
                # Used before (or by an earlier unit of this very batch): no second effect.
                receipt.stored = stored.get(key)
                skipped.add(i)
                continue
            claimed.add(key)
        live.append(unit)
    outcome = apply_batch(state, live)
    results: list[list[TransferResult]] = []
    rows: list[tuple[Any, ...]] = []
    views = _OutcomeTransfers(outcome, d)  # built only if a receipt asks for a transfer
    applied = iter(outcome.results)
    for i, unit in enumerate(units):
        if i in skipped:
            results.append([])
            continue
        unit_results = next(applied)
        results.append(unit_results)
        owned: Receipt | None = unit.receipt
        if owned is None:
            continue
        tenant = owned.tenant_id
        rendered = owned.rendered = owned.render(unit_results, views.lookup(tenant))
        if rendered is not None and owned.key is not None:
            status, body = rendered
            rows.append((d.uuid_in(tenant), owned.key, owned.fingerprint, status, body, state.now))
    return AppliedBatch(outcome, results, rows, stored)


class _OutcomeTransfers:
    """The transfers a batch is about to commit, as domain objects, built on first use."""

    def __init__(self, outcome: BatchOutcome, d: Dialect) -> None:
        self._outcome = outcome
        self._d = d
        self._by_id: dict[tuple[uuid.UUID, uuid.UUID], Transfer] | None = None

    def lookup(self, tenant_id: uuid.UUID) -> TransferLookup:
        return lambda transfer_id: self.get(tenant_id, transfer_id)

    def get(self, tenant_id: uuid.UUID, transfer_id: uuid.UUID) -> Transfer | None:
        if self._by_id is None:
            self._by_id = self._build()
        return self._by_id.get((tenant_id, transfer_id))

    def _build(self) -> dict[tuple[uuid.UUID, uuid.UUID], Transfer]:
        ref_out, digest_out = self._d.ref_out, self._d.digest_out
        tenants: dict[Any, uuid.UUID] = {}

        def tenant_of(ref: Any) -> uuid.UUID:
            found = tenants.get(ref)
            if found is None:
                found = tenants[ref] = ref_out(ref)
            return found

        legs: dict[tuple[Any, int], list[Posting]] = defaultdict(list)
        for (tref, seq, idx, xref, aref, side, currency, posted, pending, created,
             dp, cp, dpe, cpe) in self._outcome.postings:  # fmt: skip
            legs[tref, seq].append(
                Posting(
                    index=idx,
                    account_id=ref_out(aref),
                    side=_SIDES[side],
                    currency=currency,
                    posted_amount=posted,
                    pending_amount=pending,
                    balances_after=Balances(dp, cp, dpe, cpe),
                    transfer_id=ref_out(xref),
                    seq=seq,
                    created_at=from_micros(created),
                )
            )
        out: dict[tuple[uuid.UUID, uuid.UUID], Transfer] = {}
        for row in self._outcome.transfers:
            (tref, xref, seq, kind, pending_ref, reversal_ref, timeout_at, description,
             metadata_json, effective_at, created_at, _fp, digest) = row  # fmt: skip
            tenant_id, transfer_id = tenant_of(tref), ref_out(xref)
            transfer_kind = TransferKind(kind)
            out[tenant_id, transfer_id] = Transfer(
                tenant_id=tenant_id,
                id=transfer_id,
                seq=seq,
                kind=transfer_kind,
                postings=tuple(legs.get((tref, seq), ())),
                description=description,
                metadata=json.loads(metadata_json),
                effective_at=from_micros(effective_at),
                created_at=from_micros(created_at),
                pending_id=None if pending_ref is None else ref_out(pending_ref),
                reversal_of=None if reversal_ref is None else ref_out(reversal_ref),
                timeout_at=None if timeout_at is None else from_micros(timeout_at),
                hash=digest_out(digest),
                resolution=TransferKind.PENDING if transfer_kind is TransferKind.PENDING else None,
            )
        return out
