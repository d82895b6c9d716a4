"""Payment intents, attempts and refunds with SQLAlchemy Core, inside a unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa

from settle.clock import from_micros, to_micros
from settle.payments.model import (
    AttemptOperation,
    AttemptStatus,
    CaptureMethod,
    IntentStatus,
    PaymentAttempt,
    PaymentError,
    PaymentIntent,
    Refund,
    RefundStatus,
)
from settle.store import payment_tables

PI = payment_tables.payment_intents
PA = payment_tables.payment_attempts
RF = payment_tables.refunds

__all__ = ["SqlPaymentsRepository", "intents_page", "refunds_page"]

# Built once (see settle.store.ledger_repo): the values come as execution parameters.
_INSERT_INTENT = PI.insert()
_INSERT_ATTEMPT = PA.insert()


def _micros(value: Any) -> int | None:
    return None if value is None else to_micros(value)


def _moment(value: int | None) -> Any:
    return None if value is None else from_micros(value)


def _error_json(error: PaymentError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "code": error.code,
        "message": error.message,
        "decline_code": error.decline_code,
        "do_not_retry": error.do_not_retry,
    }


def _intent_values(i: PaymentIntent) -> dict[str, Any]:
    return {
        "tenant_id": i.tenant_id,
        "id": i.id,
        "amount": i.amount,
        "currency": i.currency,
        "status": i.status.value,
        "capture_method": i.capture_method.value,
        "customer": i.customer,
        "payment_method": i.payment_method,
        "description": i.description,
        "metadata": dict(i.metadata),
        "version": i.version,
        "amount_capturable": i.amount_capturable,
        "amount_received": i.amount_received,
        "amount_refunded": i.amount_refunded,
        "fee": i.fee,
        "action": None if i.action is None else i.action.value,
        "capture_amount": i.capture_amount,
        "processor": i.processor,
        "authorization_ref": i.authorization,
        "hold_transfer_id": i.hold_transfer_id,
        "last_error": _error_json(i.last_error),
        "cancellation_reason": i.cancellation_reason,
        "canceled_at": _micros(i.canceled_at),
        "created_at": to_micros(i.created_at),
        "updated_at": to_micros(i.updated_at),
    }


def _intent(r: Any) -> PaymentIntent:
    error = r.last_error
    return PaymentIntent(
        tenant_id=r.tenant_id,
        id=r.id,
        amount=r.amount,
        currency=r.currency,
        status=IntentStatus(r.status),
        capture_method=CaptureMethod(r.capture_method),
        customer=r.customer,
        payment_method=r.payment_method,
        description=r.description,
        metadata=dict(r.metadata),
        created_at=from_micros(r.created_at),
        updated_at=from_micros(r.updated_at),
        version=r.version,
        amount_capturable=r.amount_capturable,
        amount_received=r.amount_received,
        amount_refunded=r.amount_refunded,
        fee=r.fee,
        action=None if r.action is None else AttemptOperation(r.action),
        capture_amount=r.capture_amount,
        processor=r.processor,
        authorization=r.authorization_ref,
        hold_transfer_id=r.hold_transfer_id,
        last_error=None if error is None else PaymentError(**error),
        cancellation_reason=r.cancellation_reason,
        canceled_at=_moment(r.canceled_at),
    )


def _attempt_values(a: PaymentAttempt) -> dict[str, Any]:
    return {
        "tenant_id": a.tenant_id,
        "id": a.id,
        "intent_id": a.intent_id,
        "operation": a.operation.value,
        "processor": a.processor,
        "amount": a.amount,
        "status": a.status.value,
        "reference": a.reference,
        "decline_code": a.decline_code,
        "do_not_retry": a.do_not_retry,
        "latency_us": a.latency_us,
        "created_at": to_micros(a.created_at),
        "completed_at": _micros(a.completed_at),
    }


def _attempt(r: Any) -> PaymentAttempt:
    return PaymentAttempt(
        tenant_id=r.tenant_id,
        id=r.id,
        intent_id=r.intent_id,
        operation=AttemptOperation(r.operation),
        processor=r.processor,
        amount=r.amount,
        status=AttemptStatus(r.status),
        created_at=from_micros(r.created_at),
        reference=r.reference,
        decline_code=r.decline_code,
        do_not_retry=bool(r.do_not_retry),
        latency_us=r.latency_us,
        completed_at=_moment(r.completed_at),
    )


def _refund_values(f: Refund) -> dict[str, Any]:
    return {
        "tenant_id": f.tenant_id,
        "id": f.id,
        "intent_id": f.intent_id,
        "amount": f.amount,
        "currency": f.currency,
        "status": f.status.value,
        "reason": f.reason,
        "version": f.version,
        "hold_transfer_id": f.hold_transfer_id,
        "processor": f.processor,
        "reference": f.reference,
        "failure_code": f.failure_code,
        "metadata": dict(f.metadata),
        "created_at": to_micros(f.created_at),
        "updated_at": to_micros(f.updated_at),
    }


def _refund(r: Any) -> Refund:
    return Refund(
        tenant_id=r.tenant_id,
        id=r.id,
        intent_id=r.intent_id,
        amount=r.amount,
        currency=r.currency,
        status=RefundStatus(r.status),
        reason=r.reason,
        created_at=from_micros(r.created_at),
        updated_at=from_micros(r.updated_at),
        version=r.version,
        hold_transfer_id=r.hold_transfer_id,
        processor=r.processor,
        reference=r.reference,
        failure_code=r.failure_code,
        metadata=dict(r.metadata),
    )


_KEYS = ("tenant_id", "id")


def _bound(values: dict[str, Any]) -> dict[str, Any]:
    # Bind names differ from column names: SQLAlchemy reserves the columns' own for SET.
    return {f"b_{k}": v for k, v in values.items()}


def _keyed_update(table: sa.Table, *, versioned: bool) -> Any:
    """``UPDATE table SET every other column WHERE the key matches`` (and, if ``versioned``,
    ``version = :version - 1``), for executemany over :func:`_bound` rows."""
    c = table.c
    where = [c.tenant_id == sa.bindparam("b_tenant_id"), c.id == sa.bindparam("b_id")]
    if versioned:
        where.append(c.version == sa.bindparam("b_version", type_=c.version.type) - 1)
    return (
        table.update()
        .where(*where)
        .values(
            {
                col.name: sa.bindparam(f"b_{col.name}", type_=col.type)
                for col in table.columns
                if col.name not in _KEYS
            }
        )
    )


_VERSIONED_UPDATE = {t.name: _keyed_update(t, versioned=True) for t in (PI, RF)}
_UPDATE_ATTEMPT = _keyed_update(PA, versioned=False)
_TENANT: Any = sa.bindparam("b_tenant_id")
_IDS: Any = sa.bindparam("b_ids", expanding=True)


def _locked_or_not(query: sa.Select[Any]) -> dict[bool, sa.Select[Any]]:
    return {False: query, True: query.with_for_update()}


_BY_KEY = {
    (t.name, lock): query
    for t in (PI, PA, RF)
    for lock, query in _locked_or_not(
        sa.select(t).where(t.c.tenant_id == _TENANT, t.c.id == sa.bindparam("b_id"))
    ).items()
}
_INTENTS = _locked_or_not(
    sa.select(PI).where(PI.c.tenant_id == _TENANT, PI.c.id.in_(_IDS)).order_by(PI.c.id)
)
_ATTEMPTS = sa.select(PA).where(PA.c.tenant_id == _TENANT, PA.c.id.in_(_IDS))
_ATTEMPTS_OF_INTENTS = (
    sa.select(PA)
    .where(PA.c.tenant_id == _TENANT, PA.c.intent_id.in_(_IDS))
    .order_by(PA.c.created_at, PA.c.id)
)


class StaleWriteError(RuntimeError):
    """The row changed since it was read: a writer skipped the row lock."""


class SqlPaymentsRepository:
    """:class:`settle.payments.ports.PaymentsRepository` on one connection (one transaction).

    Updates are guarded by the version read: every writer locks the row first, so a
    mismatch is a bug, and it fails loudly instead of losing a change.
    """

    def __init__(self, connection: sa.Connection) -> None:
        self.conn = connection

    # ---- intents ---------------------------------------------------------------------------

    def insert_intent(self, intent: PaymentIntent) -> None:
        self.conn.execute(_INSERT_INTENT, _intent_values(intent))

    def _row(self, table: sa.Table, tenant_id: uuid.UUID, row_id: uuid.UUID, lock: bool) -> Any:
        query = _BY_KEY[table.name, lock]
        return self.conn.execute(query, {"b_tenant_id": tenant_id, "b_id": row_id}).first()

    def get_intent(
        self, tenant_id: uuid.UUID, intent_id: uuid.UUID, *, lock: bool = False
    ) -> PaymentIntent | None:
        row = self._row(PI, tenant_id, intent_id, lock)
        return None if row is None else _intent(row)

    def _update_next_version(self, table: sa.Table, values: dict[str, Any], what: str) -> None:
        """Write ``values`` over the row one version older, or fail loudly."""
        done = self.conn.execute(_VERSIONED_UPDATE[table.name], _bound(values))
        if done.rowcount != 1:
            raise StaleWriteError(f"{what} {values['id']} changed under this write")

    def update_intent(self, intent: PaymentIntent) -> None:
        self._update_next_version(PI, _intent_values(intent), "payment intent")

    def get_intents(
        self, tenant_id: uuid.UUID, intent_ids: Collection[uuid.UUID], *, lock: bool = False
    ) -> dict[uuid.UUID, PaymentIntent]:
        """The intents of ``intent_ids`` that exist, locked in id order (so two batches
        locking overlapping sets never deadlock)."""
        if not intent_ids:
            return {}
        params = {"b_tenant_id": tenant_id, "b_ids": list(intent_ids)}
        return {r.id: _intent(r) for r in self.conn.execute(_INTENTS[lock], params)}

    def update_intents(self, intents: Sequence[PaymentIntent]) -> None:
        """Write each intent over the row one version older (one statement for all), or fail
        loudly."""
        if len(intents) < 2:
            for intent in intents:
                self.update_intent(intent)
            return
        done = self.conn.execute(
            _VERSIONED_UPDATE[PI.name], [_bound(_intent_values(i)) for i in intents]
        )
        if done.rowcount != len(intents):
            stale = len(intents) - done.rowcount
            raise StaleWriteError(f"{stale} payment intents changed under this write")

    # ---- attempts --------------------------------------------------------------------------

    def insert_attempt(self, attempt: PaymentAttempt) -> None:
        self.conn.execute(_INSERT_ATTEMPT, _attempt_values(attempt))

    def update_attempt(self, attempt: PaymentAttempt) -> None:
        self.conn.execute(_UPDATE_ATTEMPT, _bound(_attempt_values(attempt)))

    def get_attempt(self, tenant_id: uuid.UUID, attempt_id: uuid.UUID) -> PaymentAttempt | None:
        row = self._row(PA, tenant_id, attempt_id, False)
        return None if row is None else _attempt(row)

    def insert_attempts(self, attempts: Sequence[PaymentAttempt]) -> None:
        if attempts:
            self.conn.execute(_INSERT_ATTEMPT, [_attempt_values(a) for a in attempts])

    def update_attempts(self, attempts: Sequence[PaymentAttempt]) -> None:
        if len(attempts) < 2:
            for attempt in attempts:
                self.update_attempt(attempt)
            return
        self.conn.execute(_UPDATE_ATTEMPT, [_bound(_attempt_values(a)) for a in attempts])

    def get_attempts(
        self, tenant_id: uuid.UUID, attempt_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, PaymentAttempt]:
        if not attempt_ids:
            return {}
        params = {"b_tenant_id": tenant_id, "b_ids": list(attempt_ids)}
        return {r.id: _attempt(r) for r in self.conn.execute(_ATTEMPTS, params)}

    def attempts_for_intents(
        self, tenant_id: uuid.UUID, intent_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, list[PaymentAttempt]]:
        """Each intent's attempts, oldest first (an intent without any maps to [])."""
        found: dict[uuid.UUID, list[PaymentAttempt]] = {i: [] for i in intent_ids}
        if not intent_ids:
            return found
        params = {"b_tenant_id": tenant_id, "b_ids": list(intent_ids)}
        for r in self.conn.execute(_ATTEMPTS_OF_INTENTS, params):
            found[r.intent_id].append(_attempt(r))
        return found

    def attempts_for(self, tenant_id: uuid.UUID, intent_id: uuid.UUID) -> list[PaymentAttempt]:
        rows = self.conn.execute(
            sa.select(PA)
            .where(PA.c.tenant_id == tenant_id, PA.c.intent_id == intent_id)
            .order_by(PA.c.created_at, PA.c.id)
        )
        return [_attempt(r) for r in rows]

    # ---- refunds ---------------------------------------------------------------------------

    def insert_refund(self, refund: Refund) -> None:
        self.conn.execute(RF.insert().values(**_refund_values(refund)))

    def get_refund(
        self, tenant_id: uuid.UUID, refund_id: uuid.UUID, *, lock: bool = False
    ) -> Refund | None:
        row = self._row(RF, tenant_id, refund_id, lock)
        return None if row is None else _refund(row)

    def update_refund(self, refund: Refund) -> None:
        self._update_next_version(RF, _refund_values(refund), "refund")

    def refunds_for(self, tenant_id: uuid.UUID, intent_id: uuid.UUID) -> list[Refund]:
        rows = self.conn.execute(
            sa.select(RF)
            .where(RF.c.tenant_id == tenant_id, RF.c.intent_id == intent_id)
            .order_by(RF.c.created_at, RF.c.id)
        )
        return [_refund(r) for r in rows]


