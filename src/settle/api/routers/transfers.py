"""``/v1/transfers``: move money (one, or a batch), resolve holds, reverse, and read."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from settle.api.deps import ReadCaller
from settle.api.idempotency import (
    JSON,
    Keyed,
    KeyedDep,
    derived_id,
    idempotent_ledger_write,
)
from settle.api.problems import result_problem
from settle.api.render import batch_results_json, dump, transfer_json
from settle.api.routers.common import Limit, micros_or_none
from settle.api.schemas import (
    PostingCreate,
    PostPendingCreate,
    ReverseCreate,
    Rfc3339,
    TransferBatchCreate,
    TransferBatchPublic,
    TransferCreate,
    TransferPostingsCreate,
    TransferPublic,
    TransfersPublic,
    VoidCreate,
)
from settle.ledger.apply import TransferResult
from settle.ledger.errors import AccountNotFoundError, ResultCode, TransferNotFoundError
from settle.ledger.model import Side
from settle.ledger.requests import (
    PostingRequest,
    PostPending,
    ReverseTransfer,
    TransferRequest,
    TransferSpec,
    VoidPending,
)
from settle.store.idempotency import TransferLookup
from settle.store.ledger_lists import transfer_seq, transfers_page

router = APIRouter(prefix="/v1/transfers", tags=["transfers"])
_Route = TypeVar("_Route", bound=Callable[..., Any])

_REFUSALS: dict[str, Any] = {
    "description": "A ledger rule refused it (`insufficient_funds`, `currency_mismatch`...)"
}
_EXISTED: dict[int | str, dict[str, Any]] = {
    200: {"model": TransferPublic, "description": "It existed already (same id and content)"}
}
_DOCUMENTED: dict[int | str, dict[str, Any]] = {
    **_EXISTED,
    404: {"description": "An account or pending transfer that does not exist"},
    409: {"description": "A state conflict (`pending_already_posted`, `already_reversed`...)"},
    422: _REFUSALS,
}


def _postings(lines: Sequence[PostingCreate]) -> tuple[PostingRequest, ...]:
    return tuple(PostingRequest(p.account_id, p.side, p.amount, p.currency) for p in lines)


def _spec(tenant: uuid.UUID, body: TransferCreate, transfer_id: uuid.UUID) -> TransferSpec:
    if isinstance(body, TransferPostingsCreate):
        postings = _postings(body.postings)
    else:
        postings = (
            PostingRequest(body.debit_account_id, Side.DEBIT, body.amount, body.currency),
            PostingRequest(body.credit_account_id, Side.CREDIT, body.amount, body.currency),
        )
    return TransferSpec(
        tenant,
        transfer_id,
        postings,
        body.pending,
        body.timeout_seconds,
        body.description,
        body.metadata,
        body.effective_at,
    )


def _one_transfer(
    request: Request, keyed: Keyed
) -> tuple[
    Callable[[Sequence[TransferResult], TransferLookup], tuple[int, bytes] | None],
    Callable[[Sequence[TransferResult]], tuple[int, bytes]],
]:
    """How a single-transfer write answers: inside the batch, and after it for ``exists``."""

    def in_batch(
        results: Sequence[TransferResult], lookup: TransferLookup
    ) -> tuple[int, bytes] | None:
        result = results[0]
        if result.code is ResultCode.OK:
            committed = lookup(result.id)
            if committed is None:  # the batch committed it: it is there
                raise RuntimeError(f"transfer {result.id} missing from its own batch")
            return 201, dump(transfer_json(committed))
        if result.code is ResultCode.EXISTS:
            return None  # nothing moved; answered from the database below
        return result_problem(request, result.code, result.detail)

    def after(results: Sequence[TransferResult]) -> tuple[int, bytes]:
        with keyed.state.store.read() as repo:
            existing = repo.get_transfer(keyed.tenant_id, results[0].id)
        if existing is None:
            raise RuntimeError(f"transfer {results[0].id} reported as existing is not there")
        return 200, dump(transfer_json(existing))

    return in_batch, after


async def _write_one(request: Request, keyed: Keyed, transfer: TransferRequest) -> Response:
    render, after = _one_transfer(request, keyed)
    return await idempotent_ledger_write(keyed, [transfer], render=render, render_after=after)


@router.post(
    "",
    status_code=201,
    response_model=TransferPublic,
    responses=_DOCUMENTED,
)
async def create_transfer(
    request: Request,
    body: TransferCreate,
    keyed: KeyedDep,
) -> Response:
    """Post a transfer at once, or hold it as `pending` (optionally with a timeout)."""
    transfer_id = body.id or derived_id(keyed)
    return await _write_one(request, keyed, _spec(keyed.tenant_id, body, transfer_id))


@router.post("/batch", response_model=TransferBatchPublic)
async def create_transfer_batch(body: TransferBatchCreate, keyed: KeyedDep) -> Response:
    """Up to 8,190 transfers in one commit, one result each, in order. With `atomic`, all
    succeed or none does (the others report `linked_transfer_failed`)."""
    tenant = keyed.tenant_id
    specs = [_spec(tenant, t, t.id or derived_id(keyed, i)) for i, t in enumerate(body.transfers)]

    def in_batch(results: Sequence[TransferResult], _lookup: TransferLookup) -> tuple[int, bytes]:
        return 200, dump(batch_results_json(results, body.atomic))

    def after(results: Sequence[TransferResult]) -> tuple[int, bytes]:
        return in_batch(results, lambda _id: None)

    return await idempotent_ledger_write(
        keyed, specs, atomic=body.atomic, render=in_batch, render_after=after
    )


@router.get("", response_model=TransfersPublic)
def list_transfers(
    caller: ReadCaller,
    account_id: uuid.UUID | None = None,
    created_after: Rfc3339 | None = None,
    created_before: Rfc3339 | None = None,
    limit: Limit = 10,
    starting_after: uuid.UUID | None = None,
    ending_before: uuid.UUID | None = None,
) -> Response:
    """Transfers in journal order; only those touching `account_id` if given. With both
    cursors, the transfers between them."""
    tenant = caller.tenant_id
    start = micros_or_none(created_after, "created_after")
    end = micros_or_none(created_before, "created_before")
    with caller.state.store.read() as repo:
        if account_id is not None and repo.get_account(tenant, account_id) is None:
            raise AccountNotFoundError(f"account {account_id} not found", param="account_id")
        cursors = {}
        for name, cursor in (("starting_after", starting_after), ("ending_before", ending_before)):
            if cursor is not None:
                seq = transfer_seq(repo, tenant, cursor)
                if seq is None:
                    raise TransferNotFoundError(f"no transfer {cursor} to page from", param=name)
                cursors[name] = seq
        page = transfers_page(
            repo,
            tenant,
            account_id=account_id,
            start=None if start is None else start + 1,
            end=end,
            limit=limit,
            after_seq=cursors.get("starting_after"),
            before_seq=cursors.get("ending_before"),
        )
    body = {"data": [transfer_json(t) for t in page.data], "has_more": page.has_more}
    return Response(dump(body), media_type=JSON)


@router.get("/{transfer_id}", response_model=TransferPublic)
def get_transfer(transfer_id: uuid.UUID, caller: ReadCaller) -> Response:
    with caller.state.store.read() as repo:
        transfer = repo.get_transfer(caller.tenant_id, transfer_id)
    if transfer is None:
        raise TransferNotFoundError(f"transfer {transfer_id} not found", param="id")
    return Response(dump(transfer_json(transfer)), media_type=JSON)


def _follow_up(verb: str) -> Callable[[_Route], _Route]:
    """The route of a transfer that follows up an earlier one (post, void, reverse)."""
    return router.post(
        f"/{{transfer_id}}/{verb}",
        status_code=201,
        response_model=TransferPublic,
        responses=_DOCUMENTED,
    )


@_follow_up("post")
async def post_pending_transfer(
    request: Request,
    transfer_id: uuid.UUID,
    keyed: KeyedDep,
    body: Annotated[PostPendingCreate | None, Body()] = None,
) -> Response:
    """Post a pending transfer in full, or for a smaller `amount` (the rest is released).
    Answers the new `post_pending` transfer."""
    body = body or PostPendingCreate()
    request_ = PostPending(
        keyed.tenant_id,
        body.id or derived_id(keyed),
        transfer_id,
        body.amount,
        None if body.postings is None else _postings(body.postings),
        body.description,
        body.metadata,
    )
    return await _write_one(request, keyed, request_)


@_follow_up("void")
async def void_pending_transfer(
    request: Request,
    transfer_id: uuid.UUID,
    keyed: KeyedDep,
    body: Annotated[VoidCreate | None, Body()] = None,
) -> Response:
    """Release a pending transfer without posting anything. Answers the `void_pending`
    transfer."""
    body = body or VoidCreate()
    void = VoidPending(
        keyed.tenant_id,
        body.id or derived_id(keyed),
        transfer_id,
        body.description,
        body.metadata,
    )
    return await _write_one(request, keyed, void)


@_follow_up("reverse")
async def reverse_transfer(
    request: Request,
    transfer_id: uuid.UUID,
    keyed: KeyedDep,
    body: Annotated[ReverseCreate | None, Body()] = None,
) -> Response:
    """Undo a posted transfer with a new transfer that mirrors its postings."""
    body = body or ReverseCreate()
    reversal = ReverseTransfer(
        keyed.tenant_id,
        body.id or derived_id(keyed),
        transfer_id,
        body.description,
        body.metadata,
    )
    return await _write_one(request, keyed, reversal)
