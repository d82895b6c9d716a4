"""Tenants and API keys with SQLAlchemy Core, inside a unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from settle.clock import from_micros, to_micros
from settle.security.keys import KeyMode
from settle.security.model import ApiKey, Scope, Tenant
from settle.store import tables

K = tables.api_keys
TN = tables.tenants

__all__ = ["SqlSecurityRepository", "find_api_key"]


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant_id=row.tenant_id,
        prefix=row.prefix,
        digest=bytes(row.digest),
        mode=KeyMode(row.mode),
        scopes=frozenset(Scope(s) for s in row.scopes.split()),
        created_at=from_micros(row.created_at),
        revoked_at=None if row.revoked_at is None else from_micros(row.revoked_at),
        last_used_at=None if row.last_used_at is None else from_micros(row.last_used_at),
    )


def find_api_key(engine: sa.Engine, digest: bytes) -> ApiKey | None:
    """The key with this digest, read on a connection of its own (the authenticator's miss)."""
    with engine.connect() as conn:
        return SqlSecurityRepository(conn).find_api_key(digest)


class SqlSecurityRepository:
    def __init__(self, connection: sa.Connection) -> None:
        self.conn = connection

    def insert_tenant(self, tenant: Tenant) -> None:
        self.conn.execute(
            TN.insert().values(
                id=tenant.id, name=tenant.name, created_at=to_micros(tenant.created_at)
            )
        )

    def get_tenant(self, tenant_id: uuid.UUID) -> Tenant | None:
        row = self.conn.execute(sa.select(TN).where(TN.c.id == tenant_id)).first()
        return None if row is None else Tenant(row.id, row.name, from_micros(row.created_at))

    def insert_api_key(self, key: ApiKey) -> None:
        self.conn.execute(
            K.insert().values(
                id=key.id,
                tenant_id=key.tenant_id,
                prefix=key.prefix,
                digest=key.digest,
                mode=key.mode.value,
                scopes=" ".join(sorted(s.value for s in key.scopes)),
                created_at=to_micros(key.created_at),
            )
        )

    def get_api_key(self, key_id: uuid.UUID) -> ApiKey | None:
        row = self.conn.execute(sa.select(K).where(K.c.id == key_id)).first()
        return None if row is None else _key(row)

    def find_api_key(self, digest: bytes) -> ApiKey | None:
        row = self.conn.execute(sa.select(K).where(K.c.digest == digest)).first()
        return None if row is None else _key(row)

    def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        rows = self.conn.execute(
            sa.select(K).where(K.c.tenant_id == tenant_id).order_by(K.c.created_at, K.c.id)
        )
        return [_key(r) for r in rows]

    def revoke_api_key(self, key_id: uuid.UUID, at: int) -> None:
        self.conn.execute(
            K.update().where(K.c.id == key_id, K.c.revoked_at.is_(None)).values(revoked_at=at)
        )

    def touch_api_keys(self, used: Sequence[tuple[uuid.UUID, int]]) -> None:
        if not used:
            return
        # One prepared statement over every key; a later time only.
        self.conn.execute(
            K.update()
            .where(
                K.c.id == sa.bindparam("key_id"),
                sa.or_(K.c.last_used_at.is_(None), K.c.last_used_at < sa.bindparam("at")),
            )
            .values(last_used_at=sa.bindparam("at")),
            [{"key_id": key_id, "at": at} for key_id, at in used],
        )
