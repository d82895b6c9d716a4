"""Ledger throughput: Settle's group-commit writer against one transaction per transfer.

One tenant, ``--accounts`` USD accounts: a funding asset account, a fee account and wallets that
may not go negative (``debits_must_not_exceed_credits``). The wallets are funded first (not
timed), then random amounts move between random wallets, so every transfer is checked against
a balance and some fail with ``insufficient_funds``. With ``--hot-account`` every transfer also
credits the one fee account. The naive baseline replays the same transfers on tables of its
own, one locked transaction each. Prints one JSON object with ``--json``; progress goes to
stderr. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
import structlog
from psycopg import sql

import settle
from settle.ledger.model import AccountType, Side
from settle.ledger.requests import PostingRequest, TransferSpec
from settle.store.db import create_db_engine, upgrade_database
from settle.store.ledger_store import LedgerStore
from settle.store.tables import ledger_accounts, ledger_transfers

if TYPE_CHECKING:
    from settle.ledger.apply import TransferResult

CURRENCY = "USD"
OPENING_MIN, OPENING_MAX = 50_000, 500_000  # each wallet's funding, in minor units
AMOUNT_MIN, AMOUNT_MAX = 100, 100_000  # each timed transfer
FEE_BASIS_POINTS = 100  # what the hot fee account takes of every transfer
_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:7.2f}s] {message}", file=sys.stderr, flush=True)


def new_id(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def source_digest() -> str:
    """A short hash of the ``settle`` sources measured: tells runs of different code apart."""
    digest = hashlib.sha256()
    root = Path(settle.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def percentile_ms(seconds: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    return round(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)] * 1000, 3)


# ---- the database --------------------------------------------------------------------------


@contextmanager
def bench_database(url: str | None) -> Iterator[str]:
    """A database to run in: a fresh SQLite file, or a fresh PostgreSQL database, removed after."""
    if url is None:
        directory = tempfile.mkdtemp(prefix="settle_bench_")
        try:
            yield f"sqlite:///{directory}/bench.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        yield url
        return
    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"settle_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    log(f"created database {name} on {parsed.host}:{parsed.port or 5432}")
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        log(f"dropped database {name}")


@dataclass(frozen=True, slots=True)
class Book:
    """The benchmark's accounts, and each wallet's opening balance."""

    tenant: uuid.UUID
    funding: uuid.UUID
    fees: uuid.UUID
    wallets: list[uuid.UUID]
    opening: list[int]


def open_accounts(engine: sa.Engine, count: int, rng: random.Random) -> Book:
    """Insert every account in one bulk statement (``open_account`` is one transaction each)."""
    tenant, funding, fees = new_id(rng), new_id(rng), new_id(rng)
    wallets = [new_id(rng) for _ in range(count - 2)]
    opening = [rng.randint(OPENING_MIN, OPENING_MAX) for _ in wallets]
    now = time.time_ns() // 1000

    def row(account_id: uuid.UUID, code: str, kind: AccountType, constrained: bool) -> Any:
        return {
            "tenant_id": tenant, "id": account_id, "code": code, "name": code,
            "type": kind.value, "currency": CURRENCY, "parent_id": None,
            "debits_must_not_exceed_credits": constrained,
            "credits_must_not_exceed_debits": False, "overdraft_limit": None,
            "status": "active", "metadata": {}, "created_at": now,
        }  # fmt: skip

    rows = [row(funding, "funding", AccountType.ASSET, False)]
    rows.append(row(fees, "fees", AccountType.REVENUE, False))
    rows += [row(w, f"wallet-{i:06d}", AccountType.LIABILITY, True) for i, w in enumerate(wallets)]
    with engine.begin() as conn:
        conn.execute(ledger_accounts.insert(), rows)
    with engine.connect() as conn:
        # A bulk load leaves no planner statistics until autovacuum's next round; gather them
        # now, as a deployment that opened its accounts over time would have them.
        conn.exec_driver_sql("ANALYZE ledger_accounts")
        conn.commit()
    return Book(tenant, funding, fees, wallets, opening)


def verify(engine: sa.Engine, book: Book, committed: int) -> bool:
    """The ledger holds exactly the transfers reported ``ok`` and its trial balance is zero."""
    a, t = ledger_accounts.c, ledger_transfers.c
    with engine.connect() as conn:
        transfers = conn.execute(
            sa.select(sa.func.count()).where(t.tenant_id == book.tenant)
        ).scalar_one()
        debits, credits = conn.execute(
            sa.select(sa.func.sum(a.debits_posted), sa.func.sum(a.credits_posted)).where(
                a.tenant_id == book.tenant
            )
        ).one()
    ok = transfers == committed and debits == credits
    if not ok:
        log(f"VERIFY FAILED: {transfers} transfers (expected {committed}), {debits} != {credits}")
    return bool(ok)


# ---- the workload --------------------------------------------------------------------------


def funding_requests(book: Book, rng: random.Random) -> list[TransferSpec]:
    return [
        TransferSpec.shorthand(
            book.tenant,
            new_id(rng),
            debit_account_id=book.funding,
            credit_account_id=wallet,
            amount=amount,
            currency=CURRENCY,
        )
        for wallet, amount in zip(book.wallets, book.opening, strict=True)
    ]


def timed_requests(book: Book, count: int, hot: bool, rng: random.Random) -> list[TransferSpec]:
    wallets, n = book.wallets, len(book.wallets)
    requests: list[TransferSpec] = []
    for _ in range(count):
        i = rng.randrange(n)
        j = rng.randrange(n - 1)
        j += j >= i
        src, dst = wallets[i], wallets[j]
        amount = rng.randint(AMOUNT_MIN, AMOUNT_MAX)
        if hot:
            fee = max(1, amount * FEE_BASIS_POINTS // 10_000)
            postings = (
                PostingRequest(src, Side.DEBIT, amount, CURRENCY),
                PostingRequest(dst, Side.CREDIT, amount - fee, CURRENCY),
                PostingRequest(book.fees, Side.CREDIT, fee, CURRENCY),
            )
            requests.append(TransferSpec(book.tenant, new_id(rng), postings))
        else:
            requests.append(
                TransferSpec.shorthand(
                    book.tenant,
                    new_id(rng),
                    debit_account_id=src,
                    credit_account_id=dst,
                    amount=amount,
                    currency=CURRENCY,
                )
            )
    return requests


# ---- Settle ----------------------------------------------------------------------------------


def writer_counters(store: LedgerStore) -> tuple[int, int, int]:
    stats = store.writer.stats
    return stats.batches, stats.transfers, stats.failures


def writer_window(store: LedgerStore, before: tuple[int, int, int]) -> dict[str, Any]:
    """What the writer did since ``before``: batch sizes and commit times."""
    stats = store.writer.stats
    batches_before, transfers_before, failures_before = before
    batches = stats.batches - batches_before
    keep = min(batches, len(stats.sizes))
    sizes = sorted(list(stats.sizes)[len(stats.sizes) - keep :])
    commits = list(stats.commit_seconds)[len(stats.commit_seconds) - keep :]
    return {
        "db_batches": batches,
        "observed_batch_size_mean": round((stats.transfers - transfers_before) / batches, 1)
        if batches
        else None,
        "observed_batch_size_p50": sizes[(len(sizes) - 1) // 2] if sizes else None,
        "observed_batch_size_max": sizes[-1] if sizes else None,
        "observed_batch_sample": keep,
        "commit_p50_ms": percentile_ms(commits, 50),
        "commit_p99_ms": percentile_ms(commits, 99),
        "writer_failures": stats.failures - failures_before,
    }


def run_batches(
    store: LedgerStore, requests: list[TransferSpec], size: int, in_flight: int
) -> dict[str, Any]:
    """Submit lists of ``size``, each one database transaction, ``in_flight`` at a time.

    With ``in_flight`` 1 each list waits for the previous; with 2 or more the client keeps the
    writer's pipeline fed (as concurrent API requests do), so one batch is applied while the
    previous one is written. Latency is measured from submit to answer.
    """
    before = writer_counters(store)
    codes: list[str] = []
    latencies: list[float] = []
    window: deque[tuple[float, Future[list[TransferResult]]]] = deque()

    def settle_oldest() -> None:
        t0, future = window.popleft()
        outcome = future.result()
        latencies.append(time.perf_counter() - t0)
        codes.extend(r.code.value for r in outcome)

    started = time.perf_counter()
    for i in range(0, len(requests), size):
        if len(window) >= in_flight:
            settle_oldest()
        window.append((time.perf_counter(), store.writer.submit_future(requests[i : i + size])))
    while window:
        settle_oldest()
    seconds = time.perf_counter() - started
    return {
        "mode": "batch",
        "codes": codes,
        "seconds": seconds,
        "batch_p50_ms": percentile_ms(latencies, 50),
        "batch_p99_ms": percentile_ms(latencies, 99),
        "results": dict(Counter(codes)),
        **writer_window(store, before),
    }


def run_submitters(
    store: LedgerStore, requests: list[TransferSpec], submitters: int
) -> dict[str, Any]:
    """``submitters`` threads each submit one transfer at a time until all are done."""
    before = writer_counters(store)
    lock = threading.Lock()
    cursor = iter(range(len(requests)))
    start = threading.Barrier(submitters + 1)

    def work() -> tuple[Counter[str], list[float]]:
        counts: Counter[str] = Counter()
        latencies: list[float] = []
        start.wait()
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return counts, latencies
            t0 = time.perf_counter()
            [result] = store.submit([requests[i]])
            latencies.append(time.perf_counter() - t0)
            counts[result.code.value] += 1

    with ThreadPoolExecutor(max_workers=submitters) as pool:
        futures = [pool.submit(work) for _ in range(submitters)]
        start.wait(timeout=60)
        started = time.perf_counter()
        done = [f.result() for f in futures]
        seconds = time.perf_counter() - started
    results: Counter[str] = Counter()
    latencies: list[float] = []
    for counts, lat in done:
        results.update(counts)
        latencies += lat
    window = writer_window(store, before)
    return {
        "mode": "group_commit",
        "submitters": submitters,
        "seconds": seconds,
        "batch_p50_ms": window["commit_p50_ms"],
        "batch_p99_ms": window["commit_p99_ms"],
        "request_latency_p50_ms": percentile_ms(latencies, 50),
        "request_latency_p99_ms": percentile_ms(latencies, 99),
        "results": dict(results),
        **window,
    }


# ---- the naive baseline ------------------------------------------------------------------------

naive = sa.MetaData()
naive_accounts = sa.Table(
    "bench_naive_accounts",
    naive,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("debits_must_not_exceed_credits", sa.Boolean, nullable=False),
    sa.Column("debits_posted", sa.BigInteger, nullable=False),
    sa.Column("credits_posted", sa.BigInteger, nullable=False),
)
naive_transfers = sa.Table(
    "bench_naive_transfers",
    naive,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
naive_postings = sa.Table(
    "bench_naive_postings",
    naive,
    sa.Column("transfer_id", sa.Uuid, primary_key=True),
    sa.Column("idx", sa.SmallInteger, primary_key=True),
    sa.Column("account_id", sa.Uuid, nullable=False, index=True),
    sa.Column("side", sa.String(1), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
)
_LOCK_ACCOUNTS = (
    sa.select(naive_accounts)
    .where(naive_accounts.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(naive_accounts.c.id)
    .with_for_update()
)
_UPDATE_ACCOUNT = (
    naive_accounts.update()
    .where(naive_accounts.c.id == sa.bindparam("account"))
    .values(debits_posted=sa.bindparam("dp"), credits_posted=sa.bindparam("cp"))
)


def naive_transfer(conn: sa.Connection, request: TransferSpec) -> str:
    """One transfer, one transaction: lock its accounts, check, update, insert, commit."""
    with conn.begin() as tx:
        rows = conn.execute(_LOCK_ACCOUNTS, {"ids": [p.account_id for p in request.postings]})
        accounts = {
            r.id: [r.debits_posted, r.credits_posted, r.debits_must_not_exceed_credits]
            for r in rows
        }
        for p in request.postings:
            accounts[p.account_id][0 if p.side is Side.DEBIT else 1] += p.amount
        if any(flag and dp > cp for dp, cp, flag in accounts.values()):
            tx.rollback()
            return "insufficient_funds"
        conn.execute(
            _UPDATE_ACCOUNT,
            [{"account": k, "dp": v[0], "cp": v[1]} for k, v in accounts.items()],
        )
        conn.execute(
            naive_transfers.insert(), {"id": request.id, "created_at": time.time_ns() // 1000}
        )
        conn.execute(
            naive_postings.insert(),
            [
                {
                    "transfer_id": request.id,
                    "idx": i,
                    "account_id": p.account_id,
                    "side": "D" if p.side is Side.DEBIT else "C",
                    "amount": p.amount,
                }
                for i, p in enumerate(request.postings)
            ],
        )
    return "ok"


def run_baseline(
    url: str, book: Book, requests: list[TransferSpec], threads: int
) -> dict[str, Any]:
    """The same transfers from the same opening balances, one locked transaction each."""
    engine = create_db_engine(url, pool_size=threads)
    try:
        naive.create_all(engine)
        accounts = [
            {"id": book.funding, "debits_must_not_exceed_credits": False,
             "debits_posted": sum(book.opening), "credits_posted": 0},
            {"id": book.fees, "debits_must_not_exceed_credits": False,
             "debits_posted": 0, "credits_posted": 0},
        ] + [
            {"id": w, "debits_must_not_exceed_credits": True, "debits_posted": 0,
             "credits_posted": amount}
            for w, amount in zip(book.wallets, book.opening, strict=True)
        ]  # fmt: skip
        with engine.begin() as conn:
            conn.execute(naive_accounts.insert(), accounts)
        lock = threading.Lock()
        cursor = iter(range(len(requests)))
        codes = [""] * len(requests)
        start = threading.Barrier(threads + 1)

        def work() -> None:
            with engine.connect() as conn:
                conn.execution_options(sqlite_begin="IMMEDIATE")
                start.wait()
                while True:
                    with lock:
                        i = next(cursor, None)
                    if i is None:
                        return
                    try:
                        codes[i] = naive_transfer(conn, requests[i])
                    except sa.exc.OperationalError as exc:  # e.g. SQLite "database is locked"
                        codes[i] = f"error: {exc.orig}"

        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(work) for _ in range(threads)]
            start.wait(timeout=60)
            started = time.perf_counter()
            for future in futures:
                future.result()
            seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return {"seconds": seconds, "codes": codes, "results": dict(Counter(codes))}


# ---- the command -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--transfers", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=8190)
    parser.add_argument("--submitters", type=int, help="threads submitting one transfer each")
    parser.add_argument("--hot-account", action="store_true", help="every transfer pays a fee")
    parser.add_argument("--baseline-transfers", type=int, help="default: min(2000, transfers)")
    parser.add_argument(
        "--baseline-threads", type=int, help="default: --submitters, or 1 in batch mode"
    )
    parser.add_argument(
        "--in-flight", type=int, default=2, help="batches submitted before waiting (batch mode)"
    )
    parser.add_argument(
        "--pipeline", choices=["on", "off"], default="on",
        help="the writer's prepare/commit pipeline",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.accounts < 4 or args.transfers < 1 or args.batch_size < 1:
        parser.error("need --accounts >= 4, --transfers >= 1 and --batch-size >= 1")
    if args.baseline_transfers is None:
        args.baseline_transfers = min(2000, args.transfers)
    if args.baseline_threads is None:
        args.baseline_threads = args.submitters or 1
    return args


def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    rng = random.Random(args.seed)
    engine = create_db_engine(url)
    pipeline = args.pipeline == "on"
    store = LedgerStore(engine, pipeline=pipeline)
    try:
        t0 = time.perf_counter()
        upgrade_database(engine)
        book = open_accounts(engine, args.accounts, rng)
        log(f"{engine.dialect.name}: migrated, {args.accounts} accounts opened")
        setup_seconds = time.perf_counter() - t0
        funding = funding_requests(book, rng)
        t0 = time.perf_counter()
        funded: Counter[str] = Counter()
        for i in range(0, len(funding), args.batch_size):
            funded.update(r.code.value for r in store.submit(funding[i : i + args.batch_size]))
        funding_seconds = time.perf_counter() - t0
        log(f"funded {len(funding)} wallets in {funding_seconds:.2f}s: {dict(funded)}")
        requests = timed_requests(book, args.transfers, args.hot_account, rng)
        log(f"generated {len(requests)} transfers; timed phase starts")
        if args.submitters:
            measured = run_submitters(store, requests, args.submitters)
        else:
            measured = run_batches(store, requests, args.batch_size, args.in_flight)
        tps = args.transfers / measured["seconds"]
        log(f"settle: {tps:,.0f} transfers/s, results {measured['results']}")
        verified = verify(engine, book, funded["ok"] + measured["results"].get("ok", 0))
        log(f"baseline: {args.baseline_transfers} transfers, {args.baseline_threads} thread(s)")
        baseline = run_baseline(
            url, book, requests[: args.baseline_transfers], args.baseline_threads
        )
        baseline_tps = args.baseline_transfers / baseline["seconds"]
        # Sequential on both sides, the two must decide every transfer the same way.
        settle_codes = measured.pop("codes", None)
        agrees = (
            settle_codes[: args.baseline_transfers] == baseline["codes"]
            if settle_codes is not None and args.baseline_threads == 1
            else None
        )
        log(f"baseline: {baseline_tps:,.0f} transfers/s, results {baseline['results']}")
    finally:
        store.close()
        engine.dispose()
    return {
        "engine": engine.dialect.name,
        "mode": measured.pop("mode"),
        "transfers": args.transfers,
        "seconds": round(measured.pop("seconds"), 3),
        "transfers_per_second": round(tps, 1),
        "batch_p50_ms": measured.pop("batch_p50_ms"),
        "batch_p99_ms": measured.pop("batch_p99_ms"),
        "results": measured.pop("results"),
        "batch_size": args.batch_size,
        "pipeline": store.writer.pipelined,
        "accounts": args.accounts,
        "hot_account": args.hot_account,
        **measured,
        "seed": args.seed,
        "settle_source": source_digest(),
        "verified": verified,
        "setup_seconds": round(setup_seconds, 3),
        "funding_seconds": round(funding_seconds, 3),
        "funding_results": dict(funded),
        "baseline_transfers": args.baseline_transfers,
        "baseline_threads": args.baseline_threads,
        "baseline_seconds": round(baseline["seconds"], 3),
        "baseline_transfers_per_second": round(baseline_tps, 1),
        "baseline_results": baseline["results"],
        "baseline_agrees": agrees,
        "speedup": round(tps / baseline_tps, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The writer logs batch failures through structlog: keep stdout for the report.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    with bench_database(args.database_url) as url:
        report = run(args, url)
    if args.json:
        print(json.dumps(report))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
