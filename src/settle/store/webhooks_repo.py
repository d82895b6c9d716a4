"""Webhook endpoints, deliveries and attempts with SQLAlchemy Core, inside a unit of work;
and the set-based SQL of the fan-out and of the deliverer's claim.

Lock order (every writer): the tenant's event cursor, then an endpoint, then its deliveries.
Endpoints are locked ``FOR NO KEY UPDATE``, which does not wait for the key-share locks the
fan-out's delivery inserts take on them through the foreign key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from settle.store import tables
from settle.store.ledger_repo import Page, SqlLedgerRepository
from settle.store.webhook_tables import (
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_event_cursors,
    webhook_events,
)
from settle.webhooks.model import (
    Attempt,
    AttemptResult,
    Delivery,
    DeliveryStatus,
    DisabledReason,
    WebhookEndpoint,
)
from settle.webhooks.signing import SigningSecret

if TYPE_CHECKING:
    from settle.ledger.model import Transfer

__all__ = ["Claim", "SqlWebhookRepository", "read_webhooks"]

W = webhook_endpoints
C = webhook_event_cursors
V = webhook_events
D = webhook_deliveries
AT = webhook_attempts
H = tables.ledger_chain_heads
E = tables.outbox_events
T = tables.ledger_transfers


def _secret(value: str | None) -> SigningSecret | None:
    return None if value is None else SigningSecret(value)


def _endpoint(r: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        **{
            **r._mapping,
            "enabled_events": tuple(r.enabled_events),
            "enabled": bool(r.enabled),
            "disabled_reason": None
            if r.disabled_reason is None
            else DisabledReason(r.disabled_reason),
            "metadata": dict(r.metadata),
            "secret": SigningSecret(r.secret),
            "previous_secret": _secret(r.previous_secret),
        }
    )


_FIXED = ("tenant_id", "id", "start_after_seq", "created_at")  # never change after creation


def _endpoint_values(e: WebhookEndpoint) -> dict[str, Any]:
    """The columns an update writes."""
    values = {f: getattr(e, f) for f in e.__dataclass_fields__ if f not in _FIXED}
    previous = e.previous_secret
    return values | {
        "enabled_events": list(e.enabled_events),
        "disabled_reason": None if e.disabled_reason is None else e.disabled_reason.value,
        "metadata": dict(e.metadata),
        "secret": e.secret.reveal(),
        "previous_secret": None if previous is None else previous.reveal(),
    }


# Deliveries and attempts have one column per field, of the same name.
def _delivery(r: Any) -> Delivery:
    return Delivery(**{**r._mapping, "status": DeliveryStatus(r.status)})


def _attempt(r: Any) -> Attempt:
    return Attempt(**{**r._mapping, "result": AttemptResult(r.result)})


def _row(value: Delivery | Attempt) -> dict[str, Any]:
    return {f: getattr(value, f) for f in value.__dataclass_fields__}


def _by_key(table: sa.Table) -> Any:
    return sa.and_(
        table.c.tenant_id == sa.bindparam("b_tenant_id"), table.c.id == sa.bindparam("b_id")
    )


def _update_by_key(table: sa.Table, columns: Iterable[str]) -> Any:
    """``UPDATE table SET column = :b_column … WHERE (tenant_id, id) = (:b_tenant_id, :b_id)``"""
    return (
        table.update()
        .where(_by_key(table))
        .values({c: sa.bindparam(f"b_{c}", type_=table.c[c].type) for c in columns})
    )


# The record path's statements, built once (a statement built per call costs more to build and
# to key for the compiled cache than to run).
def _endpoint_query(*, lock: bool, deleted: bool) -> Any:
    query = sa.select(W).where(_by_key(W))
    if not deleted:
        query = query.where(W.c.deleted_at.is_(None))
    return query.with_for_update(key_share=True) if lock else query


_GET_ENDPOINT = {
    (lock, deleted): _endpoint_query(lock=lock, deleted=deleted)
    for lock in (False, True)
    for deleted in (False, True)
}
_DELIVERY = sa.select(D).where(_by_key(D))
_GET_DELIVERY = {False: _DELIVERY, True: _DELIVERY.with_for_update()}
_SAVE_DELIVERY = _update_by_key(D, [c.name for c in D.columns if c.name not in ("tenant_id", "id")])
_INSERT_ATTEMPT = AT.insert()
_SAVE_ENDPOINT = _update_by_key(W, [c.name for c in W.columns if c.name not in _FIXED])


def _keyset(
    stmt: sa.Select[Any], key: Any, after: Any, before: Any, limit: int
) -> tuple[sa.Select[Any], bool]:
    """Order by ``key`` after and/or before cursors; True if read backwards (only before)."""
    if after is not None:
        stmt = stmt.where(key > after)
    if before is not None:
        stmt = stmt.where(key < before)
        if after is None:
            return stmt.order_by(key.desc()).limit(limit + 1), True
    return stmt.order_by(key).limit(limit + 1), False


def _page(rows: list[Any], limit: int, backwards: bool) -> tuple[list[Any], bool]:
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    return rows, has_more


@dataclass(frozen=True, slots=True)
class Claim:
    """A due delivery this worker holds the lease of, with its endpoint and its exact body."""

    delivery: Delivery
    endpoint: WebhookEndpoint
    body: bytes


@contextmanager
def read_webhooks(engine: sa.Engine) -> Iterator[SqlWebhookRepository]:
    """A repository on a read-only transaction (a consistent snapshot on PostgreSQL)."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield SqlWebhookRepository(connection)
        connection.rollback()


