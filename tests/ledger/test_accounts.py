"""Accounts: opening them once, refusing definitions that can never hold money, and the
freeze/close life cycle — each story on SQLite and on PostgreSQL.

Refusals assert the error's stable code and that nothing was written: no account, no event.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from settle.errors import SettleError
from settle.ledger.errors import (
    AccountCodeTakenError,
    AccountExistsError,
    AccountNotEmptyError,
    AccountNotFoundError,
    InvalidAccountError,
    InvalidStatusTransitionError,
    ParentAccountError,
    ResultCode,
)
from settle.ledger.model import Account, AccountStatus, AccountType, Balances, NewAccount
from settle.ledger.requests import PostPending, TransferSpec, VoidPending
from settle.ledger.service import account_payload, open_account, update_account
from settle.money import UnknownCurrencyError
from settle.store import tables

if TYPE_CHECKING:
    from collections.abc import Callable

    from settle.store.ledger_store import LedgerStore

R = ResultCode
E = tables.outbox_events


def _new(tenant: uuid.UUID, code: str, kind: AccountType, **fields: Any) -> NewAccount:
    fields.setdefault("currency", "USD")
    return NewAccount(tenant, code, fields.pop("name", code.title()), kind, **fields)


def _open(store: LedgerStore, tenant: uuid.UUID, code: str, kind: AccountType, **f: Any) -> Account:
    return open_account(store.uow(), _new(tenant, code, kind, **f))


def _account(store: LedgerStore, tenant: uuid.UUID, account_id: uuid.UUID) -> Account:
    with store.read() as repo:
        account = repo.get_account(tenant, account_id)
    assert account is not None
    return account


def _by_code(store: LedgerStore, tenant: uuid.UUID, code: str) -> Account | None:
    with store.read() as repo:
        return repo.get_account_by_code(tenant, code)


def _events(store: LedgerStore, tenant: uuid.UUID) -> list[tuple[str, uuid.UUID]]:
    """The tenant's outbox, in sequence order: (type, object id)."""
    with store.read() as repo:
        rows = repo.conn.execute(
            sa.select(E.c.type, E.c.object_id).where(E.c.tenant_id == tenant).order_by(E.c.seq)
        )
        return [(r.type, r.object_id) for r in rows]


def _payloads(store: LedgerStore, tenant: uuid.UUID, object_id: uuid.UUID) -> list[Any]:
    with store.read() as repo:
        rows = repo.conn.execute(
            sa.select(E.c.payload)
            .where(E.c.tenant_id == tenant, E.c.object_id == object_id)
            .order_by(E.c.seq)
        )
        return [r.payload for r in rows]


def _pay(
    tenant: uuid.UUID, debit: uuid.UUID, credit: uuid.UUID, amount: int, **kw: Any
) -> TransferSpec:
    return TransferSpec.shorthand(
        tenant, uuid.uuid4(), debit_account_id=debit, credit_account_id=credit,
        amount=amount, currency="USD", **kw,
    )  # fmt: skip


def _codes(results: list[Any]) -> list[ResultCode]:
    return [r.code for r in results]


