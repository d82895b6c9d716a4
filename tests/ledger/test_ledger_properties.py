"""Random ledger stories, checked step by step against an independent model of the books.

A hypothesis state machine opens accounts in USD and JPY (wallets that must not go below zero,
banks that must not be over-credited, with and without overdraft limits, and unconstrained
equity) and then moves money with every kind of request: two- and three-line transfers,
pending transfers with and without a timeout, posting them in full, by ``amount`` or line by
line, voiding them, letting the clock run past their timeout and the expiry job release them,
reversals, atomic and non-atomic batches that mix good and bad requests, freezing, unfreezing
and closing accounts, and re-submitting earlier requests.

The test keeps its own books: for every request it predicts the result code and sequence number,
and after every step it compares every stored counter with its prediction. On top of that it
checks the ledger's invariants: each currency sums to zero (posted and pending apart), no
constrained account is over its limit, and ``verify_ledger`` recomputes the same balances from
the postings and re-walks the hash chain. Each example runs on a fresh database, SQLite or
PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from settle.ledger.apply import Unit
from settle.ledger.errors import AccountNotEmptyError, InvalidStatusTransitionError, ResultCode
from settle.ledger.model import (
    MAX_AMOUNT,
    AccountStatus,
    AccountType,
    Balances,
    NewAccount,
    Side,
    TransferKind,
    from_micros,
)
from settle.ledger.requests import (
    ExpirePending,
    PostingRequest,
    PostPending,
    ReverseTransfer,
    TransferRequest,
    TransferSpec,
    VoidPending,
)
from settle.ledger.service import expire_pending, open_account, update_account
from settle.store.db import create_db_engine, upgrade_database
from settle.store.ledger_batch import SqlBatchCommitter
from settle.store.ledger_repo import AccountQuery
from settle.store.ledger_store import LedgerStore
from settle.store.ledger_verify import verify_ledger

if TYPE_CHECKING:
    from settle.ledger.apply import TransferResult

R = ResultCode
USD, JPY = "USD", "JPY"
START = 1_700_000_000_000_000  # 2023-11-14, in microseconds since the epoch
SECOND = 1_000_000
AMOUNTS = st.integers(1, 300)

# ---- the model ------------------------------------------------------------------------------


class FakeClock:
    """Time that moves only when the story says so."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Refused(Exception):  # noqa: N818 - the model's control flow, never escapes Books.apply
    def __init__(self, code: ResultCode) -> None:
        self.code = code


# (account, "D" or "C", posted amount, pending amount: positive holds, negative releases)
Move = tuple[uuid.UUID, str, int, int]
# (account, "D" or "C", currency, amount)
Line = tuple[uuid.UUID, str, str, int]


@dataclass
class Book:
    """What one account should hold. A limit of None means that side is unconstrained."""

    currency: str
    debit_limit: int | None
    credit_limit: int | None
    status: AccountStatus = AccountStatus.ACTIVE
    counters: tuple[int, int, int, int] = (0, 0, 0, 0)  # debits/credits posted, pending

    def after(self, side: str, posted: int, pending: int) -> tuple[int, int, int, int]:
        dp, cp, dpe, cpe = self.counters
        if side == "D":
            return dp + posted, cp, dpe + pending, cpe
        return dp, cp + posted, dpe, cpe + pending


@dataclass(frozen=True)
class Hold:
    lines: tuple[Line, ...]
    timeout_at: int | None


@dataclass(frozen=True)
class Entry:
    """A committed transfer as the model expects to read it back."""

    seq: int
    kind: TransferKind
    moves: tuple[Move, ...]
    pending_id: uuid.UUID | None = None
    reversal_of: uuid.UUID | None = None
    timeout_at: int | None = None


_ALREADY = {
    TransferKind.POST_PENDING: R.PENDING_ALREADY_POSTED,
    TransferKind.VOID_PENDING: R.PENDING_ALREADY_VOIDED,
    TransferKind.EXPIRE_PENDING: R.PENDING_EXPIRED,
}
_POSTED_NOTHING = (TransferKind.PENDING, TransferKind.VOID_PENDING, TransferKind.EXPIRE_PENDING)