class SqlWebhookRepository:
    """The webhooks tables seen through one open connection (one transaction)."""

    def __init__(self, connection: sa.Connection) -> None:
        self.conn = connection
        self.dialect = connection.dialect.name

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    # ---- the fan-out cursor -----------------------------------------------------------------

    def _last_event_seq(self, tenant_id: uuid.UUID) -> int:
        seq = self.conn.execute(
            sa.select(H.c.last_event_seq).where(H.c.tenant_id == tenant_id)
        ).scalar()
        return int(seq or 0)

    def lock_event_cursor(self, tenant_id: uuid.UUID) -> int:
        self.conn.execute(
            self._insert(C)
            .values(tenant_id=tenant_id, last_seq=self._last_event_seq(tenant_id))
            .on_conflict_do_nothing()
        )
        self.conn.execute(
            sa.select(C.c.last_seq).where(C.c.tenant_id == tenant_id).with_for_update()
        )
        # Read under the lock: on PostgreSQL each statement sees what committed before it.
        return self._last_event_seq(tenant_id)

    def tenants_behind(self, limit: int = 1000) -> list[uuid.UUID]:
        """Tenants with endpoints whose outbox has events the fan-out has not seen."""
        rows = self.conn.execute(
            sa.select(C.c.tenant_id)
            .join(H, H.c.tenant_id == C.c.tenant_id)
            .where(H.c.last_event_seq > C.c.last_seq)
            .limit(limit)
        )
        return [r[0] for r in rows]

    def take_cursor(self, tenant_id: uuid.UUID) -> tuple[int, int] | None:
        """Lock the tenant's cursor for a fan-out; ``(cursor, last event)``, or None if another
        worker holds it (or the tenant has no endpoints)."""
        stmt = sa.select(C.c.last_seq).where(C.c.tenant_id == tenant_id)
        cursor = self.conn.execute(stmt.with_for_update(skip_locked=True)).scalar()
        if cursor is None:
            return None
        return int(cursor), self._last_event_seq(tenant_id)

    def move_cursor(self, tenant_id: uuid.UUID, seq: int) -> None:
        self.conn.execute(C.update().where(C.c.tenant_id == tenant_id).values(last_seq=seq))

    def events_after(self, tenant_id: uuid.UUID, after_seq: int, limit: int) -> list[Any]:
        """The tenant's outbox rows after ``after_seq``, in order, ``limit`` at most."""
        return list(
            self.conn.execute(
                sa.select(E)
                .where(E.c.tenant_id == tenant_id, E.c.seq > after_seq)
                .order_by(E.c.seq)
                .limit(limit)
            )
        )

    def active_endpoints(self, tenant_id: uuid.UUID) -> list[WebhookEndpoint]:
        rows = self.conn.execute(
            sa.select(W).where(W.c.tenant_id == tenant_id, W.c.enabled, W.c.deleted_at.is_(None))
        )
        return [_endpoint(r) for r in rows]

    def insert_fanout(
        self, events: Sequence[dict[str, Any]], deliveries: Sequence[dict[str, Any]]
    ) -> None:
        """Rendered events and their deliveries: one bulk insert each."""
        if events:
            self.conn.execute(V.insert(), list(events))
        if deliveries:
            self.conn.execute(D.insert(), list(deliveries))

    # ---- endpoints -------------------------------------------------------------------------

    def insert_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self.conn.execute(
            W.insert().values(
                tenant_id=endpoint.tenant_id,
                id=endpoint.id,
                start_after_seq=endpoint.start_after_seq,
                created_at=endpoint.created_at,
                **_endpoint_values(endpoint),
            )
        )

    def get_endpoint(
        self,
        tenant_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        lock: bool = False,
        deleted: bool = False,
    ) -> WebhookEndpoint | None:
        stmt = _GET_ENDPOINT[lock, deleted]
        row = self.conn.execute(stmt, {"b_tenant_id": tenant_id, "b_id": endpoint_id}).first()
        return None if row is None else _endpoint(row)

    def save_endpoint(self, endpoint: WebhookEndpoint) -> None:
        values = {f"b_{k}": v for k, v in _endpoint_values(endpoint).items()}
        values |= {"b_tenant_id": endpoint.tenant_id, "b_id": endpoint.id}
        self.conn.execute(_SAVE_ENDPOINT, values)

    def list_endpoints(
        self,
        tenant_id: uuid.UUID,
        *,
        limit: int,
        starting_after: uuid.UUID | None = None,
        ending_before: uuid.UUID | None = None,
    ) -> Page[WebhookEndpoint]:
        """The tenant's endpoints (not deleted) in id order, after and/or before cursor ids."""
        stmt = sa.select(W).where(W.c.tenant_id == tenant_id, W.c.deleted_at.is_(None))
        stmt, backwards = _keyset(stmt, W.c.id, starting_after, ending_before, limit)
        rows, has_more = _page(list(self.conn.execute(stmt)), limit, backwards)
        return Page([_endpoint(r) for r in rows], has_more)

    def cancel_pending_deliveries(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, now: int
    ) -> int:
        # pending -> cancelled, set-based (the transition table allows it).
        return int(
            self.conn.execute(
                D.update()
                .where(
                    D.c.tenant_id == tenant_id,
                    D.c.endpoint_id == endpoint_id,
                    D.c.status == DeliveryStatus.PENDING.value,
                )
                .values(
                    status=DeliveryStatus.CANCELLED.value,
                    next_attempt_at=None,
                    lease_owner=None,
                    updated_at=now,
                )
            ).rowcount
        )

    # ---- deliveries and attempts -----------------------------------------------------------

    def get_delivery(
        self, tenant_id: uuid.UUID, delivery_id: uuid.UUID, *, lock: bool = False
    ) -> Delivery | None:
        stmt = _GET_DELIVERY[lock]
        row = self.conn.execute(stmt, {"b_tenant_id": tenant_id, "b_id": delivery_id}).first()
        return None if row is None else _delivery(row)

    def save_delivery(self, delivery: Delivery) -> None:
        self.conn.execute(_SAVE_DELIVERY, {f"b_{k}": v for k, v in _row(delivery).items()})

    def insert_attempt(self, attempt: Attempt) -> None:
        self.conn.execute(_INSERT_ATTEMPT, _row(attempt))

    def delivery_seq(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> int | None:
        """The event number of an endpoint's delivery (its list cursor), None if there is none."""
        return self.conn.execute(
            sa.select(D.c.event_seq).where(
                D.c.tenant_id == tenant_id, D.c.endpoint_id == endpoint_id, D.c.id == delivery_id
            )
        ).scalar()

    def list_deliveries(
        self,
        tenant_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        limit: int,
        after_seq: int | None = None,
        before_seq: int | None = None,
    ) -> Page[tuple[Delivery, list[Attempt]]]:
        """An endpoint's deliveries in event order, each with its attempts in order."""
        stmt = sa.select(D).where(D.c.tenant_id == tenant_id, D.c.endpoint_id == endpoint_id)
        stmt, backwards = _keyset(stmt, D.c.event_seq, after_seq, before_seq, limit)
        rows, has_more = _page(list(self.conn.execute(stmt)), limit, backwards)
        deliveries = [_delivery(r) for r in rows]
        attempts = self.attempts_of(tenant_id, [d.id for d in deliveries])
        return Page([(d, attempts.get(d.id, [])) for d in deliveries], has_more)

    def attempts_of(
        self, tenant_id: uuid.UUID, delivery_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Attempt]]:
        out: dict[uuid.UUID, list[Attempt]] = {}
        if not delivery_ids:
            return out
        rows = self.conn.execute(
            sa.select(AT)
            .where(AT.c.tenant_id == tenant_id, AT.c.delivery_id.in_(list(delivery_ids)))
            .order_by(AT.c.delivery_id, AT.c.number)
        )
        for r in rows:
            out.setdefault(r.delivery_id, []).append(_attempt(r))
        return out

    def transfers(
        self, ledger: SqlLedgerRepository, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Transfer]:
        """The tenant's transfers with these ids (as ``/v1/events`` shows them), by id."""
        if not ids:
            return {}
        rows = list(
            self.conn.execute(
                sa.select(T)
                .where(T.c.tenant_id == tenant_id, T.c.id.in_(list(ids)))
                .order_by(T.c.seq)
            )
        )
        return {t.id: t for t in ledger.transfers_from_rows(rows)}

    # ---- the deliverer's claim -------------------------------------------------------------

    def any_due(self, now: int) -> bool:
        """Whether some delivery is due (a read: the claim's write lock only when needed)."""
        stmt = sa.select(D.c.id).where(
            D.c.status == DeliveryStatus.PENDING.value, D.c.next_attempt_at <= now
        )
        return self.conn.execute(stmt.limit(1)).first() is not None

    def claim_due(self, now: int, limit: int, owner: str, lease_until: int) -> list[Claim]:
        """Lease up to ``limit`` due deliveries of active endpoints to ``owner``, with their
        endpoints and bodies; cancel due ones whose endpoint went away meanwhile."""
        active = (
            sa.select(W.c.id)
            .where(
                W.c.tenant_id == D.c.tenant_id,
                W.c.id == D.c.endpoint_id,
                W.c.enabled,
                W.c.deleted_at.is_(None),
            )
            .exists()
        )
        due = D.c.status == DeliveryStatus.PENDING.value, D.c.next_attempt_at <= now
        stmt = (
            sa.select(D.c.tenant_id, D.c.id)
            .where(*due, active)
            .order_by(D.c.next_attempt_at)
            .limit(limit)
            .with_for_update(of=D, skip_locked=True)
        )
        keys = [(r[0], r[1]) for r in self.conn.execute(stmt)]
        self.conn.execute(
            D.update()
            .where(*due, ~active)
            .values(status=DeliveryStatus.CANCELLED.value, next_attempt_at=None, updated_at=now)
        )
        if not keys:
            return []
        key = sa.tuple_(D.c.tenant_id, D.c.id)
        self.conn.execute(
            D.update().where(key.in_(keys)).values(next_attempt_at=lease_until, lease_owner=owner)
        )
        rows = list(self.conn.execute(sa.select(D).where(key.in_(keys))))
        endpoint_keys = sa.tuple_(W.c.tenant_id, W.c.id).in_(
            {(r.tenant_id, r.endpoint_id) for r in rows}
        )
        endpoints = {
            (r.tenant_id, r.id): _endpoint(r)
            for r in self.conn.execute(sa.select(W).where(endpoint_keys))
        }
        event_keys = sa.tuple_(V.c.tenant_id, V.c.seq).in_(
            {(r.tenant_id, r.event_seq) for r in rows}
        )
        bodies = {
            (r.tenant_id, r.seq): bytes(r.body)
            for r in self.conn.execute(
                sa.select(V.c.tenant_id, V.c.seq, V.c.body).where(event_keys)
            )
        }
        claims = [
            Claim(
                _delivery(r),
                endpoints[r.tenant_id, r.endpoint_id],
                bodies[r.tenant_id, r.event_seq],
            )
            for r in rows
        ]
        return sorted(claims, key=lambda c: c.delivery.event_seq)