def _page(
    conn: sa.Connection,
    table: sa.Table,
    convert: Any,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    starting_after: uuid.UUID | None,
    ending_before: uuid.UUID | None,
    where: list[Any],
) -> tuple[list[Any], bool]:
    """Newest first, by (created_at, id); cursors are ids of rows of the same tenant."""
    c = table.c
    query = sa.select(table).where(c.tenant_id == tenant_id, *where)

    def position(row_id: uuid.UUID) -> int | None:
        return conn.execute(
            sa.select(c.created_at).where(c.tenant_id == tenant_id, c.id == row_id)
        ).scalar()

    reverse = False
    if starting_after is not None:
        at = position(starting_after)
        if at is None:
            return [], False
        query = query.where(
            sa.or_(c.created_at < at, sa.and_(c.created_at == at, c.id < starting_after))
        )
    if ending_before is not None:
        at = position(ending_before)
        if at is None:
            return [], False
        query = query.where(
            sa.or_(c.created_at > at, sa.and_(c.created_at == at, c.id > ending_before))
        )
        reverse = starting_after is None
    order = (c.created_at.asc(), c.id.asc()) if reverse else (c.created_at.desc(), c.id.desc())
    rows = [convert(r) for r in conn.execute(query.order_by(*order).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    if reverse:
        rows.reverse()
    return rows, more


def intents_page(
    conn: sa.Connection,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    starting_after: uuid.UUID | None = None,
    ending_before: uuid.UUID | None = None,
    status: IntentStatus | None = None,
    customer: str | None = None,
) -> tuple[list[PaymentIntent], bool]:
    where: list[Any] = []
    if status is not None:
        where.append(PI.c.status == status.value)
    if customer is not None:
        where.append(PI.c.customer == customer)
    return _page(
        conn, PI, _intent, tenant_id, limit=limit, starting_after=starting_after,
        ending_before=ending_before, where=where,
    )  # fmt: skip


def refunds_page(
    conn: sa.Connection,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    starting_after: uuid.UUID | None = None,
    ending_before: uuid.UUID | None = None,
    intent_id: uuid.UUID | None = None,
) -> tuple[list[Refund], bool]:
    where: list[Any] = [] if intent_id is None else [RF.c.intent_id == intent_id]
    return _page(
        conn, RF, _refund, tenant_id, limit=limit, starting_after=starting_after,
        ending_before=ending_before, where=where,
    )  # fmt: skip
