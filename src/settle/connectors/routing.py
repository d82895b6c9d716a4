"""Processors in order of priority, and the choice of the one to try next."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from settle.payments.processors import Processor

__all__ = ["ProcessorRouter"]


@runtime_checkable
class _Closable(Protocol):
    def close(self) -> None: ...


class ProcessorRouter:
    """The configured processors, first = preferred.

    ``pick`` gives the first one that is available (its circuit is not open) and not excluded,
    so after a retryable failure on one the caller excludes it and the next attempt goes to
    the next.
    """

    def __init__(self, processors: Sequence[Processor]) -> None:
        names = [p.name for p in processors]
        if not names:
            raise ValueError("a router needs at least one processor")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"processor names must be unique: {', '.join(duplicates)}")
        self._processors = tuple(processors)
        self._by_name = {p.name: p for p in self._processors}

    def __repr__(self) -> str:
        return f"ProcessorRouter({list(self.names)!r})"

    @property
    def names(self) -> tuple[str, ...]:
        """The processors' names in order of priority."""
        return tuple(p.name for p in self._processors)

    def __iter__(self) -> Iterator[Processor]:
        return iter(self._processors)

    def __len__(self) -> int:
        return len(self._processors)

    def get(self, name: str) -> Processor:
        """The processor called ``name``.

        Raises:
            KeyError: no processor has that name.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no processor named {name!r}; configured: {self.names}") from None

    def pick(self, exclude: Collection[str] = ()) -> Processor | None:
        """The first available processor whose name is not in ``exclude``; None if none is."""
        for processor in self._processors:
            if processor.name not in exclude and processor.available():
                return processor
        return None

    def close(self) -> None:
        """Close every processor that holds connections."""
        for processor in self._processors:
            if isinstance(processor, _Closable):
                processor.close()
