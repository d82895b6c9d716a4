"""The unit of work every bounded context's ports extend: one transaction, rolled back unless
committed, with the time read through the injected clock."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

__all__ = ["UnitOfWork"]


class UnitOfWork(Protocol):
    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def now(self) -> int: ...
