"""The jobs context's errors; every code has a heading in ``docs/errors.md``."""

from __future__ import annotations

from typing import ClassVar

from settle.errors import SettleError

__all__ = ["JobNotFoundError", "JobNotRetryableError"]


class JobNotFoundError(SettleError):
    """No job with that id exists for this tenant."""

    code: ClassVar[str] = "job_not_found"


class JobNotRetryableError(SettleError):
    """Only a dead job is retried by hand: a queued or running one is retried already, and a
    succeeded one must not run twice."""

    code: ClassVar[str] = "job_not_retryable"
