"""Settle: an open-source payments core."""

__all__: list[str] = []
