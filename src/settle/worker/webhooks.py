"""The webhook runner: fans committed events out into deliveries and sends the due ones.

*Fan-out.* For each tenant with endpoints, the outbox is read after the tenant's cursor a page
at a time (one query), every event some active endpoint wants is rendered once and stored as
the exact bytes to send, one delivery per wanting endpoint is inserted (one bulk insert), and
the cursor moves on, all in one transaction under the cursor's lock.

*Delivery.* Due deliveries are claimed under a lease (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several workers share the work; SQLite serialises writers) and sent
concurrently by a small thread pool, each with a timeout, to the address the URL guard has just
checked, with the Standard Webhooks headers signed by every live secret. What each attempt
saw goes to a recorder thread, which records every attempt finished since its last commit,
and what follows from each (the next try, success, failure, disabling the endpoint), in one
transaction (:func:`settle.webhooks.service.record_attempts`); a batch that fails is recorded
attempt by attempt. A worker that dies leaves its leases to run out; the deliveries are then
due again.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from settle.api.webhook_schemas import event_body
from settle.clock import Clock, system_clock
from settle.store.uow import SqlUnitOfWork
from settle.store.webhooks_repo import SqlWebhookRepository
from settle.webhooks.address import Resolver, UrlGuard, system_resolver
from settle.webhooks.errors import WebhookError
from settle.webhooks.model import AttemptResult, DeliveryStatus
from settle.webhooks.service import AttemptReport, record_attempts
from settle.webhooks.signing import webhook_headers

if TYPE_CHECKING:
    import sqlalchemy as sa

    from settle.store.webhooks_repo import Claim
    from settle.webhooks.address import Destination
    from settle.webhooks.schedule import Rng

__all__ = ["FANOUT_PAGE", "USER_AGENT", "WebhookRunner", "fan_out"]

FANOUT_PAGE = 500
USER_AGENT = "Settle-Webhooks/0.1"
_BODY_PREFIX = 1024
_ERROR_LENGTH = 500
_LEASE_MARGIN_SECONDS = 60
_RECORD_BATCH = 500
_log = structlog.get_logger(__name__)


def _fan_out_page(engine: sa.Engine, clock: Clock, tenant_id: uuid.UUID, page: int) -> bool:
    """One page of a tenant's fan-out, in one transaction; whether more pages follow."""
    with SqlUnitOfWork(engine, clock) as uow:
        repo = uow.webhooks
        taken = repo.take_cursor(tenant_id)
        if taken is None or taken[0] >= taken[1]:
            return False  # another worker has it, or nothing is new
        cursor, last = taken
        endpoints = repo.active_endpoints(tenant_id)
        if not endpoints:
            repo.move_cursor(tenant_id, last)  # nobody listens: nothing to read
            uow.commit()
            return False
        events = repo.events_after(tenant_id, cursor, page)
        if not events:
            return False
        wanted = [(e, [ep for ep in endpoints if ep.wants(e.type, e.seq)]) for e in events]
        wanted = [(e, eps) for e, eps in wanted if eps]
        transfer_ids = [e.object_id for e, _ in wanted if e.payload is None]
        transfers = repo.transfers(uow.ledger, tenant_id, transfer_ids)
        now = uow.now()
        rendered: list[dict[str, Any]] = []
        deliveries: list[dict[str, Any]] = []
        for e, eps in wanted:
            transfer = transfers.get(e.object_id) if e.payload is None else None
            body = event_body(e.seq, e.type, e.created_at, e.payload, transfer)
            rendered.append(
                {"tenant_id": tenant_id, "seq": e.seq, "type": e.type, "body": body,
                 "created_at": e.created_at}
            )  # fmt: skip
            deliveries.extend(
                {"tenant_id": tenant_id, "id": uuid.uuid4(), "endpoint_id": ep.id,
                 "event_seq": e.seq, "event_type": e.type,
                 "status": DeliveryStatus.PENDING.value, "attempts": 0,
                 "next_attempt_at": now, "lease_owner": None, "created_at": now,
                 "updated_at": now}
                for ep in eps
            )  # fmt: skip
        repo.insert_fanout(rendered, deliveries)
        reached = int(events[-1].seq)
        repo.move_cursor(tenant_id, reached)
        uow.commit()
    return reached < last


def fan_out(engine: sa.Engine, clock: Clock = system_clock, *, page: int = FANOUT_PAGE) -> int:
    """Turn every tenant's new events into deliveries; how many tenants had new events."""
    with engine.connect() as conn:
        tenants = SqlWebhookRepository(conn).tenants_behind()
        conn.rollback()
    for tenant_id in tenants:
        while _fan_out_page(engine, clock, tenant_id, page):
            pass
    return len(tenants)


