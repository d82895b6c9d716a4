"""The `settle` command line."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from settle.clock import system_clock
from settle.errors import SettleError
from settle.ledger.errors import ResultCode
from settle.ledger.model import AccountType, NewAccount, Side
from settle.ledger.requests import (
    PostingRequest,
    PostPending,
    ReverseTransfer,
    TransferSpec,
    VoidPending,
)
from settle.ledger.service import expire_pending, open_account
from settle.money import Currency, Money
from settle.security.keys import KeyMode
from settle.security.service import create_tenant, issue_api_key, revoke_api_key
from settle.simulator.cli import simulate_app
from settle.store.db import create_db_engine, database_url_from_env, upgrade_database
from settle.store.ledger_store import LedgerStore
from settle.store.ledger_verify import verify_ledger
from settle.store.security_repo import SqlSecurityRepository
from settle.store.uow import SqlUnitOfWork

if TYPE_CHECKING:
    import sqlalchemy as sa

app = typer.Typer(help="Settle: an open-source payments core.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants: isolated sets of books.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(simulate_app, name="simulate")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="SETTLE_DATABASE_URL",
        help="SQLAlchemy URL; default: a SQLite file under ./var/",
    ),
]

# A fixed tenant for the demo, so `make run` twice shows the same books growing.
DEMO_TENANT = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply every migration to the database."""
    engine = create_db_engine(database_url or database_url_from_env())
    upgrade_database(engine)
    typer.echo(f"database at head ({engine.url.render_as_string(hide_password=True)})")
    engine.dispose()


@ledger_app.command("demo")
def ledger_demo(database_url: DatabaseUrl = None) -> None:
    """Open a small chart of accounts, move money through holds, captures and a reversal."""
    store = LedgerStore(database_url)
    t = DEMO_TENANT
    run = uuid.uuid4().hex[:6]
    usd = Currency.of("USD")

    def account(
        code: str, name: str, kind: AccountType, *, no_overdraft: bool = False
    ) -> uuid.UUID:
        cmd = NewAccount(
            t, f"{code}-{run}", name, kind, "USD", debits_must_not_exceed_credits=no_overdraft
        )
        return open_account(store.uow(), cmd).id

    bank = account("bank", "Operating bank account", AccountType.ASSET)
    alice = account("alice", "Alice's wallet", AccountType.LIABILITY, no_overdraft=True)
    shop = account("shop", "Shop's balance", AccountType.LIABILITY)
    fees = account("fees", "Fee revenue", AccountType.REVENUE)

    def money(text: str) -> int:
        return Money.parse(text, usd).minor

    steps: list[tuple[str, list[TransferSpec | PostPending | VoidPending | ReverseTransfer]]] = []
    topup, hold, hold2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    steps.append(("Alice tops up 100.00", [
        TransferSpec.shorthand(t, topup, debit_account_id=bank, credit_account_id=alice,
                               amount=money("100.00"), currency="USD"),
    ]))  # fmt: skip
    steps.append(("A card hold of 40.00 at the shop (2.00 fee)", [
        TransferSpec(t, hold, (
            PostingRequest(alice, Side.DEBIT, money("40.00"), "USD"),
            PostingRequest(shop, Side.CREDIT, money("38.00"), "USD"),
            PostingRequest(fees, Side.CREDIT, money("2.00"), "USD"),
        ), pending=True, timeout_seconds=7 * 86400, description="card authorization"),
    ]))  # fmt: skip
    steps.append(("The shop captures 30.00 of it (1.50 fee), releasing the rest", [
        PostPending(t, uuid.uuid4(), hold, postings=(
            PostingRequest(alice, Side.DEBIT, money("30.00"), "USD"),
            PostingRequest(shop, Side.CREDIT, money("28.50"), "USD"),
            PostingRequest(fees, Side.CREDIT, money("1.50"), "USD"),
        ), description="capture"),
    ]))  # fmt: skip
    steps.append(("A second hold of 20.00, then voided", [
        TransferSpec.shorthand(t, hold2, debit_account_id=alice, credit_account_id=shop,
                               amount=money("20.00"), currency="USD", pending=True),
        VoidPending(t, uuid.uuid4(), hold2),
    ]))  # fmt: skip
    steps.append(("The top-up is reversed? No: Alice spent some, so it is refused", [
        ReverseTransfer(t, uuid.uuid4(), topup),
    ]))  # fmt: skip
    for title, requests in steps:
        results = store.submit(requests)
        typer.echo(f"- {title}: {', '.join(r.code.value for r in results)}")
    with store.read() as repo:
        typer.echo("\nBalances (normal side; available counts holds against you):")
        for account_id in (bank, alice, shop, fees):
            a = repo.get_account(t, account_id)
            assert a is not None  # noqa: S101 - opened above
            posted = Money(a.posted_balance, usd).format()
            typer.echo(
                f"  {a.name:<24} {a.type.value:<9} posted {posted:>8}"
                f"  pending {Money(a.pending_balance, usd).format():>7}"
                f"  available {Money(a.available_balance, usd).format():>8}"
            )
    report = verify_ledger(store.db, t)
    typer.echo(f"\nledger verify: {'ok' if report.ok else 'FAILED'} ({report.transfers} transfers)")
    store.close()