def _refusal(attempt: Callable[..., object], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What refused ``attempt(*args, **kwargs)``: (error class, code, param); None if nothing."""
    try:
        attempt(*args, **kwargs)
    except SettleError as exc:
        return (type(exc), exc.code, exc.param)
    return (None, None, None)


# ---- opening ---------------------------------------------------------------------------------


def test_opening_an_account_again_with_its_client_id_returns_the_same_account(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    account_id = uuid.uuid4()
    request = _new(tenant, "wallet-7", AccountType.LIABILITY, id=account_id,
                   debits_must_not_exceed_credits=True, overdraft_limit=500,
                   metadata={"customer": "c-7"})  # fmt: skip
    first = open_account(store.uow(), request)
    again = open_account(store.uow(), request)

    assert first.id == account_id
    assert again == first
    assert _account(store, tenant, account_id) == first
    assert first.status is AccountStatus.ACTIVE
    assert first.balances == Balances()
    # The retry wrote nothing: one account.created event, carrying the account as opened.
    assert _events(store, tenant) == [("account.created", account_id)]
    assert _payloads(store, tenant, account_id) == [account_payload(first)]
    assert _payloads(store, tenant, account_id)[0] == {
        "id": str(account_id),
        "code": "wallet-7",
        "name": "Wallet-7",
        "type": "liability",
        "currency": "USD",
        "parent_id": None,
        "status": "active",
        "metadata": {"customer": "c-7"},
    }


def test_reusing_an_account_id_for_a_different_account_is_refused(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    account_id = uuid.uuid4()
    definition: dict[str, Any] = {
        "tenant_id": tenant,
        "id": account_id,
        "code": "wallet-7",
        "name": "Wallet 7",
        "type": AccountType.LIABILITY,
        "currency": "USD",
        "debits_must_not_exceed_credits": True,
        "overdraft_limit": 500,
        "metadata": {"customer": "c-7"},
    }
    original = open_account(store.uow(), NewAccount(**definition))
    changes: list[dict[str, Any]] = [
        {"name": "Someone else's wallet"},
        {"type": AccountType.ASSET},
        {"currency": "EUR"},
        {"debits_must_not_exceed_credits": False, "overdraft_limit": None},
        {"overdraft_limit": 501},
        {"metadata": {"customer": "c-8"}},
        {"code": "wallet-8"},
    ]

    refusals = [
        _refusal(open_account, store.uow(), NewAccount(**{**definition, **change}))
        for change in changes
    ]

    assert refusals == [(AccountExistsError, "account_exists_with_different_fields", "id")] * len(
        changes
    )
    assert _account(store, tenant, account_id) == original
    assert _by_code(store, tenant, "wallet-8") is None
    assert _events(store, tenant) == [("account.created", account_id)]


def test_an_account_code_is_taken_once_per_tenant(store: LedgerStore, tenant: uuid.UUID) -> None:
    cash = _open(store, tenant, "cash", AccountType.ASSET)

    with pytest.raises(AccountCodeTakenError) as refused:
        _open(store, tenant, "cash", AccountType.ASSET, name="Petty cash")

    assert refused.value.code == "account_code_taken"
    assert refused.value.param == "code"
    assert _by_code(store, tenant, "cash") == cash
    assert _events(store, tenant) == [("account.created", cash.id)]
    # Another tenant's books are its own: the same code is free there.
    elsewhere = uuid.uuid4()
    their_cash = _open(store, elsewhere, "cash", AccountType.ASSET)
    assert their_cash.id != cash.id
    assert _by_code(store, elsewhere, "cash") == their_cash


def test_an_account_in_an_unknown_currency_is_refused(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    # Not ISO 4217, lower case, too short, gold (no minor unit), nothing at all.
    currencies = ["QQQ", "usd", "US", "XAU", ""]

    refusals = [
        _refusal(_open, store, tenant, "bank", AccountType.ASSET, currency=c) for c in currencies
    ]

    assert refusals == [(UnknownCurrencyError, "unknown_currency", "currency")] * 5
    assert _by_code(store, tenant, "bank") is None
    assert _events(store, tenant) == []


def test_an_account_that_could_never_be_valid_is_refused(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    both_flags = {"debits_must_not_exceed_credits": True, "credits_must_not_exceed_debits": True}
    debit_capped = {"debits_must_not_exceed_credits": True}
    definitions: list[tuple[dict[str, Any], str]] = [
        (both_flags, "credits_must_not_exceed_debits"),
        ({"overdraft_limit": 1_000}, "overdraft_limit"),  # a limit on no constraint
        ({"overdraft_limit": 0}, "overdraft_limit"),
        ({**debit_capped, "overdraft_limit": -1}, "overdraft_limit"),
        ({"credits_must_not_exceed_debits": True, "overdraft_limit": 2**63}, "overdraft_limit"),
        ({**debit_capped, "overdraft_limit": 10.0}, "overdraft_limit"),
        ({"metadata": {"tier": 3}}, "metadata"),
        ({"name": ""}, "code"),
    ]

    refusals = [
        _refusal(_open, store, tenant, "wallet", AccountType.LIABILITY, **fields)
        for fields, _ in definitions
    ]

    assert refusals == [(InvalidAccountError, "invalid_account", p) for _, p in definitions]
    assert _by_code(store, tenant, "wallet") is None
    assert _events(store, tenant) == []


def test_a_sub_account_rolls_up_into_a_parent_of_its_own_currency(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    receivables = _open(store, tenant, "receivables", AccountType.ASSET)
    euro_receivables = _open(store, tenant, "receivables-eur", AccountType.ASSET, currency="EUR")
    elsewhere = _open(store, uuid.uuid4(), "receivables", AccountType.ASSET)

    child = _open(store, tenant, "receivables-acme", AccountType.ASSET, parent_id=receivables.id)
    assert child.parent_id == receivables.id
    assert _account(store, tenant, child.id).parent_id == receivables.id

    for parent_id in (euro_receivables.id, uuid.uuid4(), elsewhere.id):
        with pytest.raises(ParentAccountError) as refused:
            _open(store, tenant, "receivables-globex", AccountType.ASSET, parent_id=parent_id)
        assert refused.value.code == "invalid_parent_account"
        assert refused.value.param == "parent_id"
    assert _by_code(store, tenant, "receivables-globex") is None
    assert [kind for kind, _ in _events(store, tenant)] == ["account.created"] * 3


# ---- updating --------------------------------------------------------------------------------


def test_renaming_and_retagging_an_account_records_an_update(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    wallet = _open(store, tenant, "wallet", AccountType.LIABILITY, metadata={"tier": "basic"})

    renamed = update_account(
        store.uow(), tenant, wallet.id, name="Gold wallet", metadata={"tier": "gold", "kyc": "ok"}
    )

    assert renamed.name == "Gold wallet"
    assert renamed.metadata == {"tier": "gold", "kyc": "ok"}
    assert renamed.status is AccountStatus.ACTIVE
    stored = _account(store, tenant, wallet.id)
    assert stored == renamed
    assert (stored.code, stored.created_at) == (wallet.code, wallet.created_at)
    assert _events(store, tenant) == [
        ("account.created", wallet.id),
        ("account.updated", wallet.id),
    ]
    assert _payloads(store, tenant, wallet.id)[1]["name"] == "Gold wallet"
    assert _payloads(store, tenant, wallet.id)[1]["metadata"] == {"tier": "gold", "kyc": "ok"}
    # Leaving a field out keeps it.
    retagged = update_account(store.uow(), tenant, wallet.id, metadata={})
    assert (retagged.name, retagged.metadata) == ("Gold wallet", {})


def test_an_invalid_update_changes_nothing(store: LedgerStore, tenant: uuid.UUID) -> None:
    wallet = _open(store, tenant, "wallet", AccountType.LIABILITY, metadata={"tier": "basic"})
    updates: list[tuple[dict[str, Any], str]] = [
        ({"metadata": {"tier": 3}}, "metadata"),
        ({"metadata": {"tier": None}}, "metadata"),
        ({"name": ""}, "name"),
    ]

    refusals = [
        _refusal(update_account, store.uow(), tenant, wallet.id, **update) for update, _ in updates
    ]

    assert refusals == [(InvalidAccountError, "invalid_account", p) for _, p in updates]
    assert _account(store, tenant, wallet.id) == wallet
    assert _events(store, tenant) == [("account.created", wallet.id)]


def test_updating_an_account_of_another_tenant_is_not_found(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    theirs = _open(store, uuid.uuid4(), "wallet", AccountType.LIABILITY)

    with pytest.raises(AccountNotFoundError) as refused:
        update_account(store.uow(), tenant, theirs.id, status=AccountStatus.FROZEN)

    assert refused.value.code == "account_not_found"
    assert _account(store, theirs.tenant_id, theirs.id).status is AccountStatus.ACTIVE
    assert _events(store, tenant) == []


def test_a_frozen_wallet_takes_no_money_in_or_out_but_its_hold_can_be_voided(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET).id
    shop = _open(store, tenant, "shop", AccountType.LIABILITY).id
    wallet = _open(
        store, tenant, "wallet", AccountType.LIABILITY, debits_must_not_exceed_credits=True
    ).id
    hold = _pay(tenant, wallet, shop, 300, pending=True)
    other_hold = _pay(tenant, wallet, shop, 200, pending=True)
    assert _codes(store.submit([_pay(tenant, bank, wallet, 1_000), hold, other_hold])) == [
        R.OK, R.OK, R.OK,
    ]  # fmt: skip
    before = [_account(store, tenant, a).balances for a in (bank, shop, wallet)]

    frozen = update_account(store.uow(), tenant, wallet, status=AccountStatus.FROZEN)
    assert frozen.status is AccountStatus.FROZEN

    spend = _pay(tenant, wallet, shop, 100)
    top_up = _pay(tenant, bank, wallet, 100)
    capture = PostPending(tenant, uuid.uuid4(), hold.id)
    assert _codes(store.submit([spend, top_up, capture])) == [
        R.ACCOUNT_FROZEN, R.ACCOUNT_FROZEN, R.ACCOUNT_FROZEN,
    ]  # fmt: skip
    assert [_account(store, tenant, a).balances for a in (bank, shop, wallet)] == before
    with store.read() as repo:
        assert [repo.get_transfer(tenant, t.id) for t in (spend, top_up, capture)] == [None] * 3

    # Releasing a hold moves no money: a frozen account still lets it go.
    assert _codes(store.submit([VoidPending(tenant, uuid.uuid4(), hold.id)])) == [R.OK]
    released = _account(store, tenant, wallet)
    assert released.balances == Balances(credits_posted=1_000, debits_pending=200)
    assert released.available_balance == 800

    unfrozen = update_account(store.uow(), tenant, wallet, status=AccountStatus.ACTIVE)
    assert unfrozen.status is AccountStatus.ACTIVE
    assert _codes(store.submit([_pay(tenant, wallet, shop, 100)])) == [R.OK]
    assert _codes(store.submit([PostPending(tenant, uuid.uuid4(), other_hold.id)])) == [R.OK]
    assert _account(store, tenant, wallet).balances == Balances(
        debits_posted=300, credits_posted=1_000
    )
    assert [kind for kind, obj in _events(store, tenant) if obj == wallet] == [
        "account.created",
        "account.frozen",
        "account.unfrozen",
    ]


def test_only_an_empty_account_can_be_closed_and_it_stays_closed(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    bank = _open(store, tenant, "bank", AccountType.ASSET).id
    wallet = _open(store, tenant, "wallet", AccountType.LIABILITY).id
    store.submit([_pay(tenant, bank, wallet, 500)])

    with pytest.raises(AccountNotEmptyError) as refused:
        update_account(store.uow(), tenant, wallet, status=AccountStatus.CLOSED)
    assert refused.value.code == "account_not_empty"
    assert refused.value.param == "status"

    # Paid out in full, but with a hold open: still not empty.
    hold = _pay(tenant, wallet, bank, 500, pending=True)
    assert _codes(store.submit([hold])) == [R.OK]
    assert _account(store, tenant, wallet).posted_balance == 500
    assert _codes(store.submit([PostPending(tenant, uuid.uuid4(), hold.id)])) == [R.OK]
    stray_hold = _pay(tenant, bank, wallet, 1, pending=True)
    assert _codes(store.submit([stray_hold])) == [R.OK]
    with pytest.raises(AccountNotEmptyError) as refused:
        update_account(store.uow(), tenant, wallet, status=AccountStatus.CLOSED)
    assert refused.value.code == "account_not_empty"
    assert _account(store, tenant, wallet).status is AccountStatus.ACTIVE

    assert _codes(store.submit([VoidPending(tenant, uuid.uuid4(), stray_hold.id)])) == [R.OK]
    closed = update_account(store.uow(), tenant, wallet, status=AccountStatus.CLOSED)
    assert closed.status is AccountStatus.CLOSED
    assert closed.balances == Balances(debits_posted=500, credits_posted=500)

    assert _codes(
        store.submit([_pay(tenant, bank, wallet, 10), _pay(tenant, wallet, bank, 10)])
    ) == [R.ACCOUNT_CLOSED, R.ACCOUNT_CLOSED]
    for status in (AccountStatus.ACTIVE, AccountStatus.FROZEN):
        with pytest.raises(InvalidStatusTransitionError) as refused_transition:
            update_account(store.uow(), tenant, wallet, status=status)
        assert refused_transition.value.code == "invalid_status_transition"
        assert refused_transition.value.param == "status"
    stored = _account(store, tenant, wallet)
    assert stored.status is AccountStatus.CLOSED
    assert stored.balances == Balances(debits_posted=500, credits_posted=500)
    assert [kind for kind, obj in _events(store, tenant) if obj == wallet] == [
        "account.created",
        "account.closed",
    ]


def test_a_frozen_account_can_be_closed_once_empty(store: LedgerStore, tenant: uuid.UUID) -> None:
    dormant = _open(store, tenant, "dormant", AccountType.LIABILITY).id
    update_account(store.uow(), tenant, dormant, status=AccountStatus.FROZEN)
    update_account(store.uow(), tenant, dormant, name="Dormant (frozen)")
    update_account(store.uow(), tenant, dormant, status=AccountStatus.CLOSED)

    stored = _account(store, tenant, dormant)
    assert (stored.name, stored.status) == ("Dormant (frozen)", AccountStatus.CLOSED)
    # Every change is on the record, in order, each carrying the account as it became.
    assert _events(store, tenant) == [
        ("account.created", dormant),
        ("account.frozen", dormant),
        ("account.updated", dormant),
        ("account.closed", dormant),
    ]
    assert [(p["name"], p["status"]) for p in _payloads(store, tenant, dormant)] == [
        ("Dormant", "active"),
        ("Dormant", "frozen"),
        ("Dormant (frozen)", "frozen"),
        ("Dormant (frozen)", "closed"),
    ]


def test_account_rows_are_written_only_under_the_tenants_chain_head(
    store: LedgerStore, tenant: uuid.UUID
) -> None:
    """The ledger's one lock order: the committer locks no account row, so nobody may write one
    without holding the tenant's chain head first. A writer that forgets is stopped, unwritten."""
    wallet = _open(store, tenant, "wallet", AccountType.LIABILITY)
    other = _new(tenant, "other", AccountType.ASSET)
    stranger = Account(
        id=uuid.uuid4(), tenant_id=tenant, code="stranger", name="Stranger",
        type=AccountType.ASSET, currency="USD", parent_id=None,
        debits_must_not_exceed_credits=False, credits_must_not_exceed_debits=False,
        overdraft_limit=None, status=AccountStatus.ACTIVE, metadata={},
        created_at=wallet.created_at, balances=wallet.balances,
    )  # fmt: skip

    with store.uow() as uow:
        with pytest.raises(RuntimeError, match="without its chain head: lock_tenant first"):
            uow.ledger.update_account(
                wallet, name="renamed", metadata={}, status=AccountStatus.FROZEN
            )
        with pytest.raises(RuntimeError, match="without its chain head: lock_tenant first"):
            uow.ledger.insert_account(stranger)
        uow.commit()

    assert _account(store, tenant, wallet.id) == wallet
    assert _by_code(store, tenant, "stranger") is None
    assert open_account(store.uow(), other).code == "other"
