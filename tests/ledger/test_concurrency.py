"""Many writers at once: the books must still balance, and every transfer must land once.

Wallets that must not go below zero pay each other, pay fees to one hot revenue account, hold
money and capture or release it, in single transfers and atomic groups, while every writer
also submits the same top-ups (same ids) as every other writer, so writers race to commit one
transfer and exactly one of them may win. First sixteen threads share one ``LedgerStore``; then
three processes, each with its own store and four threads, share one PostgreSQL database.
Writers run with and without the pipeline (preparing the next batch while one commits).

Every plan is drawn from a seeded random generator before anything runs; afterwards the test
recomputes every balance from the results it was given and compares them with the database.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from settle.ledger.errors import ResultCode
from settle.ledger.model import AccountType, NewAccount, Side
from settle.ledger.requests import (
    PostingRequest,
    PostPending,
    TransferRequest,
    TransferSpec,
    VoidPending,
)
from settle.ledger.service import open_account
from settle.store import tables
from settle.store.ledger_repo import AccountQuery
from settle.store.ledger_store import LedgerStore
from settle.store.ledger_verify import verify_ledger

R = ResultCode
USD = "USD"
WALLET_FUNDING = 400

# A planned request, as JSON so a worker process can read it: ids and accounts are hex strings.
Planned = dict[str, Any]
# One submission: {"atomic": bool, "requests": [Planned, ...]}
Op = dict[str, Any]


# ---- the plan -------------------------------------------------------------------------------


@dataclass
class Town:
    """The accounts every writer shares."""

    tenant: uuid.UUID
    bank: uuid.UUID  # an asset account: where top-ups come from, unconstrained
    fees: uuid.UUID  # revenue: the hot account every fee lands in
    wallets: list[uuid.UUID]  # liabilities that must not be debited beyond their credits


def _open_town(store: LedgerStore, tenant: uuid.UUID, wallets: int) -> tuple[Town, list[str]]:
    def account(code: str, kind: AccountType, **flags: bool) -> uuid.UUID:
        new = NewAccount(tenant, code, code.title(), kind, USD, **flags)
        return open_account(store.uow(), new).id

    town = Town(
        tenant,
        account("bank", AccountType.ASSET),
        account("fees", AccountType.REVENUE),
        [
            account(f"wallet-{i:02}", AccountType.LIABILITY, debits_must_not_exceed_credits=True)
            for i in range(wallets)
        ],
    )
    funding = [
        TransferSpec.shorthand(
            tenant,
            uuid.uuid4(),
            debit_account_id=town.bank,
            credit_account_id=wallet,
            amount=WALLET_FUNDING,
            currency=USD,
        )
        for wallet in town.wallets
    ]
    results = store.submit(funding, atomic=True)
    assert [(r.code, r.seq) for r in results] == [(R.OK, i + 1) for i in range(wallets)]
    return town, [t.id.hex for t in funding]


def _lines(*lines: tuple[uuid.UUID, str, int]) -> list[list[Any]]:
    return [[account.hex, side, amount] for account, side, amount in lines]


class Planner:
    """Draws one writer's submissions from a seeded generator."""

    def __init__(self, town: Town, seed: str) -> None:
        self.town = town
        self.rng = random.Random(seed)

    def new_id(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4).hex

    def two_wallets(self) -> tuple[uuid.UUID, uuid.UUID]:
        payer, payee = self.rng.sample(self.town.wallets, 2)
        return payer, payee

    def pay(self) -> Planned:
        payer, payee = self.two_wallets()
        amount = self.rng.randint(1, 200)
        return {"kind": "transfer", "id": self.new_id(), "pending": False,
                "lines": _lines((payer, "D", amount), (payee, "C", amount))}  # fmt: skip

    def pay_with_fee(self) -> Planned:
        payer, payee = self.two_wallets()
        amount, fee = self.rng.randint(1, 200), self.rng.randint(1, 9)
        lines = _lines((payer, "D", amount + fee), (payee, "C", amount), (self.town.fees, "C", fee))
        return {"kind": "transfer", "id": self.new_id(), "pending": False, "lines": lines}

    def hold(self) -> Planned:
        payer, payee = self.two_wallets()
        amount = self.rng.randint(1, 200)
        return {"kind": "transfer", "id": self.new_id(), "pending": True,
                "lines": _lines((payer, "D", amount), (payee, "C", amount))}  # fmt: skip

    def settle(self, hold: Planned) -> Planned:
        """Capture a hold in full or in part, or release it."""
        held = hold["lines"][0][2]
        how = self.rng.choice(("in full", "in part", "void"))
        if how == "void":
            return {"kind": "void", "id": self.new_id(), "pending_id": hold["id"]}
        amount = None if how == "in full" else self.rng.randint(1, held)
        return {"kind": "post", "id": self.new_id(), "pending_id": hold["id"], "amount": amount}

    def writer(self, requests: int, contested: list[list[Op]]) -> list[Op]:
        """About ``requests`` requests, then each contested sequence woven in, in order."""
        ops: list[Op] = []
        later: list[list[Any]] = []  # [ops to wait, op]: settlements come a few ops after holds
        count = 0
        while count < requests:
            what = self.rng.choices(
                ("pay", "fee", "atomic", "hold", "retry"), weights=(4, 4, 2, 3, 1)
            )[0]
            retryable = [op for op in ops if op["retryable"]]
            if what == "retry" and retryable:
                op = dict(self.rng.choice(retryable), retryable=False)
            elif what == "atomic":
                group = [self.rng.choice((self.pay, self.pay_with_fee))() for _ in range(2)]
                op = {"atomic": True, "requests": group, "retryable": True}
            elif what == "hold":
                hold = self.hold()
                op = {"atomic": False, "requests": [hold], "retryable": False}
                settle = {"atomic": False, "requests": [self.settle(hold)], "retryable": False}
                later.append([self.rng.randint(0, 3), settle])
            else:
                single = self.pay() if what == "pay" else self.pay_with_fee()
                op = {"atomic": False, "requests": [single], "retryable": True}
            ops.append(op)
            count += len(op["requests"])
            for waiting in later:
                waiting[0] -= 1
            ops += [op for wait, op in later if wait < 0]
            later = [waiting for waiting in later if waiting[0] >= 0]
        ops += [op for _wait, op in later]
        for sequence in contested:
            at = 0
            for op in sequence:
                at = self.rng.randint(at, len(ops))
                ops.insert(at, op)
                at += 1
        return [{"atomic": op["atomic"], "requests": op["requests"]} for op in ops]