@ledger_app.command("verify")
def ledger_verify(
    database_url: DatabaseUrl = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report")] = False,
) -> None:
    """Recompute every balance from postings and re-walk every hash chain."""
    engine = create_db_engine(database_url or database_url_from_env())
    report = verify_ledger(engine, uuid.UUID(tenant) if tenant else None)
    engine.dispose()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "tenants": report.tenants,
                    "transfers": report.transfers,
                    "accounts": report.accounts,
                    "problems": [
                        {"tenant_id": str(p.tenant_id), "kind": p.kind, "subject": p.subject,
                         "detail": p.detail}
                        for p in report.problems
                    ],
                }
            )
        )  # fmt: skip
    else:
        for p in report.problems:
            typer.echo(f"{p.kind}: {p.subject} (tenant {p.tenant_id}): {p.detail}", err=True)
        typer.echo(
            f"{'ok' if report.ok else 'FAILED'}: {report.tenants} tenants, "
            f"{report.transfers} transfers, {report.accounts} accounts, "
            f"{len(report.problems)} problems"
        )
    if not report.ok:
        raise typer.Exit(1)


@ledger_app.command("expire")
def ledger_expire(database_url: DatabaseUrl = None) -> None:
    """Expire pending transfers whose timeout has passed."""
    store = LedgerStore(database_url)
    total = 0
    while True:
        results = expire_pending(store.uow(), store.writer, system_clock())
        done = sum(1 for r in results if r.code is ResultCode.OK)
        total += done
        if not done:
            break
    store.close()
    typer.echo(f"expired {total} pending transfers")


# ---- tenants and keys ----------------------------------------------------------------------

Scopes = Annotated[
    str,
    typer.Option(help="Comma-separated: ledger:read, ledger:write, admin"),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _fail(exc: SettleError) -> typer.Exit:
    typer.echo(f"error: {exc.code}: {exc.detail}", err=True)
    return typer.Exit(2)


def _engine(database_url: str | None) -> sa.Engine:
    return create_db_engine(database_url or database_url_from_env())


@tenants_app.command("create")
def tenants_create(
    name: str,
    database_url: DatabaseUrl = None,
    scopes: Scopes = "ledger:read,ledger:write,admin",
    live: Annotated[bool, typer.Option(help="Issue a live key (sk_live_)")] = False,
    as_json: AsJson = False,
) -> None:
    """Create a tenant and its first API key (shown once: it is stored only as a hash)."""
    engine = _engine(database_url)
    try:
        tenant = create_tenant(SqlUnitOfWork(engine), name)
        key, secret = issue_api_key(
            SqlUnitOfWork(engine),
            tenant.id,
            scopes.split(","),
            mode=KeyMode.LIVE if live else KeyMode.TEST,
        )
    except SettleError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps({"tenant_id": str(tenant.id), "key_id": str(key.id),
                               "api_key": secret.reveal()}))  # fmt: skip
    else:
        typer.echo(f"tenant {tenant.id} ({tenant.name})\napi key {secret.reveal()}")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant id")],
    database_url: DatabaseUrl = None,
    scopes: Scopes = "ledger:read,ledger:write",
    live: Annotated[bool, typer.Option(help="Issue a live key (sk_live_)")] = False,
    as_json: AsJson = False,
) -> None:
    """Issue an API key for a tenant (shown once)."""
    engine = _engine(database_url)
    try:
        key, secret = issue_api_key(
            SqlUnitOfWork(engine),
            _uuid(tenant, "tenant"),
            scopes.split(","),
            mode=KeyMode.LIVE if live else KeyMode.TEST,
        )
    except SettleError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    scope_names = sorted(s.value for s in key.scopes)
    if as_json:
        typer.echo(json.dumps({"key_id": str(key.id), "tenant_id": str(key.tenant_id),
                               "api_key": secret.reveal(), "prefix": key.prefix,
                               "scopes": scope_names}))  # fmt: skip
    else:
        typer.echo(f"key {key.id} ({', '.join(scope_names)})\napi key {secret.reveal()}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, database_url: DatabaseUrl = None) -> None:
    """Revoke a key: every server refuses it within the key cache time (5 s by default)."""
    engine = _engine(database_url)
    try:
        key = revoke_api_key(SqlUnitOfWork(engine), _uuid(key_id, "key_id"))
    except SettleError as exc:
        raise _fail(exc) from None
    finally:
        engine.dispose()
    typer.echo(f"revoked {key.id} ({key.prefix}…)")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str, typer.Option(help="Tenant id")],
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """A tenant's keys: id, prefix, scopes, created, last used, revoked."""
    engine = _engine(database_url)
    with engine.connect() as conn:
        keys = SqlSecurityRepository(conn).list_api_keys(_uuid(tenant, "tenant"))
    engine.dispose()
    rows = [
        {
            "key_id": str(k.id),
            "prefix": k.prefix,
            "mode": k.mode.value,
            "scopes": sorted(s.value for s in k.scopes),
            "created_at": k.created_at.isoformat(),
            "last_used_at": None if k.last_used_at is None else k.last_used_at.isoformat(),
            "revoked_at": None if k.revoked_at is None else k.revoked_at.isoformat(),
        }
        for k in keys
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for k in keys:
        state = f"revoked {k.revoked_at.isoformat()}" if k.revoked_at else "active"
        scope_names = ",".join(sorted(s.value for s in k.scopes))
        typer.echo(f"{k.id}  {k.prefix}…  {scope_names}  {state}")


def _uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        typer.echo(f"error: {what} is not a UUID: {text!r}", err=True)
        raise typer.Exit(2) from None


# ---- serving -------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the server may end without
    # running any cleanup: the kernel stops the demo's simulator with it (Linux).
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _demo_processor(host: str, port: int) -> subprocess.Popen[bytes]:
    """The demo's card processor: the simulator in its own process, notifying this server
    with a secret made for this run (the processor for test cards: docs/processor-simulator.md).
    """
    import base64
    import os
    import secrets
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        sim_port = int(s.getsockname()[1])
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    notify = f"http://{host}:{port}/v1/processor_notifications/demo_sim"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-c", "from settle.cli import app; app(prog_name='settle')",
         "simulate", "processor", "--port", str(sim_port), "--name", "demo_sim",
         "--notify-url", notify],
        env={**os.environ, "SIM_NOTIFY_SECRET": secret},
        preexec_fn=_die_with_parent,
    )  # fmt: skip
    os.environ["SETTLE_PROCESSORS"] = f"demo_sim=http://127.0.0.1:{sim_port}"
    os.environ["SETTLE_PROCESSOR_SECRETS"] = f"demo_sim={secret}"
    typer.echo(f"demo processor: the simulator on http://127.0.0.1:{sim_port}")
    return process