@dataclass
class Books:
    """The ledger as the test expects it: written from the documented rules, not the engine."""

    now: int
    accounts: dict[uuid.UUID, Book] = field(default_factory=dict)
    requests: dict[uuid.UUID, TransferRequest] = field(default_factory=dict)
    journal: dict[uuid.UUID, Entry] = field(default_factory=dict)
    holds: dict[uuid.UUID, Hold] = field(default_factory=dict)
    settled: dict[uuid.UUID, tuple[TransferKind, uuid.UUID]] = field(default_factory=dict)
    reversed_by: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    pendings: list[uuid.UUID] = field(default_factory=list)
    seq: int = 0

    def copy(self) -> Books:
        """A copy to try requests on (requests, holds and entries are immutable: shared)."""
        return dataclasses.replace(
            self,
            accounts={i: dataclasses.replace(book) for i, book in self.accounts.items()},
            requests=dict(self.requests),
            journal=dict(self.journal),
            holds=dict(self.holds),
            settled=dict(self.settled),
            reversed_by=dict(self.reversed_by),
            pendings=list(self.pendings),
        )

    def ids(self, currency: str) -> list[uuid.UUID]:
        return [i for i, book in self.accounts.items() if book.currency == currency]

    def apply(self, req: TransferRequest) -> tuple[ResultCode, int | None]:
        """The result the ledger must give ``req`` now; a success is booked here too."""
        earlier = self.requests.get(req.id)
        if earlier is not None:
            return (R.EXISTS if earlier == req else R.EXISTS_WITH_DIFFERENT_FIELDS), None
        try:
            if isinstance(req, TransferSpec):
                return R.OK, self._new_transfer(req)
            if isinstance(req, PostPending):
                hold = self._open_hold(req.pending_id, expiring=False)
                moves = self._post_moves(req, hold)
                return R.OK, self._book(req, TransferKind.POST_PENDING, moves, req.pending_id)
            if isinstance(req, VoidPending | ExpirePending):
                expiring = isinstance(req, ExpirePending)
                hold = self._open_hold(req.pending_id, expiring=expiring)
                moves = [(a, side, 0, -amount) for a, side, _c, amount in hold.lines]
                kind = TransferKind.EXPIRE_PENDING if expiring else TransferKind.VOID_PENDING
                return R.OK, self._book(req, kind, moves, req.pending_id, releasing=True)
            return R.OK, self._reverse(req)
        except Refused as refusal:
            return refusal.code, None

    def _new_transfer(self, req: TransferSpec) -> int:
        if len(req.postings) < 2:
            raise Refused(R.INVALID_POSTINGS)
        seen: set[uuid.UUID] = set()
        net: dict[str, int] = {}
        moves: list[Move] = []
        for p in req.postings:
            if p.amount <= 0:
                raise Refused(R.INVALID_AMOUNT)
            if p.account_id in seen:
                raise Refused(R.INVALID_POSTINGS)
            seen.add(p.account_id)
            side = "D" if p.side is Side.DEBIT else "C"
            net[p.currency] = net.get(p.currency, 0) + (p.amount if side == "D" else -p.amount)
            book = self.accounts.get(p.account_id)
            if book is None:
                raise Refused(R.ACCOUNT_NOT_FOUND)
            if book.currency != p.currency:
                raise Refused(R.CURRENCY_MISMATCH)
            moves.append(
                (p.account_id, side, 0, p.amount)
                if req.pending
                else (p.account_id, side, p.amount, 0)
            )
        if any(net.values()):
            raise Refused(R.UNBALANCED)
        timeout_at = None
        if req.timeout_seconds is not None:
            if not req.pending or req.timeout_seconds <= 0:
                raise Refused(R.INVALID_TIMEOUT)
            timeout_at = self.now + req.timeout_seconds * SECOND
        kind = TransferKind.PENDING if req.pending else TransferKind.TRANSFER
        seq = self._book(req, kind, moves, timeout_at=timeout_at)
        if req.pending:
            lines = tuple((a, side, self.accounts[a].currency, q) for a, side, _p, q in moves)
            self.holds[req.id] = Hold(lines, timeout_at)
            self.pendings.append(req.id)
        return seq

    def _open_hold(self, pending_id: uuid.UUID, *, expiring: bool) -> Hold:
        hold = self.holds.get(pending_id)
        if hold is None:
            if pending_id in self.settled:
                raise Refused(_ALREADY[self.settled[pending_id][0]])
            raise Refused(R.PENDING_NOT_FOUND)
        timed_out = hold.timeout_at is not None and hold.timeout_at <= self.now
        if timed_out and not expiring:
            raise Refused(R.PENDING_EXPIRED)
        if expiring and not timed_out:
            raise Refused(R.INVALID_TIMEOUT)
        return hold

    def _post_moves(self, req: PostPending, hold: Hold) -> list[Move]:
        held = [line[3] for line in hold.lines]
        if req.amount is not None and req.postings is not None:
            raise Refused(R.INVALID_POSTINGS)
        amounts = held
        if req.amount is not None:
            if len(hold.lines) != 2:
                raise Refused(R.INVALID_POSTINGS)
            if req.amount <= 0:
                raise Refused(R.INVALID_AMOUNT)
            if req.amount > held[0]:
                raise Refused(R.AMOUNT_EXCEEDS_PENDING)
            amounts = [req.amount, req.amount]
        elif req.postings is not None:
            wanted = {(p.account_id, "D" if p.side is Side.DEBIT else "C"): p for p in req.postings}
            if len(wanted) != len(req.postings):
                raise Refused(R.INVALID_POSTINGS)
            amounts, net = [], {}
            for account, side, currency, amount_held in hold.lines:
                p = wanted.pop((account, side), None)
                amount = 0 if p is None else p.amount
                if amount < 0:
                    raise Refused(R.INVALID_AMOUNT)
                if p is not None and p.currency != currency:
                    raise Refused(R.CURRENCY_MISMATCH)
                if amount > amount_held:
                    raise Refused(R.AMOUNT_EXCEEDS_PENDING)
                net[currency] = net.get(currency, 0) + (amount if side == "D" else -amount)
                amounts.append(amount)
            if wanted:
                raise Refused(R.INVALID_POSTINGS)
            if any(net.values()):
                raise Refused(R.UNBALANCED)
            if not any(amounts):
                raise Refused(R.INVALID_AMOUNT)
        return [
            (account, side, amount, -amount_held)
            for (account, side, _c, amount_held), amount in zip(hold.lines, amounts, strict=True)
        ]

    def _reverse(self, req: ReverseTransfer) -> int:
        target = self.journal.get(req.reversal_of)
        if target is None:
            raise Refused(R.TRANSFER_NOT_FOUND)
        if target.kind in _POSTED_NOTHING:
            raise Refused(R.NOT_REVERSIBLE)
        if req.reversal_of in self.reversed_by:
            raise Refused(R.ALREADY_REVERSED)
        moves = [(a, "C" if side == "D" else "D", p, 0) for a, side, p, _q in target.moves if p]
        seq = self._book(req, TransferKind.REVERSAL, moves, reversal_of=req.reversal_of)
        self.reversed_by[req.reversal_of] = req.id
        return seq

    def _book(
        self,
        req: TransferRequest,
        kind: TransferKind,
        moves: list[Move],
        pending_id: uuid.UUID | None = None,
        *,
        releasing: bool = False,
        reversal_of: uuid.UUID | None = None,
        timeout_at: int | None = None,
    ) -> int:
        """Check every line against its account, then book them all (or raise, booking none)."""
        after = []
        for account, side, posted, pending in moves:
            book = self.accounts[account]
            if (
                not releasing
                and book.status is not AccountStatus.ACTIVE
                and (posted or pending > 0)
            ):
                frozen = book.status is AccountStatus.FROZEN
                raise Refused(R.ACCOUNT_FROZEN if frozen else R.ACCOUNT_CLOSED)
            dp, cp, dpe, cpe = book.after(side, posted, pending)
            if book.debit_limit is not None and dp + dpe > cp + book.debit_limit:
                raise Refused(R.INSUFFICIENT_FUNDS)
            if book.credit_limit is not None and cp + cpe > dp + book.credit_limit:
                raise Refused(R.EXCEEDS_DEBITS)
            after.append((book, (dp, cp, dpe, cpe)))
        for book, counters in after:
            book.counters = counters
        self.seq += 1
        self.requests[req.id] = req
        self.journal[req.id] = Entry(
            self.seq, kind, tuple(moves), pending_id, reversal_of, timeout_at
        )
        if pending_id is not None:
            del self.holds[pending_id]
            self.settled[pending_id] = (kind, req.id)
        return self.seq