def contested_ops(town: Town, top_ups: int, holds: int) -> list[list[Op]]:
    """Top-ups from the bank and captured holds that every writer submits with the same ids."""
    planner = Planner(town, "contested")
    sequences = []
    for _ in range(top_ups):
        wallet = planner.rng.choice(town.wallets)
        amount = planner.rng.randint(10, 50)
        top_up = {"kind": "transfer", "id": planner.new_id(), "pending": False,
                  "lines": _lines((town.bank, "D", amount), (wallet, "C", amount))}  # fmt: skip
        sequences.append([{"atomic": False, "requests": [top_up]}])
    for _ in range(holds):
        wallet = planner.rng.choice(town.wallets)
        hold = {"kind": "transfer", "id": planner.new_id(), "pending": True,
                "lines": _lines((town.bank, "D", 40), (wallet, "C", 40))}  # fmt: skip
        capture = {"kind": "post", "id": planner.new_id(), "pending_id": hold["id"], "amount": None}
        sequences.append(
            [{"atomic": False, "requests": [hold]}, {"atomic": False, "requests": [capture]}]
        )
    return sequences


# ---- running a plan -------------------------------------------------------------------------


def _request(tenant: uuid.UUID, planned: Planned) -> TransferRequest:
    transfer_id = uuid.UUID(hex=planned["id"])
    if planned["kind"] == "transfer":
        postings = tuple(
            PostingRequest(uuid.UUID(hex=a), Side.DEBIT if s == "D" else Side.CREDIT, amount, USD)
            for a, s, amount in planned["lines"]
        )
        return TransferSpec(tenant, transfer_id, postings, pending=planned["pending"])
    pending_id = uuid.UUID(hex=planned["pending_id"])
    if planned["kind"] == "post":
        return PostPending(tenant, transfer_id, pending_id, amount=planned["amount"])
    return VoidPending(tenant, transfer_id, pending_id)


def run_writer(store: LedgerStore, tenant: uuid.UUID, ops: list[Op]) -> list[list[Any]]:
    """Submit ``ops`` one after another; per op, per request: [id, code, seq]."""
    out = []
    for op in ops:
        requests = [_request(tenant, planned) for planned in op["requests"]]
        results = store.submit(requests, atomic=op["atomic"])
        out.append([[r.id.hex, r.code.value, r.seq] for r in results])
    return out