def _bootstrap_demo(database_url: str, host: str, port: int) -> None:
    """First run: a demo tenant and an admin key, printed once."""
    engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            exists = SqlSecurityRepository(conn).get_tenant(DEMO_TENANT) is not None
        base = f"http://{host}:{port}"
        if exists:
            typer.echo(
                f"demo tenant {DEMO_TENANT} exists; its first key was shown on the first run."
                f" A new one: settle keys create --tenant {DEMO_TENANT}"
                f" --scopes ledger:read,ledger:write,admin"
            )
        else:
            create_tenant(SqlUnitOfWork(engine), "Demo", tenant_id=DEMO_TENANT)
            _key, secret = issue_api_key(
                SqlUnitOfWork(engine), DEMO_TENANT, ["ledger:read", "ledger:write", "admin"]
            )
            typer.echo(
                f"demo tenant {DEMO_TENANT} created; its API key (shown once):\n"
                f"  {secret.reveal()}\n"
                f"try: curl -H 'Authorization: Bearer {secret.reveal()}' {base}/v1/accounts"
            )
        typer.echo(f"API docs: {base}/docs")
    finally:
        engine.dispose()


@app.command("serve")
def serve(
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    demo: Annotated[bool, typer.Option(help="Create a demo tenant and key on first run")] = False,
    embedded_worker: Annotated[
        bool,
        typer.Option(
            "--embedded-worker/--no-embedded-worker",
            help="Run the job worker and webhook deliveries in the server's processes",
        ),
    ] = True,
) -> None:
    """Serve the HTTP API (uvicorn with uvloop and httptools); by default with the worker in
    process, so that one command runs the whole platform."""
    import os

    import uvicorn

    url = database_url or database_url_from_env()
    os.environ["SETTLE_DATABASE_URL"] = url  # each worker process builds its app from it
    flag = "1" if embedded_worker else "0"
    os.environ["SETTLE_EMBEDDED_WORKER"] = os.environ["SETTLE_WEBHOOK_DELIVERY"] = flag
    simulator = None
    if demo:
        _bootstrap_demo(url, host, port)
        if not os.environ.get("SETTLE_PROCESSORS"):
            simulator = _demo_processor(host, port)
    uvicorn.run(
        "settle.api.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    if simulator is not None:  # a normal return (e.g. Ctrl-C)
        simulator.terminate()
        simulator.wait(10)


@app.command("worker")
def worker(database_url: DatabaseUrl = None) -> None:
    """Run the background worker (payments' jobs, webhook deliveries, maintenance) until
    interrupted. Run several for more throughput: they share the work through leases."""
    import signal
    import threading

    from settle.api.settings import Settings
    from settle.logs import configure_logging
    from settle.worker.platform import Worker

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    running = Worker(
        database_url or settings.database_url,
        settings.payments,
        webhooks_allow_private=settings.webhook_allow_private,
        webhooks_timeout=settings.webhook_timeout_seconds,
        maintenance_seconds=settings.maintenance_seconds,
        retention_seconds=settings.idempotency_retention_seconds,
        webhook_retention_seconds=settings.webhook_retention_seconds,
    )
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    running.start()
    typer.echo("worker running; Ctrl-C stops it")
    stopping.wait()
    running.stop()
