"""Helpers the routers share: query parsing for lists and time filters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query

from settle.clock import to_micros
from settle.errors import ValidationError

__all__ = ["STATEMENT_CURSOR", "Limit", "micros_or_none", "seq_cursor"]

STATEMENT_CURSOR = r"^\d{1,18}\.\d{1,4}$"  # a transfer has at most 64 postings

Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1 to 100.")]


def micros_or_none(moment: datetime | None, param: str) -> int | None:
    if moment is None:
        return None
    if moment.utcoffset() is None:
        raise ValidationError("timestamps are RFC 3339 with a time zone", param=param)
    return to_micros(moment)


def seq_cursor(cursor: str | None, param: str) -> tuple[int, int] | None:
    """A statement entry's cursor ``"<seq>.<index>"``."""
    if cursor is None:
        return None
    seq, dot, index = cursor.partition(".")
    if dot and seq.isdigit() and index.isdigit() and len(seq) <= 18 and len(index) <= 4:
        return int(seq), int(index)
    raise ValidationError("not a cursor this API issued", param=param)
