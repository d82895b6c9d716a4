"""``/v1/accounts``: open, list, read and change accounts; balances and statements."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from settle.api.deps import ReadCaller, WriteCaller
from settle.api.idempotency import JSON, KeyedDep, idempotent_call
from settle.api.render import account_json, balances_json, dump, statement_entry_json
from settle.api.routers.common import STATEMENT_CURSOR, Limit, micros_or_none, seq_cursor
from settle.api.schemas import (
    CURRENCY_SCHEMA,
    AccountCreate,
    AccountPublic,
    AccountsPublic,
    AccountUpdate,
    BalancePublic,
    Rfc3339,
    StatementPublic,
)
from settle.clock import from_micros
from settle.ledger.errors import AccountNotFoundError
from settle.ledger.model import Account, AccountStatus, AccountType, NewAccount
from settle.ledger.service import open_account, update_account
from settle.store.ledger_lists import statement_page
from settle.store.ledger_repo import AccountQuery
from settle.store.uow import SqlUnitOfWork

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


def _found(account: Account | None, account_id: uuid.UUID) -> Account:
    if account is None:
        raise AccountNotFoundError(f"account {account_id} not found", param="id")
    return account


@router.post(
    "",
    status_code=201,
    response_model=AccountPublic,
    responses={200: {"model": AccountPublic, "description": "It existed (same id and fields)"}},
)
async def create_account(body: AccountCreate, keyed: KeyedDep) -> Response:
    """Open an account. With a client-chosen `id`, repeating the request returns the account."""
    cmd = NewAccount(
        tenant_id=keyed.tenant_id,
        code=body.code,
        name=body.name,
        type=body.type,
        currency=body.currency,
        id=body.id,
        parent_id=body.parent_id,
        debits_must_not_exceed_credits=body.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=body.credits_must_not_exceed_debits,
        overdraft_limit=body.overdraft_limit,
        metadata=body.metadata,
    )

    started = from_micros(keyed.state.clock())

    def effect(uow: SqlUnitOfWork) -> Account:
        return open_account(uow, cmd)

    def render(account: Account) -> tuple[int, bytes]:
        # 200: the client's id named an account opened before this request, with these fields.
        return 201 if account.created_at >= started else 200, dump(account_json(account))

    return await idempotent_call(keyed, effect, render)


@router.get("", response_model=AccountsPublic)
def list_accounts(
    request: Request,
    caller: ReadCaller,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
    ending_before: uuid.UUID | None = None,
    currency: Annotated[
        str | None, Query(pattern=r"^[A-Z]{3}$", json_schema_extra=CURRENCY_SCHEMA)
    ] = None,
    type: AccountType | None = None,
    parent_id: uuid.UUID | None = None,
    status: AccountStatus | None = None,
) -> Response:
    """Accounts in id order. Filter on metadata with `metadata[key]=value` (repeatable)."""
    metadata: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name.startswith("metadata[") and name.endswith("]") and len(name) > 10:
            metadata[name[9:-1]] = value
    query = AccountQuery(
        currency=currency,
        type=None if type is None else type.value,
        parent_id=parent_id,
        status=None if status is None else status.value,
        metadata=metadata or None,
    )
    with caller.state.store.read() as repo:
        page = repo.list_accounts(
            caller.tenant_id,
            query,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )
    body = {"data": [account_json(a) for a in page.data], "has_more": page.has_more}
    return Response(dump(body), media_type=JSON)


@router.get("/{account_id}", response_model=AccountPublic)
def get_account(account_id: uuid.UUID, caller: ReadCaller) -> Response:
    with caller.state.store.read() as repo:
        account = _found(repo.get_account(caller.tenant_id, account_id), account_id)
    return Response(dump(account_json(account)), media_type=JSON)


@router.patch("/{account_id}", response_model=AccountPublic)
def patch_account(account_id: uuid.UUID, body: AccountUpdate, caller: WriteCaller) -> Response:
    """Rename, re-tag, freeze, unfreeze or close (only when empty) an account."""
    account = update_account(
        caller.state.store.uow(),
        caller.tenant_id,
        account_id,
        name=body.name,
        metadata=body.metadata,
        status=body.status,
    )
    return Response(dump(account_json(account)), media_type=JSON)


@router.get("/{account_id}/balance", response_model=BalancePublic)
def get_balance(
    account_id: uuid.UUID,
    caller: ReadCaller,
    as_of: Rfc3339 | None = None,
) -> Response:
    """The account's posted, pending and available balances, now or as of a moment."""
    at = micros_or_none(as_of, "as_of")
    tenant = caller.tenant_id
    with caller.state.store.read() as repo:
        account = _found(repo.get_account(tenant, account_id), account_id)
        normal = account.normal_side
        if at is None:
            balances, rolled = account.balances, repo.rolled_up_balances(tenant, account_id)
        else:
            balances, rolled = repo.balances_as_of(tenant, account_id, at=at), None
    body = {
        "object": "balance",
        "account_id": account_id,
        "currency": account.currency,
        "as_of": None if at is None else from_micros(at),  # in UTC, whatever the offset given
        "balances": balances_json(balances, normal),
        "rolled_up": None if rolled is None else balances_json(rolled, normal),
    }
    return Response(dump(body), media_type=JSON)


@router.get("/{account_id}/statement", response_model=StatementPublic)
def get_statement(
    account_id: uuid.UUID,
    caller: ReadCaller,
    start: Annotated[Rfc3339 | None, Query(alias="from")] = None,
    end: Annotated[Rfc3339 | None, Query(alias="to")] = None,
    limit: Limit = 10,
    starting_after: Annotated[str | None, Query(pattern=STATEMENT_CURSOR)] = None,
    ending_before: Annotated[str | None, Query(pattern=STATEMENT_CURSOR)] = None,
) -> Response:
    """The account's postings in [from, to), each with the running balance after it; with both
    cursors, the entries between them."""
    tenant = caller.tenant_id
    with caller.state.store.read() as repo:
        account = _found(repo.get_account(tenant, account_id), account_id)
        page = statement_page(
            repo,
            tenant,
            account_id,
            start=micros_or_none(start, "from"),
            end=micros_or_none(end, "to"),
            limit=limit,
            after=seq_cursor(starting_after, "starting_after"),
            before=seq_cursor(ending_before, "ending_before"),
        )
    normal = account.normal_side
    body = {
        "object": "statement",
        "account_id": account_id,
        "currency": account.currency,
        "data": [statement_entry_json(p, normal) for p in page.data],
        "has_more": page.has_more,
    }
    return Response(dump(body), media_type=JSON)