def run_writers(store: LedgerStore, tenant: uuid.UUID, writers: list[list[Op]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(writers)) as pool:
        futures = [pool.submit(run_writer, store, tenant, ops) for ops in writers]
        return [future.result(timeout=120) for future in futures]


def _worker_process(plan_path: str, out_path: str) -> None:
    """A separate OS process: its own store, its writers as threads, results to a file."""
    plan = json.loads(Path(plan_path).read_text())
    tenant = uuid.UUID(hex=plan["tenant"])
    store = LedgerStore(plan["url"], pipeline=plan["pipeline"])
    try:
        # Start together: every process ready (imports done, connected), then all at once.
        with store.read():
            pass
        Path(plan["ready"]).touch()
        waited = time.monotonic()
        while not Path(plan["go"]).exists():
            assert time.monotonic() - waited < 60, "the test never said go"
            time.sleep(0.005)
        results = run_writers(store, tenant, plan["writers"])
    finally:
        store.close()
    Path(out_path).write_text(json.dumps(results))


# ---- checking the outcome -------------------------------------------------------------------


def check_outcome(
    store: LedgerStore,
    town: Town,
    setup_ids: list[str],
    writers: list[list[Op]],
    results: list[list[list[list[Any]]]],
    contested: list[list[Op]],
    copies: int,
) -> Counter[str]:
    """Every assertion about a finished run; returns how many results had each code."""
    codes: Counter[str] = Counter()
    ok: dict[str, Planned] = {}
    seqs = list(range(1, len(setup_ids) + 1))
    outcomes: dict[str, list[str]] = {}
    planned_by_id: dict[str, Planned] = {}
    for ops, op_results in zip(writers, results, strict=True):
        assert len(op_results) == len(ops)
        seen_ok: set[str] = set()
        for op, submitted in zip(ops, op_results, strict=True):
            assert [r[0] for r in submitted] == [p["id"] for p in op["requests"]]
            for planned, (transfer_id, code, seq) in zip(op["requests"], submitted, strict=True):
                codes[code] += 1
                planned_by_id[transfer_id] = planned
                outcomes.setdefault(transfer_id, []).append(code)
                if transfer_id in seen_ok:  # this writer saw it commit: a resubmission exists
                    assert code == R.EXISTS
                if code == R.OK:
                    assert seq is not None
                    seen_ok.add(transfer_id)
                    ok[transfer_id] = planned
                    seqs.append(seq)
                else:
                    assert seq is None
    allowed = {
        "transfer": {R.OK, R.EXISTS, R.INSUFFICIENT_FUNDS, R.LINKED_TRANSFER_FAILED},
        "post": {R.OK, R.EXISTS, R.PENDING_NOT_FOUND},
        "void": {R.OK, R.EXISTS, R.PENDING_NOT_FOUND},
    }
    for transfer_id, seen in outcomes.items():
        planned = planned_by_id[transfer_id]
        assert set(seen) <= {code.value for code in allowed[planned["kind"]]}, (planned, seen)
        assert seen.count(R.OK) <= 1, (planned, seen)
        if R.PENDING_NOT_FOUND in seen:  # only a hold that was refused is not found
            assert planned["pending_id"] not in ok
        elif planned["kind"] != "transfer":
            assert seen.count(R.OK) == 1
    # The same top-ups and captures went out ``copies`` times: exactly one commits each.
    for sequence in contested:
        for op in sequence:
            transfer_id = op["requests"][0]["id"]
            assert Counter(outcomes[transfer_id]) == Counter({R.OK: 1, R.EXISTS: copies - 1})

    # The journal holds exactly the committed transfers, once each, numbered without gaps.
    transfers = tables.ledger_transfers
    with store.db.connect() as conn:
        stored = Counter(
            {
                row[0].hex: row[1]
                for row in conn.execute(
                    sa.select(transfers.c.id, sa.func.count())
                    .where(transfers.c.tenant_id == town.tenant)
                    .group_by(transfers.c.id)
                )
            }
        )
    assert stored == Counter(dict.fromkeys([*setup_ids, *ok], 1))
    assert sorted(seqs) == list(range(1, len(setup_ids) + len(ok) + 1))

    # Balances recomputed from the results the writers were given.
    expected: Counter[tuple[str, str]] = Counter()
    for wallet in town.wallets:
        expected[(wallet.hex, "C")] += WALLET_FUNDING
        expected[(town.bank.hex, "D")] += WALLET_FUNDING
    for planned in ok.values():
        if planned["kind"] == "transfer" and not planned["pending"]:
            for account, side, amount in planned["lines"]:
                expected[(account, side)] += amount
        elif planned["kind"] == "post":
            hold = planned_by_id[planned["pending_id"]]
            for account, side, held in hold["lines"]:
                expected[(account, side)] += (
                    held if planned["amount"] is None else planned["amount"]
                )
    with store.read() as repo:
        accounts = repo.list_accounts(town.tenant, AccountQuery(), limit=1000).data
    stored_counters = {
        a.id.hex: (a.balances.debits_posted, a.balances.credits_posted,
                   a.balances.debits_pending, a.balances.credits_pending)
        for a in accounts
    }  # fmt: skip
    assert stored_counters == {
        a.id.hex: (expected[(a.id.hex, "D")], expected[(a.id.hex, "C")], 0, 0) for a in accounts
    }
    debits = sum(dp for dp, _cp, _dpe, _cpe in stored_counters.values())
    credits = sum(cp for _dp, cp, _dpe, _cpe in stored_counters.values())
    assert debits == credits
    for wallet in town.wallets:
        dp, cp, dpe, _cpe = stored_counters[wallet.hex]
        assert dp + dpe <= cp, f"wallet {wallet} is overdrawn"
    report = verify_ledger(store.db, town.tenant)
    assert report.problems == []
    assert report.transfers == len(setup_ids) + len(ok)
    return codes


# ---- the stories ----------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", [False, True], ids=["one-batch-at-a-time", "pipelined"])
def test_sixteen_threads_share_one_store(db_url: str, tenant: uuid.UUID, pipeline: bool) -> None:
    store = LedgerStore(db_url, pipeline=pipeline)
    try:
        town, setup_ids = _open_town(store, tenant, wallets=20)
        contested = contested_ops(town, top_ups=6, holds=2)
        writers = [Planner(town, f"thread-{n}").writer(60, contested) for n in range(16)]

        started = time.monotonic()
        results = run_writers(store, tenant, writers)

        assert time.monotonic() - started < 60
        codes = check_outcome(store, town, setup_ids, writers, results, contested, copies=16)
    finally:
        store.close()
    assert sum(codes.values()) == sum(len(op["requests"]) for ops in writers for op in ops)
    assert codes[R.OK] > 100  # the story moved real money, not only refusals
    assert codes[R.INSUFFICIENT_FUNDS] > 0


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_three_processes_share_one_postgres_database(db_url: str, tmp_path: Path) -> None:
    tenant = uuid.uuid4()
    setup = LedgerStore(db_url)
    try:
        town, setup_ids = _open_town(setup, tenant, wallets=12)
    finally:
        setup.close()
    contested = contested_ops(town, top_ups=10, holds=4)
    # Each process has four writers; two of them carry every contested sequence, so each
    # top-up goes out six times from three processes.
    plans = []
    for p in range(3):
        planners = [Planner(town, f"process-{p}-thread-{t}") for t in range(4)]
        plans.append(
            [planner.writer(75, contested if t < 2 else []) for t, planner in enumerate(planners)]
        )
    processes = []
    for p, writers in enumerate(plans):
        plan = {
            "url": db_url, "tenant": tenant.hex, "writers": writers, "pipeline": p != 1,
            "ready": str(tmp_path / f"ready-{p}"), "go": str(tmp_path / "go"),
        }  # fmt: skip
        (tmp_path / f"plan-{p}.json").write_text(json.dumps(plan))
        with (tmp_path / f"log-{p}.txt").open("wb") as log:  # a file: a pipe could fill and block
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        str(tmp_path / f"plan-{p}.json"),
                        str(tmp_path / f"out-{p}.json"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + 120
    try:
        while not all((tmp_path / f"ready-{p}").exists() for p in range(3)):
            if any(process.poll() is not None for process in processes):
                break  # one died before starting: its log is reported below
            assert time.monotonic() < deadline, "the writer processes never got ready"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        for p, process in enumerate(processes):
            process.wait(timeout=max(1, deadline - time.monotonic()))
            log = (tmp_path / f"log-{p}.txt").read_text()
            assert process.returncode == 0, log[-3000:]
    except subprocess.TimeoutExpired:
        pytest.fail("a writer process did not finish within 120 s: deadlock or lost wake-up")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    all_writers = [ops for writers in plans for ops in writers]
    results = [r for p in range(3) for r in json.loads((tmp_path / f"out-{p}.json").read_text())]
    checker = LedgerStore(db_url)
    try:
        codes = check_outcome(checker, town, setup_ids, all_writers, results, contested, copies=6)
    finally:
        checker.close()
    assert sum(codes.values()) == sum(len(op["requests"]) for ops in all_writers for op in ops)
    assert codes[R.OK] > 300


if __name__ == "__main__":
    _worker_process(sys.argv[1], sys.argv[2])
