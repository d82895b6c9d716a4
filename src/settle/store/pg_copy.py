"""PostgreSQL's binary ``COPY`` format, encoded ahead of the transaction that sends it.

The group-commit engine applies batch N+1 while batch N is written. Encoding a batch's rows for
``COPY`` is Python work that would otherwise sit on the committer's critical path, between its
round trips to the server; here the preparer does it, with one ``struct.pack`` per row instead
of a dumper call per field, and the committer only sends the bytes.

The format (PostgreSQL's "Binary Format" of COPY): a signature, flags and header-extension
length; per row the field count (int16) and per field its length (int32, -1 for NULL) and its
binary send form (uuid: 16 bytes; int8/int2: big-endian; text: UTF-8; bytea: the bytes; jsonb:
version byte 1 then the JSON text); then the trailer -1 (int16). Column order is the one of the
``*_COLUMNS`` lists in :mod:`settle.store.ledger_sql`, which the ``COPY`` statements name.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

__all__ = [
    "HEADER",
    "TRAILER",
    "encode_events",
    "encode_holds",
    "encode_postings",
    "encode_transfers",
]

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_INT32 = struct.Struct(">i")

# tenant uuid, seq int8, idx int2, transfer uuid, account uuid, side text(1), currency text(3),
# posted, pending, created_at, debits/credits posted, debits/credits pending: all int8.
_POSTING = struct.Struct(">hi16siqihi16si16si1si3s" + "iq" * 7)
# tenant uuid, id uuid, seq int8 | ... | effective_at, created_at int8, fingerprint, hash bytea(32)
_TRANSFER_HEAD = struct.Struct(">hi16si16siq")
_TRANSFER_TAIL = struct.Struct(">iqiqi32si32s")
_UUID_FIELD = struct.Struct(">i16s")
_INT8_FIELD = struct.Struct(">iq")
# tenant uuid, seq int8 | type text | object uuid | payload jsonb | created_at int8
_EVENT_HEAD = struct.Struct(">hi16siq")
# tenant uuid, transfer uuid, seq int8 | timeout_at int8 or NULL
_HOLD_HEAD = struct.Struct(">hi16si16siq")


def _text(value: str) -> bytes:
    data = value.encode()
    return _INT32.pack(len(data)) + data


def _jsonb(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = b"\x01" + value.encode()
    return _INT32.pack(len(data)) + data


def _fixed_text(value: str, size: int) -> bytes:
    data = value.encode()
    if len(data) != size:
        raise ValueError(f"expected {size} bytes of text, got {value!r}")
    return data


def encode_postings(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """``ledger_postings`` rows (ids as 16 bytes) as one binary ``COPY`` payload."""
    pack = _POSTING.pack
    sides: dict[str, bytes] = {}
    currencies: dict[str, bytes] = {}
    parts = [HEADER]
    append = parts.append
    for tenant, seq, idx, tref, aref, side, currency, p, q, at, dp, cp, dpe, cpe in rows:
        s = sides.get(side)
        if s is None:
            s = sides[side] = _fixed_text(side, 1)
        c = currencies.get(currency)
        if c is None:
            c = currencies[currency] = _fixed_text(currency, 3)
        append(
            pack(14, 16, tenant, 8, seq, 2, idx, 16, tref, 16, aref, 1, s, 3, c,
                 8, p, 8, q, 8, at, 8, dp, 8, cp, 8, dpe, 8, cpe)
        )  # fmt: skip
    append(TRAILER)
    return b"".join(parts)


def encode_transfers(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """``ledger_transfers`` rows (ids as 16 bytes, digests as 32) as one ``COPY`` payload."""
    head, tail = _TRANSFER_HEAD.pack, _TRANSFER_TAIL.pack
    uuid_field, int8_field = _UUID_FIELD.pack, _INT8_FIELD.pack
    # The middle of a row (kind, pending_id, reversal_of, timeout_at, description, metadata)
    # is the same for most transfers: encoded once per distinct value.
    middles: dict[tuple[Any, ...], bytes] = {}
    parts = [HEADER]
    append = parts.append
    for row in rows:
        tenant, tref, seq, kind, pending, reversal, timeout, desc, meta, eff, at, fp, digest = row
        key = (kind, pending, reversal, timeout, desc, meta)
        middle = middles.get(key)
        if middle is None:
            middle = b"".join(
                (
                    _text(kind),
                    _NULL if pending is None else uuid_field(16, pending),
                    _NULL if reversal is None else uuid_field(16, reversal),
                    _NULL if timeout is None else int8_field(8, timeout),
                    _text(desc),
                    _jsonb(meta),
                )
            )
            if pending is None and reversal is None and timeout is None and not desc:
                middles[key] = middle  # only the common shapes: the cache stays small
        append(head(13, 16, tenant, 16, tref, 8, seq))
        append(middle)
        append(tail(8, eff, 8, at, 32, fp, 32, digest))
    append(TRAILER)
    return b"".join(parts)


def encode_events(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """``outbox_events`` rows (ids as 16 bytes, payload JSON text or None) as one payload."""
    head, uuid_field, int8_field = _EVENT_HEAD.pack, _UUID_FIELD.pack, _INT8_FIELD.pack
    types: dict[str, bytes] = {}
    parts = [HEADER]
    append = parts.append
    for tenant, seq, type_, object_ref, payload, at in rows:
        t = types.get(type_)
        if t is None:
            t = types[type_] = _text(type_)
        append(head(6, 16, tenant, 8, seq))
        append(t)
        append(uuid_field(16, object_ref))
        append(_NULL if payload is None else _jsonb(payload))
        append(int8_field(8, at))
    append(TRAILER)
    return b"".join(parts)


def encode_holds(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """``ledger_pending_holds`` rows (ids as 16 bytes, timeout or None) as one payload."""
    head, int8_field = _HOLD_HEAD.pack, _INT8_FIELD.pack
    parts = [HEADER]
    append = parts.append
    for tenant, tref, seq, timeout in rows:
        append(head(4, 16, tenant, 16, tref, 8, seq))
        append(_NULL if timeout is None else int8_field(8, timeout))
    append(TRAILER)
    return b"".join(parts)
