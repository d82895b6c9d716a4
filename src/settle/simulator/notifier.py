"""Signed notifications to the merchant, per the Standard Webhooks spec.

Each notification is POSTed from a background task (never from the answer's path) with
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"id.timestamp.body">`` keyed with the base64-decoded part of the ``whsec_`` secret. A failed
delivery (no answer, or not 2xx) is retried with capped exponential backoff, a few times, with
the same ``webhook-id`` (receivers deduplicate on it) and a fresh timestamp and signature.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import tenacity

from settle.simulator.config import decode_webhook_secret

if TYPE_CHECKING:
    from settle.clock import Clock

__all__ = ["Notifier", "sign_notification", "verify_notification"]

Sleep = Callable[[float], Awaitable[None]]


def sign_notification(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one delivery: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_webhook_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_notification(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: int, tolerance: int = 300
) -> bool:
    """Whether a delivery is genuine and fresh (``now`` and ``tolerance`` in seconds).

    Any one of the space-separated ``v1,`` signatures may match; each is compared in constant
    time.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp = lowered.get("webhook-id"), lowered.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = sign_notification(secret, msg_id, int(stamp), body).encode()
    return any(
        hmac.compare_digest(candidate.encode(), expected)
        for candidate in lowered.get("webhook-signature", "").split()
        if candidate.startswith("v1,")
    )


class Notifier:
    """Delivers notifications to one URL in background tasks of the running event loop."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        processor: str,
        clock: Clock,
        attempts: int = 5,
        backoff_seconds: float = 0.5,
        backoff_max_seconds: float = 8.0,
        timeout_seconds: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        decode_webhook_secret(secret)  # refuse a bad secret now, not at the first delivery
        self._url = url
        self._secret = secret
        self._processor = processor
        self._clock = clock
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self._timeout = timeout_seconds
        self._sleep = sleep
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[bool]] = set()
        self.delivered = 0
        self.abandoned = 0

    def __repr__(self) -> str:
        return f"Notifier({self._url!r}, processor={self._processor!r})"

    def notify(self, event_type: str, idempotency_key: str, data: dict[str, Any]) -> str:
        """Queue one notification for delivery; its ``webhook-id``. Needs a running loop."""
        msg_id = f"msg_{uuid.uuid4().hex}"
        body = json.dumps(
            {
                "type": event_type,
                "processor": self._processor,
                "idempotency_key": idempotency_key,
                "data": data,
            },
            separators=(",", ":"),
        ).encode()
        task = asyncio.get_running_loop().create_task(self._deliver(msg_id, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return msg_id

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the deliveries under way."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def aclose(self, grace_seconds: float = 0.0) -> None:
        """Give pending deliveries ``grace_seconds``, cancel the rest, close the client."""
        await self.drain(grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _deliver(self, msg_id: str, body: bytes) -> bool:
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=tenacity.wait_exponential(multiplier=self._backoff, max=self._backoff_max),
            retry=tenacity.retry_if_result(lambda delivered: not delivered),
            retry_error_callback=lambda _state: False,
            sleep=self._sleep,
        )
        delivered: bool = await retrying(self._attempt, msg_id, body)
        if delivered:
            self.delivered += 1
        else:
            self.abandoned += 1
        return delivered

    async def _attempt(self, msg_id: str, body: bytes) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        timestamp = self._clock() // 1_000_000
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_notification(self._secret, msg_id, timestamp, body),
        }
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError:
            return False
        return response.is_success
