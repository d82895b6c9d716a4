"""Verification: recompute every balance from postings and re-walk every hash chain.

Pure: the store streams a tenant's transfers (in sequence order, with their postings), its
accounts, its chain head and its open holds; :class:`ChainVerifier` reports every discrepancy
with the transfer or account at fault.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from settle.ledger.hashing import (
    GENESIS_HASH,
    PostingLine,
    canonical_transfer,
    chain_hash,
    render_lines,
)

__all__ = ["AccountRecord", "ChainVerifier", "Discrepancy", "StoredTransfer"]


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One thing that does not add up."""

    tenant_id: uuid.UUID
    kind: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class StoredTransfer:
    """A transfer row and its posting rows, as read back from the database."""

    id: uuid.UUID
    seq: int
    kind: str
    pending_id: uuid.UUID | None
    reversal_of: uuid.UUID | None
    timeout_at: int | None
    description: str
    metadata_json: str
    effective_at: int
    created_at: int
    fingerprint: bytes
    hash: bytes
    postings: tuple[PostingLine, ...]
    # The counters stored on each posting row: (debits_posted, credits_posted, ...)
    balances_after: tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account's stored counters and constraint flags."""

    id: uuid.UUID
    currency: str
    counters: tuple[int, int, int, int]
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    overdraft_limit: int | None


@dataclass(slots=True)
class ChainVerifier:
    """Feed one tenant's transfers in order, then call :meth:`finish`."""

    tenant_id: uuid.UUID
    problems: list[Discrepancy] = field(default_factory=list)
    transfers: int = 0
    _expected_seq: int = 1
    _last_hash: bytes = GENESIS_HASH
    _last_created_at: int = 0
    _counters: dict[uuid.UUID, list[int]] = field(default_factory=dict)
    _open_pendings: set[uuid.UUID] = field(default_factory=set)

    def _report(self, kind: str, subject: object, detail: str) -> None:
        self.problems.append(Discrepancy(self.tenant_id, kind, str(subject), detail))

    def feed(self, transfer: StoredTransfer) -> None:
        self.transfers += 1
        if transfer.seq != self._expected_seq:
            self._report(
                "sequence_gap", transfer.id, f"seq {transfer.seq}, expected {self._expected_seq}"
            )
        self._expected_seq = transfer.seq + 1
        if transfer.created_at < self._last_created_at:
            self._report("time_went_back", transfer.id, "created_at decreased along the chain")
        self._last_created_at = transfer.created_at
        canonical = canonical_transfer(
            self.tenant_id,
            transfer.id,
            transfer.seq,
            transfer.kind,
            transfer.pending_id,
            transfer.reversal_of,
            transfer.timeout_at,
            transfer.description,
            transfer.metadata_json,
            transfer.effective_at,
            transfer.created_at,
            transfer.fingerprint,
            render_lines(transfer.postings),
        )
        expected = chain_hash(self._last_hash, canonical)
        if expected != transfer.hash:
            self._report(
                "hash_mismatch", transfer.id, f"seq {transfer.seq}: the stored hash does not match"
            )
        # Continue from the stored hash so one bad link is reported once, not for every
        # later transfer.
        self._last_hash = transfer.hash
        if len(transfer.postings) < 2:
            self._report("too_few_postings", transfer.id, f"{len(transfer.postings)} postings")
        sums: dict[str, list[int]] = {}
        for (_i, account, side, currency, posted, pending), after in zip(
            transfer.postings, transfer.balances_after, strict=True
        ):
            s = sums.setdefault(currency, [0, 0])
            sign = 1 if side == "D" else -1
            s[0] += sign * posted
            s[1] += sign * pending
            c = self._counters.setdefault(account, [0, 0, 0, 0])
            if side == "D":
                c[0] += posted
                c[2] += pending
            else:
                c[1] += posted
                c[3] += pending
            if tuple(c) != after:
                self._report(
                    "running_balance_mismatch",
                    account,
                    f"after seq {transfer.seq}: stored {after}, recomputed {tuple(c)}",
                )
                c[:] = after
        for currency, (posted, pending) in sums.items():
            if posted or pending:
                self._report("unbalanced_transfer", transfer.id, f"{currency} does not balance")
        if transfer.kind == "pending":
            self._open_pendings.add(transfer.id)
        elif transfer.pending_id is not None:
            if transfer.pending_id not in self._open_pendings:
                self._report("pending_resolved_twice", transfer.id, f"{transfer.pending_id}")
            self._open_pendings.discard(transfer.pending_id)

    def finish(
        self,
        accounts: Iterable[AccountRecord],
        head: tuple[int, bytes] | None,
        open_holds: set[uuid.UUID],
    ) -> list[Discrepancy]:
        """Compare the recomputed state with the stored accounts, chain head and holds."""
        last_seq, last_hash = head if head is not None else (0, GENESIS_HASH)
        if last_seq != self._expected_seq - 1 or last_hash != self._last_hash:
            self._report(
                "chain_head_mismatch",
                self.tenant_id,
                f"head at seq {last_seq}, chain ends at seq {self._expected_seq - 1}",
            )
        totals: dict[str, list[int]] = {}
        for account in accounts:
            recomputed = tuple(self._counters.pop(account.id, [0, 0, 0, 0]))
            if recomputed != account.counters:
                self._report(
                    "balance_mismatch",
                    account.id,
                    f"stored {account.counters}, recomputed from postings {recomputed}",
                )
            dp, cp, dpe, cpe = recomputed
            limit = account.overdraft_limit or 0
            if account.debits_must_not_exceed_credits and dp + dpe > cp + limit:
                self._report("constraint_broken", account.id, "debits exceed credits")
            if account.credits_must_not_exceed_debits and cp + cpe > dp + limit:
                self._report("constraint_broken", account.id, "credits exceed debits")
            t = totals.setdefault(account.currency, [0, 0])
            t[0] += dp - cp
            t[1] += dpe - cpe
        for account_id in self._counters:
            self._report("unknown_account", account_id, "postings reference a missing account")
        for currency, (posted, pending) in totals.items():
            if posted or pending:
                self._report(
                    "money_created_or_destroyed",
                    currency,
                    f"balances sum to {posted} posted, {pending} pending",
                )
        if open_holds != self._open_pendings:
            extra = open_holds - self._open_pendings
            missing = self._open_pendings - open_holds
            self._report(
                "holds_mismatch",
                self.tenant_id,
                f"{len(extra)} hold rows without an open pending, {len(missing)} pendings missing",
            )
        return self.problems
