"""The platform fee: basis points of the captured amount plus a fixed part, in minor units."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FeeSchedule"]


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """``bps`` hundredths of a percent of the amount, rounded half up, plus ``fixed`` minor
    units; never more than the amount itself.

    Monotonic in the amount, and so is the merchant's share (amount - fee): a partial capture
    never takes a larger fee, nor gives the merchant more, than the whole authorization would,
    which is what lets the capture post each line of the authorization's hold in part.
    """

    bps: int = 290
    fixed: int = 30

    def __post_init__(self) -> None:
        if not (0 <= self.bps < 10_000 and self.fixed >= 0):
            raise ValueError("a fee is 0 to 9999 basis points plus a non-negative fixed part")

    def fee_for(self, amount: int) -> int:
        # Round half up, in integers: add half the divisor before dividing.
        proportional = (amount * self.bps + 5_000) // 10_000
        return min(amount, self.fixed + proportional)

    @classmethod
    def parse(cls, spec: str) -> FeeSchedule:
        """``"bps=290,fixed=30"`` (either part may be left out)."""
        parts: dict[str, int] = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, _, value = item.partition("=")
            if name not in ("bps", "fixed") or not value.isdigit():
                raise ValueError(f"bad fee part {item!r}: use bps=N,fixed=N")
            parts[name] = int(value)
        return cls(**parts)