def expect_unit(
    books: Books, requests: Sequence[TransferRequest], *, atomic: bool
) -> tuple[Books, list[tuple[uuid.UUID, ResultCode, int | None]]]:
    """The books after one caller's submission, and (id, code, seq) for each request."""
    after = books.copy()
    expected = [(request.id, *after.apply(request)) for request in requests]
    failed = [i for i, (_id, code, _seq) in enumerate(expected) if not code.succeeded]
    if atomic and failed:
        # The first refusal keeps its code, everything else in the group is linked to it.
        linked = R.LINKED_TRANSFER_FAILED
        return books, [
            (transfer_id, code if i == failed[0] else linked, None)
            for i, (transfer_id, code, _seq) in enumerate(expected)
        ]
    return after, expected


# ---- fresh databases ------------------------------------------------------------------------

NewDatabase = Callable[[ExitStack], str]


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for every example (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("story-template") / "settle.db"
    engine = create_db_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()
    assert not path.with_name("settle.db-wal").exists()
    return path


def _sqlite_databases(template: Path) -> NewDatabase:
    def new(stack: ExitStack) -> str:
        directory = Path(tempfile.mkdtemp(prefix="settle-story-"))
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        shutil.copyfile(template, directory / "settle.db")
        return f"sqlite:///{directory / 'settle.db'}"

    return new


@contextmanager
def _cloned_postgres(server: str, template: str) -> Iterator[str]:
    name = f"{template}_{uuid.uuid4().hex[:10]}"
    admin_url = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for attempt in range(20):
            try:
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
                break
            except psycopg.errors.ObjectInUse:  # another clone is reading the template
                time.sleep(0.05 * (attempt + 1))
    try:
        yield sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_databases(server: str, template: str) -> NewDatabase:
    def new(stack: ExitStack) -> str:
        return stack.enter_context(_cloned_postgres(server, template))

    return new


# ---- the story ------------------------------------------------------------------------------


class LedgerStory(RuleBasedStateMachine):
    """One tenant's books on a fresh database, with the model kept alongside."""

    def __init__(self, new_database: NewDatabase) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.url = new_database(self.stack)
        self.clock = FakeClock(START)
        self.store: LedgerStore  # opened with the books
        self.tenant = uuid.UUID(int=0)  # drawn when the books open
        self.books = Books(now=START)
        self.tried: list[TransferRequest] = []
        self.minted = 0

    def teardown(self) -> None:
        self.stack.close()

    def new_id(self) -> uuid.UUID:
        """The tenant's high half and a counter: ids sort in the order they were made, so
        dropping a step while shrinking does not reshuffle what later steps pick."""
        self.minted += 1
        return uuid.UUID(int=(self.tenant.int >> 64 << 64) | self.minted)

    # ---- accounts ---------------------------------------------------------------------------

    def _open(
        self, currency: str, kind: AccountType, constraint: str | None, limit: int | None
    ) -> None:
        code = f"{currency.lower()}-{len(self.books.accounts) + 1}"
        new = NewAccount(
            self.tenant, code, f"{kind.value} {code}", kind, currency, id=self.new_id(),
            debits_must_not_exceed_credits=constraint == "debits",
            credits_must_not_exceed_debits=constraint == "credits",
            overdraft_limit=limit,
        )  # fmt: skip
        account = open_account(self.store.uow(), new)
        assert (account.id, account.code, account.status, account.balances) == (
            new.id, code, AccountStatus.ACTIVE, Balances(),
        )  # fmt: skip
        assert open_account(self.store.uow(), new) == account  # opening again is idempotent
        limit_or_zero = limit or 0
        self.books.accounts[account.id] = Book(
            currency,
            debit_limit=limit_or_zero if constraint == "debits" else None,
            credit_limit=limit_or_zero if constraint == "credits" else None,
        )

    @initialize(tenant=st.uuids(), pipeline=st.booleans())
    def open_the_books(self, tenant: uuid.UUID, pipeline: bool) -> None:
        # A drawn tenant, not a random one: every id derives from it, so a failing example
        # replays with the same ids (the engine orders locks and ties by id). The model's
        # collections keep commit order, so what a step picks does not depend on id order.
        self.tenant = tenant
        # With the pipeline the writer prepares the next batch while the last one commits.
        self.store = LedgerStore(self.url, clock=self.clock, pipeline=pipeline)
        self.stack.callback(self.store.close)
        for currency in (USD, JPY):
            self._open(currency, AccountType.EQUITY, None, None)  # the owners: unconstrained
            self._open(currency, AccountType.LIABILITY, "debits", None)  # a customer wallet
            self._open(currency, AccountType.ASSET, "credits", None)  # a bank account
        # The owners put money in the bank and fund the wallets, so stories start with money.
        funding = []
        for currency, amount in ((USD, 5_000), (JPY, 500_000)):
            owners, wallet, bank = self.books.ids(currency)
            funding += [
                self._pay(bank, owners, amount, currency),
                self._pay(owners, wallet, amount // 5, currency),
            ]
        self._submit_and_check(funding, atomic=True)

    def _pay(self, debit: uuid.UUID, credit: uuid.UUID, amount: int, currency: str) -> TransferSpec:
        return TransferSpec.shorthand(
            self.tenant, self.new_id(), debit_account_id=debit, credit_account_id=credit,
            amount=amount, currency=currency,
        )  # fmt: skip

    @rule(
        currency=st.sampled_from((USD, JPY)),
        kind=st.sampled_from(AccountType),
        constraint=st.sampled_from((None, "debits", "credits")),
        limit=st.none() | st.integers(0, 200),
    )
    def open_an_account(
        self, currency: str, kind: AccountType, constraint: str | None, limit: int | None
    ) -> None:
        self._open(currency, kind, constraint, limit if constraint else None)

    @rule(data=st.data())
    def freeze_or_unfreeze_an_account(self, data: st.DataObject) -> None:
        frozen = [
            i for i, book in self.books.accounts.items() if book.status is AccountStatus.FROZEN
        ]
        if frozen and data.draw(st.integers(0, 2), label="unfreeze") > 0:
            account_id, status = data.draw(st.sampled_from(frozen)), AccountStatus.ACTIVE
        else:
            account_id = data.draw(st.sampled_from(list(self.books.accounts)))
            status = AccountStatus.FROZEN
        book = self.books.accounts[account_id]
        if book.status is AccountStatus.CLOSED:
            with pytest.raises(InvalidStatusTransitionError):
                update_account(self.store.uow(), self.tenant, account_id, status=status)
            return
        updated = update_account(self.store.uow(), self.tenant, account_id, status=status)
        assert updated.status is status
        book.status = status

    @rule(data=st.data())
    def close_an_account(self, data: st.DataObject) -> None:
        account_id = data.draw(st.sampled_from(list(self.books.accounts)), label="account")
        book = self.books.accounts[account_id]
        dp, cp, dpe, cpe = book.counters
        if book.status is not AccountStatus.CLOSED and (dp != cp or dpe or cpe):
            with pytest.raises(AccountNotEmptyError):
                update_account(
                    self.store.uow(), self.tenant, account_id, status=AccountStatus.CLOSED
                )
            return
        updated = update_account(
            self.store.uow(), self.tenant, account_id, status=AccountStatus.CLOSED
        )
        assert updated.status is AccountStatus.CLOSED
        book.status = AccountStatus.CLOSED

    # ---- time -------------------------------------------------------------------------------

    @rule(seconds=st.integers(1, 120))
    def time_passes(self, seconds: int) -> None:
        self.clock.now += seconds * SECOND
        self.books.now = self.clock.now

    @precondition(lambda self: any(hold.timeout_at for hold in self.books.holds.values()))
    @rule(data=st.data(), early=st.integers(0, 1))
    def time_reaches_a_timeout(self, data: st.DataObject, early: int) -> None:
        """The clock stops exactly on a hold's timeout, or one microsecond before it."""
        timeouts = sorted({h.timeout_at for h in self.books.holds.values() if h.timeout_at})
        timeout_at = data.draw(st.sampled_from(timeouts), label="timeout_at")
        self.clock.now = max(self.clock.now, timeout_at - early)
        self.books.now = self.clock.now

    @rule(seconds=st.integers(0, 90))
    def the_expiry_job_runs(self, seconds: int) -> None:
        self.time_passes(seconds)
        now = self.clock.now
        due = {
            p for p, hold in self.books.holds.items() if hold.timeout_at and hold.timeout_at <= now
        }
        results = expire_pending(self.store.uow(), self.store.writer, now)
        first = self.books.seq + 1
        assert [(r.code, r.seq) for r in results] == [
            (R.OK, seq) for seq in range(first, first + len(due))
        ]
        # Each expiry names its hold; the model books them in the order they were committed.
        with self.store.read() as repo:
            expiries = [repo.get_transfer(self.tenant, r.id) for r in results]
        pending_ids = [None if t is None else t.pending_id for t in expiries]
        assert sorted(pending_ids) == sorted(due)
        for result, pending_id in zip(results, pending_ids, strict=True):
            assert pending_id is not None
            booked = self.books.apply(ExpirePending(self.tenant, result.id, pending_id))
            assert booked == (R.OK, result.seq)
        self._check_stored(results)

    # ---- money ------------------------------------------------------------------------------

    @rule(data=st.data())
    def submit_one_request(self, data: st.DataObject) -> None:
        self._submit(data, 1, atomic=False)

    @rule(data=st.data(), size=st.integers(2, 4), atomic=st.booleans())
    def submit_a_batch(self, data: st.DataObject, size: int, atomic: bool) -> None:
        self._submit(data, size, atomic=atomic)

    @precondition(lambda self: self.books.requests)
    @rule(data=st.data())
    def retry_a_committed_request(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(list(self.books.requests.values())))
        before = self._stored_counters()
        [result] = self.store.submit([request])
        assert (result.id, result.code, result.seq) == (request.id, R.EXISTS, None)
        assert self._stored_counters() == before

    def _submit(self, data: st.DataObject, size: int, *, atomic: bool) -> None:
        self._submit_and_check(self.draw_requests(data, self.books, size), atomic=atomic)

    def draw_requests(self, data: st.DataObject, books: Books, size: int) -> list[TransferRequest]:
        """Each drawn from the books as the ones before it leave them, so one submission can
        hold a pending transfer and its posting, or a transfer and its reversal."""
        scratch = books.copy()
        requests = []
        for _ in range(size):
            requests.append(self.draw_request(data, scratch))
            scratch.apply(requests[-1])
        return requests

    def _submit_and_check(self, requests: list[TransferRequest], *, atomic: bool) -> None:
        books, expected = expect_unit(self.books, requests, atomic=atomic)
        results = self.store.submit(requests, atomic=atomic)
        assert [(r.id, r.code, r.seq) for r in results] == expected
        self.books = books
        self.tried.extend(requests)
        self._check_stored(results)

    @rule(data=st.data(), callers=st.integers(2, 4), one_batch=st.booleans())
    def several_callers_at_once(self, data: st.DataObject, callers: int, one_batch: bool) -> None:
        """Units queued together, so the writer commits several in one batch: an atomic group
        that fails must leave the units after it exactly the balances it found.

        ``one_batch`` commits them as one transaction through a second committer, as another
        process would, behind the back of the writer and whatever it has cached.
        """
        scratch = self.books.copy()
        units: list[Unit] = []
        for _ in range(callers):
            size = data.draw(st.integers(1, 3), label="size")
            atomic = data.draw(st.booleans(), label="atomic")
            units.append(Unit(self.draw_requests(data, scratch, size), atomic))
            scratch, _expected = expect_unit(scratch, units[-1].requests, atomic=atomic)
        books, expected = self.books, []
        for unit in units:
            books, unit_expected = expect_unit(books, unit.requests, atomic=unit.atomic)
            expected.append(unit_expected)
        if one_batch:
            committer = SqlBatchCommitter(self.store.db, self.clock)
            try:
                results = committer.commit(units)
            finally:
                committer.close()
        else:
            futures = [self.store.writer.submit_future(u.requests, atomic=u.atomic) for u in units]
            results = [future.result(timeout=60) for future in futures]
        assert [[(r.id, r.code, r.seq) for r in unit] for unit in results] == expected
        self.books = books
        for unit, unit_results in zip(units, results, strict=True):
            self.tried.extend(unit.requests)
            self._check_stored(unit_results)

    def _check_stored(self, results: list[TransferResult]) -> None:
        """Read back every transfer the step committed: kind, links, timeout and lines."""
        with self.store.read() as repo:
            for result in results:
                if result.code is not R.OK:
                    continue
                transfer_id = result.id
                entry = self.books.journal[transfer_id]
                stored = repo.get_transfer(self.tenant, transfer_id)
                assert stored is not None
                lines = tuple(
                    (p.account_id, "D" if p.side is Side.DEBIT else "C", p.posted_amount,
                     p.pending_amount)
                    for p in stored.postings
                )  # fmt: skip
                timeout = None if entry.timeout_at is None else from_micros(entry.timeout_at)
                assert (
                    stored.seq, stored.kind, lines, stored.pending_id, stored.reversal_of,
                    stored.timeout_at,
                ) == (
                    entry.seq, entry.kind, entry.moves, entry.pending_id, entry.reversal_of,
                    timeout,
                )  # fmt: skip
                if entry.pending_id is not None:
                    pending = repo.get_transfer(self.tenant, entry.pending_id)
                    assert pending is not None
                    assert (pending.resolution, pending.resolved_by) == (entry.kind, transfer_id)
                if entry.reversal_of is not None:
                    target = repo.get_transfer(self.tenant, entry.reversal_of)
                    assert target is not None
                    assert target.reversed_by == transfer_id

    # ---- drawing requests against the model's current books ---------------------------------

    def draw_request(self, data: st.DataObject, books: Books) -> TransferRequest:
        what = data.draw(
            st.sampled_from(
                (
                    "transfer",
                    "pending",
                    "post",
                    "reverse",
                    "transfer",
                    "pending",
                    "post",
                    "void",
                    "reverse",
                    "expire",
                    "again",
                )
            ),
            label="request",
        )
        if what == "transfer" or what == "pending":
            return self.draw_transfer(data, books, pending=what == "pending")
        if what == "post":
            return self.draw_post(data, books)
        if what == "void":
            return VoidPending(self.tenant, self.new_id(), self.draw_pending_id(data, books))
        if what == "expire":  # only the expiry job should, but anyone may ask
            return ExpirePending(self.tenant, self.new_id(), self.draw_pending_id(data, books))
        if what == "reverse":
            targets = list(books.journal)
            known = bool(targets) and data.draw(st.integers(0, 3), label="known target") > 0
            target = data.draw(st.sampled_from(targets)) if known else self.new_id()
            return ReverseTransfer(self.tenant, self.new_id(), target)
        if not self.tried:
            return self.draw_transfer(data, books, pending=False)
        earlier = data.draw(st.sampled_from(self.tried), label="again")
        if not data.draw(st.booleans(), label="changed"):
            return earlier
        if isinstance(earlier, ExpirePending):
            return dataclasses.replace(earlier, pending_id=self.new_id())
        return dataclasses.replace(earlier, description=earlier.description + " again")

    def pick(self, data: st.DataObject, books: Books, currency: str, n: int) -> list[uuid.UUID]:
        ids = books.ids(currency)
        return data.draw(st.lists(st.sampled_from(ids), min_size=n, max_size=n, unique=True))

    def draw_transfer(self, data: st.DataObject, books: Books, *, pending: bool) -> TransferSpec:
        shape = data.draw(
            st.sampled_from(("two lines", "split", "two currencies", "flawed")), label="shape"
        )
        timeout = (
            data.draw(st.none() | st.integers(1, 60) | st.integers(1, 60), label="timeout")
            if pending
            else None
        )
        currency = data.draw(st.sampled_from((USD, JPY)), label="currency")
        tenant, new_id = self.tenant, self.new_id()
        if shape == "flawed":
            return self.draw_flawed_transfer(data, books, currency, pending)
        if shape == "two lines":
            debit, credit = self.pick(data, books, currency, 2)
            return TransferSpec.shorthand(
                tenant, new_id, debit_account_id=debit, credit_account_id=credit,
                amount=data.draw(AMOUNTS), currency=currency, pending=pending,
                timeout_seconds=timeout,
            )  # fmt: skip
        if shape == "split":  # one side paid by one account, the other split between two
            one, two, three = self.pick(data, books, currency, 3)
            a, b = data.draw(AMOUNTS), data.draw(AMOUNTS)
            side = data.draw(st.sampled_from(Side), label="single side")
            lines = (
                PostingRequest(one, side, a + b, currency),
                PostingRequest(two, side.opposite, a, currency),
                PostingRequest(three, side.opposite, b, currency),
            )
        else:
            usd, jpy = self.pick(data, books, USD, 2), self.pick(data, books, JPY, 2)
            dollars, yen = data.draw(AMOUNTS), data.draw(AMOUNTS)
            lines = (
                PostingRequest(usd[0], Side.DEBIT, dollars, USD),
                PostingRequest(jpy[0], Side.DEBIT, yen, JPY),
                PostingRequest(usd[1], Side.CREDIT, dollars, USD),
                PostingRequest(jpy[1], Side.CREDIT, yen, JPY),
            )
        return TransferSpec(tenant, new_id, lines, pending=pending, timeout_seconds=timeout)

    def draw_flawed_transfer(
        self, data: st.DataObject, books: Books, currency: str, pending: bool
    ) -> TransferSpec:
        flaw = data.draw(
            st.sampled_from(
                ("no amount", "unbalanced", "unknown account", "other currency", "same account",
                 "one line", "timeout on a posted transfer")
            ),
            label="flaw",
        )  # fmt: skip
        debit, credit = self.pick(data, books, currency, 2)
        debit_amount = credit_amount = data.draw(AMOUNTS)
        timeout = None
        if flaw == "no amount":
            debit_amount = credit_amount = data.draw(st.sampled_from((0, -debit_amount)))
        elif flaw == "unbalanced":
            credit_amount += 1
        elif flaw == "unknown account":
            credit = self.new_id()
        elif flaw == "other currency":
            [debit] = self.pick(data, books, JPY if currency == USD else USD, 1)
        elif flaw == "same account":
            credit = debit
        elif flaw == "timeout on a posted transfer":
            pending, timeout = False, 30
        lines = (
            PostingRequest(debit, Side.DEBIT, debit_amount, currency),
            PostingRequest(credit, Side.CREDIT, credit_amount, currency),
        )
        if flaw == "one line":
            lines = lines[:1]
        return TransferSpec(self.tenant, self.new_id(), lines, pending, timeout)

    def draw_pending_id(self, data: st.DataObject, books: Books) -> uuid.UUID:
        source = data.draw(
            st.sampled_from(("open", "open", "any pending", "any transfer", "unknown")),
            label="pending source",
        )
        if source == "open" and books.holds:
            return data.draw(st.sampled_from(list(books.holds)))
        if source in ("open", "any pending") and books.pendings:
            return data.draw(st.sampled_from(books.pendings))
        if source == "any transfer" and books.journal:
            return data.draw(st.sampled_from(list(books.journal)))
        return self.new_id()

    def draw_post(self, data: st.DataObject, books: Books) -> PostPending:
        pending_id = self.draw_pending_id(data, books)
        hold = books.holds.get(pending_id)
        how = data.draw(st.sampled_from(("in full", "amount", "lines", "both")), label="post")
        if how == "in full":
            return PostPending(self.tenant, self.new_id(), pending_id)
        if how == "amount":
            held = hold.lines[0][3] if hold else 100
            amount = data.draw(st.integers(0, held + 1), label="amount")  # 0 and held + 1 fail
            return PostPending(self.tenant, self.new_id(), pending_id, amount=amount)
        lines = self.draw_post_lines(data, books, hold)
        amount = 1 if how == "both" else None
        return PostPending(self.tenant, self.new_id(), pending_id, amount=amount, postings=lines)

    def draw_post_lines(
        self, data: st.DataObject, books: Books, hold: Hold | None
    ) -> tuple[PostingRequest, ...]:
        """Line amounts that balance per currency (credits drawn, debits filled to match)."""
        if hold is None:
            [stranger] = self.pick(data, books, USD, 1)
            return (PostingRequest(stranger, Side.DEBIT, 1, USD),)
        owed: dict[str, int] = {}
        amounts = []
        for _account, side, currency, held in hold.lines:
            if side == "C":
                amount = data.draw(st.integers(0, held), label="credit line")
                owed[currency] = owed.get(currency, 0) + amount
                amounts.append(amount)
            else:
                amounts.append(-1)  # filled below
        for i, (_account, side, currency, held) in enumerate(hold.lines):
            if side == "D":
                amounts[i] = min(held, owed[currency])
                owed[currency] -= amounts[i]
        flaw = data.draw(
            st.sampled_from((None, None, "unbalanced", "stranger", "zeros left out")),
            label="line flaw",
        )
        if flaw == "unbalanced":
            amounts[0] += 1
        lines = [
            PostingRequest(account, Side.DEBIT if side == "D" else Side.CREDIT, amount, currency)
            for (account, side, currency, _held), amount in zip(hold.lines, amounts, strict=True)
            if amount or flaw != "zeros left out"
        ]
        if flaw == "stranger":
            currency = hold.lines[0][2]
            [stranger] = self.pick(data, books, currency, 1)
            if stranger not in {line[0] for line in hold.lines}:
                lines.append(PostingRequest(stranger, Side.CREDIT, 0, currency))
        return tuple(lines)

    # ---- invariants -------------------------------------------------------------------------

    def _stored_counters(self) -> dict[uuid.UUID, tuple[int, int, int, int]]:
        with self.store.read() as repo:
            page = repo.list_accounts(self.tenant, AccountQuery(), limit=1000)
        assert not page.has_more
        return {
            a.id: (
                a.balances.debits_posted, a.balances.credits_posted,
                a.balances.debits_pending, a.balances.credits_pending,
            )
            for a in page.data
        }  # fmt: skip

    @invariant()
    def the_books_agree_and_balance(self) -> None:
        with self.store.read() as repo:
            page = repo.list_accounts(self.tenant, AccountQuery(), limit=1000)
        assert not page.has_more
        stored = {a.id: a for a in page.data}
        assert {i: (a.status, self._counters(a.balances)) for i, a in stored.items()} == {
            i: (book.status, book.counters) for i, book in self.books.accounts.items()
        }
        totals: dict[str, list[int]] = {USD: [0, 0], JPY: [0, 0]}
        for a in stored.values():
            b = a.balances
            totals[a.currency][0] += b.debits_posted - b.credits_posted
            totals[a.currency][1] += b.debits_pending - b.credits_pending
            limit = a.overdraft_limit or 0
            if a.debits_must_not_exceed_credits:
                assert b.debits_posted + b.debits_pending <= b.credits_posted + limit
            if a.credits_must_not_exceed_debits:
                assert b.credits_posted + b.credits_pending <= b.debits_posted + limit
        assert totals == {USD: [0, 0], JPY: [0, 0]}
        report = verify_ledger(self.store.db, self.tenant)
        assert report.problems == []
        assert report.transfers == self.books.seq

    @staticmethod
    def _counters(b: Balances) -> tuple[int, int, int, int]:
        return (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)


def _settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# A failing story is shrunk for up to five minutes; it must not be cut short by the timeout.
@pytest.mark.timeout(900)
def test_random_ledger_stories_on_sqlite(sqlite_template: Path) -> None:
    new_database = _sqlite_databases(sqlite_template)
    run_state_machine_as_test(lambda: LedgerStory(new_database), settings=_settings(75, 50))


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_random_ledger_stories_on_postgres(postgres_server: str, postgres_template: str) -> None:
    new_database = _postgres_databases(postgres_server, postgres_template)
    run_state_machine_as_test(lambda: LedgerStory(new_database), settings=_settings(20, 40))


# ---- worked examples at the edge of a BIGINT ------------------------------------------------
# The stories above keep amounts small. These three sit at 2^63-1, the documented limit, where
# the engine and the database's BIGINT columns and CHECK constraints must agree: each once
# raised a database error out of ``submit`` instead of giving a result.


def _story_account(
    store: LedgerStore, tenant: uuid.UUID, code: str, kind: AccountType, **flags: object
) -> uuid.UUID:
    new = NewAccount(tenant, code, code.title(), kind, USD, **flags)  # type: ignore[arg-type]
    return open_account(store.uow(), new).id


def _counters_of(store: LedgerStore, tenant: uuid.UUID, *ids: uuid.UUID) -> list[Balances]:
    with store.read() as repo:
        accounts = [repo.get_account(tenant, i) for i in ids]
    return [a.balances for a in accounts if a is not None]


def test_wallet_with_the_largest_overdraft_limit_takes_a_deposit(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    # A credit line as large as the ledger allows: the CHECK constraint must not overflow
    # computing credits_posted + overdraft_limit.
    owners = _story_account(store, tenant, "owners", AccountType.EQUITY)
    wallet = _story_account(
        store, tenant, "credit-line", AccountType.LIABILITY,
        debits_must_not_exceed_credits=True, overdraft_limit=MAX_AMOUNT,
    )  # fmt: skip
    deposit = TransferSpec.shorthand(
        tenant, uuid.uuid4(), debit_account_id=owners, credit_account_id=wallet, amount=1,
        currency=USD,
    )  # fmt: skip

    [result] = store.submit([deposit])

    assert (result.code, result.seq) == (R.OK, 1)
    assert _counters_of(store, tenant, owners, wallet) == [Balances(1, 0), Balances(0, 1)]


def test_pending_timeout_past_what_the_ledger_can_store_is_refused(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    # 10^13 seconds is a positive integer, but now + timeout no longer fits the BIGINT
    # timeout_at column: the request must be refused with a result, not crash the batch.
    customer = _story_account(store, tenant, "customer", AccountType.ASSET)
    merchant = _story_account(store, tenant, "merchant", AccountType.LIABILITY)
    hold = TransferSpec.shorthand(
        tenant, uuid.uuid4(), debit_account_id=customer, credit_account_id=merchant, amount=50,
        currency=USD, pending=True, timeout_seconds=10**13,
    )  # fmt: skip

    [result] = store.submit([hold])

    assert (result.code, result.seq) == (R.INVALID_TIMEOUT, None)
    assert _counters_of(store, tenant, customer, merchant) == [Balances(), Balances()]


def test_transfer_whose_debits_add_past_a_bigint_is_refused(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    # Every line is within 2^63-1 and USD balances, but the debits add up to 2^63: the
    # transfer is refused (docs/errors.md, invalid_amount) rather than overflowing a sum.
    a, b, c, d = (_story_account(store, tenant, f"x{i}", AccountType.ASSET) for i in range(4))
    big = TransferSpec(
        tenant,
        uuid.uuid4(),
        (
            PostingRequest(a, Side.DEBIT, MAX_AMOUNT, USD),
            PostingRequest(b, Side.DEBIT, 1, USD),
            PostingRequest(c, Side.CREDIT, MAX_AMOUNT, USD),
            PostingRequest(d, Side.CREDIT, 1, USD),
        ),
    )

    [result] = store.submit([big])

    assert (result.code, result.seq) == (R.INVALID_AMOUNT, None)
    assert _counters_of(store, tenant, a, b, c, d) == [Balances()] * 4
    assert verify_ledger(store.db, tenant).problems == []
