"""The outbox inside a unit of work: events appended are numbered and written at the commit,
in the order appended, each tenant's sequence gapless; a rollback writes none."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from settle.security import create_tenant
from settle.store import tables
from settle.store.db import create_db_engine
from settle.store.ledger_verify import verify_ledger
from settle.store.uow import SqlUnitOfWork


def _events(engine: sa.Engine, tenant_id: uuid.UUID) -> list[tuple[int, str]]:
    E = tables.outbox_events  # noqa: N806 - the table, briefly
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(E.c.seq, E.c.type).where(E.c.tenant_id == tenant_id).order_by(E.c.seq)
        )
        return [(r.seq, r.type) for r in rows]


def _head(engine: sa.Engine, tenant_id: uuid.UUID) -> int:
    H = tables.ledger_chain_heads  # noqa: N806
    with engine.connect() as conn:
        seq = conn.execute(sa.select(H.c.last_event_seq).where(H.c.tenant_id == tenant_id)).scalar()
    return int(seq or 0)


def test_events_are_numbered_at_commit_in_the_order_appended(db_url: str) -> None:
    engine = create_db_engine(db_url)
    try:
        a = create_tenant(SqlUnitOfWork(engine), "a").id
        b = create_tenant(SqlUnitOfWork(engine), "b").id
        before_a, before_b = _head(engine, a), _head(engine, b)
        thing = uuid.uuid4()
        with SqlUnitOfWork(engine) as uow:
            for tenant, name in [(b, "x.1"), (a, "x.1"), (a, "x.2"), (b, "x.2"), (a, "x.3")]:
                uow.ledger.append_event(tenant, name, thing, {"n": name})
            assert _events(engine, a)[before_a:] == []  # nothing written before the commit
            uow.commit()
        assert _events(engine, a)[-3:] == [
            (before_a + 1, "x.1"), (before_a + 2, "x.2"), (before_a + 3, "x.3"),
        ]  # fmt: skip
        assert _events(engine, b)[-2:] == [(before_b + 1, "x.1"), (before_b + 2, "x.2")]
        assert (_head(engine, a), _head(engine, b)) == (before_a + 3, before_b + 2)

        with SqlUnitOfWork(engine) as uow:  # rolled back: nothing numbered, nothing written
            uow.ledger.append_event(a, "x.lost", thing, {})
        with SqlUnitOfWork(engine) as uow:
            uow.ledger.append_event(a, "x.4", thing, {})
            uow.commit()
        assert _events(engine, a)[-1] == (before_a + 4, "x.4")
        assert [t for _, t in _events(engine, a)].count("x.lost") == 0
        assert verify_ledger(engine).ok
    finally:
        engine.dispose()