def _read_prefix(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _BODY_PREFIX:
            break
    return b"".join(chunks)[:_BODY_PREFIX]


def _error(exc: Exception) -> str:
    text = str(exc)
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:_ERROR_LENGTH]


class WebhookRunner:
    """Fans out and delivers webhooks, on background threads (:meth:`start`) or one pass at a
    time (:meth:`run_once`, for tests and tools).

    Args:
        engine: the database.
        clock: the time attempts are scheduled and signed with.
        allow_private: deliver to private and loopback addresses too.
        timeout: seconds each network operation of an attempt may take.
        poll_seconds: how often the background loop looks for work without being woken.
        concurrency: attempts in flight at once.
        rng: jitter of the retry schedule (``random.random`` by default).
        resolver: how hosts are resolved for the URL guard.
        batch: deliveries claimed at most by one :meth:`run_once`.
    """

    def __init__(
        self,
        engine: sa.Engine,
        clock: Clock = system_clock,
        *,
        allow_private: bool = False,
        timeout: float = 10.0,
        poll_seconds: float = 0.1,
        concurrency: int = 8,
        rng: Rng = random.random,
        resolver: Resolver = system_resolver,
        batch: int = 100,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.guard = UrlGuard(resolver, allow_private=allow_private)
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.concurrency = max(1, concurrency)
        self.batch = batch
        self.owner = uuid.uuid4().hex  # this runner's name on its leases
        self._rng = rng
        self._rng_lock = threading.Lock()  # an injected rng need not be thread-safe
        self._lease = int((timeout + _LEASE_MARGIN_SECONDS) * 1_000_000)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._in_flight = 0
        self._backlog = False
        self._reports: queue.SimpleQueue[AttemptReport | None] = queue.SimpleQueue()
        self._recorder: threading.Thread | None = None

    # ---- control ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run the fan-out and the deliverer on a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._open()
        self._recorder = threading.Thread(
            target=self._record_loop, name="settle-webhook-recorder", daemon=True
        )
        self._recorder.start()
        self._thread = threading.Thread(target=self._loop, name="settle-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, wait for the attempts in flight and close the HTTP client."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._recorder is not None:
            self._reports.put(None)  # after every attempt's report: record them, then stop
            self._recorder.join()
            self._recorder = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def wake(self) -> None:
        """Look for work now (call after a commit that wrote events)."""
        self._wake.set()

    def run_once(self) -> int:
        """One fan-out pass and one delivery pass, waiting for its attempts; how many attempts
        were made."""
        pool, _client = self._open()
        fan_out(self.engine, self.clock)
        futures = self._dispatch(pool, self.batch, report=False)
        wait(futures)
        self._record([r for f in futures if (r := f.result()) is not None])
        return len(futures)

    # ---- the loop --------------------------------------------------------------------------

    def _open(self) -> tuple[ThreadPoolExecutor, httpx.Client]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="settle-webhook")
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            )
            # Redirects are not followed (a redirect could lead past the URL guard); no proxy
            # settings from the environment.
            self._client = httpx.Client(
                timeout=self.timeout, follow_redirects=False, trust_env=False, limits=limits
            )
        return self._pool, self._client

    def _loop(self) -> None:
        pool, _client = self._open()
        while not self._stopping.is_set():
            try:
                fan_out(self.engine, self.clock)
                with self._lock:
                    free = self.concurrency - self._in_flight
                self._dispatch(pool, free)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                _log.warning("webhook pass failed", error=type(exc).__name__)
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _dispatch(
        self, pool: ThreadPoolExecutor, limit: int, *, report: bool = True
    ) -> list[Future[AttemptReport | None]]:
        """Claim up to ``limit`` due deliveries and hand them to the pool; their reports go
        to the recorder (``report``) or are the futures' results."""
        if limit <= 0:
            with self._lock:
                self._backlog = True
            return []
        now = self.clock()
        with self.engine.connect() as conn:
            due = SqlWebhookRepository(conn).any_due(now)
            conn.rollback()
        if not due:
            return []
        with SqlUnitOfWork(self.engine, self.clock) as uow:
            claims = uow.webhooks.claim_due(now, limit, self.owner, now + self._lease)
            uow.commit()
        with self._lock:
            self._in_flight += len(claims)
            self._backlog = len(claims) == limit
        futures = []
        for claim in claims:
            future = pool.submit(self._deliver, claim)
            if report:
                future.add_done_callback(self._report)
            future.add_done_callback(self._done)
            futures.append(future)
        return futures

    def _report(self, future: Future[AttemptReport | None]) -> None:
        attempt = future.result()
        if attempt is not None:
            self._reports.put(attempt)

    def _done(self, _future: Future[AttemptReport | None]) -> None:
        with self._lock:
            self._in_flight -= 1
            backlog = self._backlog
        if backlog:
            self._wake.set()

    def _jitter(self) -> float:
        with self._rng_lock:
            return self._rng()

    # ---- one attempt -----------------------------------------------------------------------

    def _deliver(self, claim: Claim) -> AttemptReport | None:
        try:
            return self._attempt(claim)
        except Exception as exc:  # noqa: BLE001 - the lease runs out and it is tried again
            _log.warning(
                "webhook attempt failed", delivery_id=str(claim.delivery.id), error=repr(exc)
            )
            return None

    # ---- recording -------------------------------------------------------------------------

    def _record_loop(self) -> None:
        """Record what has been reported since the last commit, in one transaction, until
        :meth:`stop` has put its ``None`` after the last report."""
        stopping = False
        while not stopping:
            first = self._reports.get()
            batch: list[AttemptReport] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < _RECORD_BATCH:
                try:
                    more = self._reports.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                else:
                    batch.append(more)
            self._record(batch)

    def _record(self, reports: list[AttemptReport]) -> None:
        """Record ``reports`` in one transaction; if that fails, one by one."""
        if not reports:
            return
        try:
            record_attempts(SqlUnitOfWork(self.engine, self.clock), reports, rng=self._jitter)
            return
        except Exception as exc:  # noqa: BLE001 - isolated below
            if len(reports) == 1:
                self._not_recorded(reports[0], exc)
                return
        for report in reports:
            try:
                record_attempts(SqlUnitOfWork(self.engine, self.clock), [report], rng=self._jitter)
            except Exception as exc:  # noqa: BLE001 - the lease runs out and it is tried again
                self._not_recorded(report, exc)

    @staticmethod
    def _not_recorded(report: AttemptReport, exc: Exception) -> None:
        _log.warning(
            "webhook attempt not recorded",
            delivery_id=str(report.delivery_id),
            error=type(exc).__name__,
        )

    def _request(self, client: httpx.Client, dest: Destination, claim: Claim) -> httpx.Request:
        """The signed POST, to the checked address (DNS is not asked again on the way)."""
        now = self.clock()
        d, e = claim.delivery, claim.endpoint
        headers = webhook_headers(e.live_secrets(now), d.event_id, now // 1_000_000, claim.body)
        url = httpx.URL(dest.url)
        headers |= {
            "host": url.netloc.decode("ascii"),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        return client.build_request(
            "POST",
            url.copy_with(host=dest.addresses[0]),
            content=claim.body,
            headers=headers,
            extensions=extensions,
        )

    def _attempt(self, claim: Claim) -> AttemptReport:
        _pool, client = self._open()
        d = claim.delivery
        started = self.clock()
        base: dict[str, Any] = {
            "tenant_id": d.tenant_id,
            "delivery_id": d.id,
            "endpoint_id": d.endpoint_id,
            "lease_owner": self.owner,
            "attempted_at": started,
        }
        try:
            dest = self.guard.check(claim.endpoint.url)
        except WebhookError as exc:
            refusal = f"{exc.code}: {exc.detail}"[:_ERROR_LENGTH]
            return AttemptReport(**base, result=AttemptResult.REFUSED, error=refusal)
        request = self._request(client, dest, claim)
        t0 = time.perf_counter_ns()
        try:
            response = client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            elapsed = (time.perf_counter_ns() - t0) // 1000
            return AttemptReport(
                **base, result=AttemptResult.TIMEOUT, error=_error(exc), duration_us=elapsed
            )
        except httpx.HTTPError as exc:
            elapsed = (time.perf_counter_ns() - t0) // 1000
            return AttemptReport(
                **base, result=AttemptResult.NETWORK_ERROR, error=_error(exc), duration_us=elapsed
            )
        error: str | None = None
        try:
            prefix: bytes | None = _read_prefix(response)
        except httpx.HTTPError as exc:  # the status came; the body did not
            prefix, error = None, _error(exc)
        finally:
            response.close()
        elapsed = (time.perf_counter_ns() - t0) // 1000
        ok = 200 <= response.status_code < 300
        return AttemptReport(
            **base,
            result=AttemptResult.SUCCEEDED if ok else AttemptResult.HTTP_ERROR,
            status_code=response.status_code,
            error=error,
            duration_us=elapsed,
            response_body=None if prefix is None else prefix.decode("utf-8", "replace"),
        )
