"""Group commit: many concurrent callers, one writer, one transaction per batch.

Callers enqueue their requests and wait. A single writer thread per process takes whatever is
queued (up to ``max_batch`` requests), commits it as one batch through the store and answers
every caller. Under load the batches fill up and the cost of a commit (locks, fsync) is shared
by thousands of transfers; with a single caller a batch is one request and nothing waits.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from settle.ledger.apply import TransferResult, Unit
from settle.ledger.collector import collector_pause

if TYPE_CHECKING:
    from settle.ledger.requests import TransferRequest

__all__ = [
    "LINGER",
    "MAX_BATCH",
    "SWITCH_INTERVAL",
    "BatchCommitter",
    "BatchStats",
    "GroupCommitEngine",
    "Prepared",
]

MAX_BATCH = 8190
SWITCH_INTERVAL = 0.001  # seconds; see GroupCommitEngine._start
# Seconds the preparer waits for the callers the last batch answered to submit again (see
# _take). With 64 callers of one transfer each, 1 ms -> 3 ms measured 4,200-5,000 ->
# 5,900-7,000 transfers/s on PostgreSQL, 5,200-6,100 -> 5,800-6,400 on SQLite.
LINGER = 0.003
_NEVER = 1 << 62  # a wake-up threshold no queue reaches
_log = structlog.get_logger(__name__)


class Prepared(Protocol):
    """A batch applied ahead of its transaction; ``cache`` seeds the next one."""

    @property
    def cache(self) -> Any: ...

    @property
    def cache_size(self) -> int: ...


class BatchCommitter(Protocol):
    """The store's side of the engine.

    ``commit`` applies and commits units in one transaction. ``prepare`` applies them ahead of
    time on top of the state the previous prepared batch left (``cache``), and
    ``commit_prepared`` commits that work after checking nothing else changed the ledger in
    between (re-applying under lock if something did; it then reports ``True``).
    """

    def commit(self, units: Sequence[Unit]) -> list[list[TransferResult]]: ...

    def prepare(self, units: Sequence[Unit], cache: Any) -> Prepared: ...

    def commit_prepared(self, prepared: Any) -> tuple[list[list[TransferResult]], bool]: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class BatchStats:
    """Running totals, read by metrics exporters."""

    batches: int = 0
    transfers: int = 0
    failures: int = 0
    last_batch_size: int = 0
    last_commit_seconds: float = 0.0
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1024))
    commit_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1024))


@dataclass(slots=True)
class _Queued:
    unit: Unit
    future: Future[list[TransferResult]]


class GroupCommitEngine:
    """The per-process ledger writer. Thread-safe; ``close()`` drains and stops it.

    Two threads form a pipeline: the *preparer* takes the next batch from the queue and applies
    it (CPU: checks, hashes, rows) while the *committer* writes and commits the previous one
    (I/O). Callers queueing meanwhile form the following batch, so under load both stages stay
    busy and no caller waits for more than two commits.
    """

    # Past this many cached keys the preparer lets the pipeline drain and starts afresh.
    CACHE_LIMIT = 200_000

    def __init__(
        self,
        committer: BatchCommitter,
        *,
        max_batch: int = MAX_BATCH,
        attempts: int = 3,
        pipeline: bool = True,
        linger: float = LINGER,
        switch_interval: float | None = SWITCH_INTERVAL,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
        self._committer = committer
        self._max_batch = max_batch
        self._attempts = attempts
        self._pipeline = pipeline
        self._linger = linger
        self._switch_interval = switch_interval
        self._last_callers = 0  # how many submissions the last batch held
        self._queue: deque[_Queued] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._threads: list[threading.Thread] = []
        # Prepared batches waiting for the committer (at most one: the pipeline is two deep).
        self._handoff: deque[tuple[list[_Queued], Any, int] | None] = deque()
        self._inflight = 0  # batches handed to the committer and not yet answered
        self._epoch = 0  # bumped whenever speculative state may be wrong
        # What the waiting preparer waits for: this many queued callers.
        self._wake_callers = _NEVER
        self.stats = BatchStats()
        self._observers: list[Callable[[int, float], None]] = []

    # ---- callers ---------------------------------------------------------------------------

    def submit(
        self, requests: Sequence[TransferRequest], *, atomic: bool = False, receipt: Any = None
    ) -> list[TransferResult]:
        """Commit ``requests`` and wait; one result per request, in order.

        With ``atomic=True`` all succeed or none does. Large non-atomic submissions are split
        into batches of at most ``max_batch``; an atomic one, or one with a ``receipt`` (see
        :class:`Unit`), must fit in a single batch.
        """
        return self.submit_future(requests, atomic=atomic, receipt=receipt).result()

    def submit_future(
        self, requests: Sequence[TransferRequest], *, atomic: bool = False, receipt: Any = None
    ) -> Future[list[TransferResult]]:
        """Enqueue ``requests``; the future resolves with one result per request."""
        if (atomic or receipt is not None) and len(requests) > self._max_batch:
            raise ValueError(f"one unit holds at most {self._max_batch} transfers")
        if receipt is not None:
            return self._enqueue(Unit(requests, atomic, receipt))
        chunks = (
            [requests]
            if atomic or len(requests) <= self._max_batch
            else [
                requests[i : i + self._max_batch] for i in range(0, len(requests), self._max_batch)
            ]
        )
        futures = [self._enqueue(Unit(chunk, atomic)) for chunk in chunks]
        if len(futures) == 1:
            return futures[0]
        return _joined(futures)

    def observe(self, observer: Callable[[int, float], None]) -> None:
        """Call ``observer(transfers, commit_seconds)`` after every committed batch."""
        self._observers.append(observer)

    @property
    def pipelined(self) -> bool:
        """Whether batches are prepared while the previous one commits."""
        return self._pipeline

    def _enqueue(self, unit: Unit) -> Future[list[TransferResult]]:
        future: Future[list[TransferResult]] = Future()
        if not unit.requests:
            future.set_result([])
            return future
        with self._cond:
            if self._closed:
                raise RuntimeError("the ledger engine is closed")
            self._queue.append(_Queued(unit, future))
            if not self._threads:
                self._start()
            # Wake the preparer only when what it waits for is there: with many callers
            # submitting one transfer each, a wake-up per submission costs more than the batch.
            if len(self._queue) >= self._wake_callers:
                self._wake_callers = _NEVER
                self._cond.notify_all()
        return future

    def _start(self) -> None:
        # The committer spends a batch in short bursts of Python between round trips to the
        # database; each time it needs the GIL back while the preparer computes, it waits for
        # the interpreter to force a switch, 5 ms by default. A shorter interval measured
        # 25,000 -> 30,000 transfers/s on PostgreSQL. Process-wide, so it is only ever lowered.
        interval = self._switch_interval
        if self._pipeline and interval is not None and sys.getswitchinterval() > interval:
            sys.setswitchinterval(interval)
        targets = [self._prepare_loop, self._commit_loop] if self._pipeline else [self._run]
        for target in targets:
            thread = threading.Thread(target=target, name=f"settle-ledger-{target.__name__}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Commit what is queued, stop the writer and release the store's connections."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        self._committer.close()

    # ---- the pipeline ----------------------------------------------------------------------

    def _take(self) -> list[_Queued] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._wake_callers = 1
                self._cond.wait()
            if self._linger and self._last_callers > 1:
                # Group-commit window: the callers the last batch just answered are about to
                # submit again; a short wait lets them into this batch instead of the next one
                # (like PostgreSQL's commit_delay). Never when callers come one at a time.
                deadline = time.monotonic() + self._linger
                while len(self._queue) < self._last_callers and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake_callers = self._last_callers
                    self._cond.wait(remaining)
            self._wake_callers = _NEVER
            taken = [self._queue.popleft()]
            size = len(taken[0].unit.requests)
            while self._queue and size + len(self._queue[0].unit.requests) <= self._max_batch:
                item = self._queue.popleft()
                size += len(item.unit.requests)
                taken.append(item)
            self._last_callers = len(taken)
            return taken

    def _run(self) -> None:
        """Without the pipeline: one thread takes, commits and answers each batch in turn."""
        while (batch := self._take()) is not None:
            collector_pause.hold()
            try:
                self._guarded(batch, self._commit, batch)
                del batch  # its rows are freed before the collector catches up
                collector_pause.catch_up()
            finally:
                collector_pause.release()

    def _prepare_loop(self) -> None:
        cache: Any = None
        epoch = self._epoch
        while True:
            # Whatever is queued is prepared ahead of the batch in flight, however little: with
            # many callers submitting one transfer each, they split into two cohorts, one
            # applied while the other commits (measured with 64 such callers: 3,900 -> 5,400
            # transfers/s on SQLite, 5,000 -> 5,800 on PostgreSQL, against waiting for 256).
            batch = self._take()
            if batch is None:
                break
            # Off from here until the committer has answered this batch (see collector.py).
            collector_pause.hold()
            with self._cond:
                # At most one prepared batch waits for the committer.
                while self._handoff:
                    self._cond.wait()
                stale = epoch != self._epoch
                if cache is None or stale:
                    # Speculative reads are only sound against a settled database: let every
                    # batch in flight land before reading it afresh.
                    while self._inflight:
                        self._cond.wait()
                    cache, epoch = None, self._epoch
            prepared: Any = None
            try:
                prepared = self._committer.prepare([item.unit for item in batch], cache)
            except Exception as exc:  # noqa: BLE001 - the committer redoes the batch under lock
                _log.warning("ledger batch preparation failed", **_describe(exc))
            cache = None
            if prepared is not None and prepared.cache_size <= self.CACHE_LIMIT:
                cache = prepared.cache
            with self._cond:
                self._inflight += 1
                self._handoff.append((batch, prepared, epoch))
                self._cond.notify_all()
            del batch, prepared  # the committer owns them now
        with self._cond:
            self._handoff.append(None)
            self._cond.notify_all()

    def _commit_loop(self) -> None:
        while True:
            with self._cond:
                while not self._handoff:
                    self._cond.wait()
                item = self._handoff.popleft()
                self._cond.notify_all()
            if item is None:
                return
            try:
                self._commit_handed_off(*item)
            finally:
                del item  # the batch's rows are freed before the collector catches up
                collector_pause.catch_up()
                collector_pause.release()
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def _commit_handed_off(self, batch: list[_Queued], prepared: Any, epoch: int) -> None:
        started = time.perf_counter()
        results = None
        if prepared is not None and epoch == self._epoch:
            try:
                results, redone = self._committer.commit_prepared(prepared)
                if redone:
                    self._invalidate()
            except Exception as exc:  # noqa: BLE001 - fall back to the plain path below
                _log.warning("prepared ledger batch failed", **_describe(exc))
                self.stats.failures += 1
        if results is None:
            self._invalidate()
            self._guarded(batch, self._commit, batch)
        else:
            self._guarded(batch, self._answer, batch, results, time.perf_counter() - started)

    def _guarded(self, batch: list[_Queued], step: Callable[..., None], *args: Any) -> None:
        """Run a writer step; whatever goes wrong, no caller is left waiting forever."""
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - handed to every caller still waiting
            _log.error("ledger writer step failed", **_describe(exc))
            self._invalidate()
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)

    def _invalidate(self) -> None:
        with self._cond:
            self._epoch += 1

    def _answer(
        self, batch: list[_Queued], results: list[list[TransferResult]], elapsed: float
    ) -> None:
        size = sum(len(item.unit.requests) for item in batch)
        stats = self.stats
        stats.batches += 1
        stats.transfers += size
        stats.last_batch_size = size
        stats.last_commit_seconds = elapsed
        stats.sizes.append(size)
        stats.commit_seconds.append(elapsed)
        for observer in self._observers:
            observer(size, elapsed)
        for item, unit_results in zip(batch, results, strict=True):
            item.future.set_result(unit_results)

    def _commit(self, batch: list[_Queued]) -> None:
        """Load under lock, apply and commit; retry, then isolate the unit that fails."""
        units = [item.unit for item in batch]
        error: BaseException | None = None
        for attempt in range(self._attempts):
            started = time.perf_counter()
            try:
                results = self._committer.commit(units)
            except Exception as exc:  # noqa: BLE001 - any store failure: retry, then isolate
                error = exc
                self.stats.failures += 1
                _log.warning("ledger batch failed", attempt=attempt + 1, **_describe(exc))
                time.sleep(0.005 * 2**attempt)
                continue
            self._answer(batch, results, time.perf_counter() - started)
            return
        if len(batch) > 1:
            # One unit may be what breaks the batch: commit each alone so the others go through.
            for item in batch:
                self._commit([item])
            return
        assert error is not None  # noqa: S101 - the loop ran at least once and failed
        batch[0].future.set_exception(error)


def _describe(exc: BaseException) -> dict[str, object]:
    # The class and SQLSTATE say what failed; driver messages may quote the rows' data, which
    # stays out of the logs.
    return {"error": type(exc).__name__, "sqlstate": getattr(exc, "sqlstate", None)}


def _joined(futures: list[Future[list[TransferResult]]]) -> Future[list[TransferResult]]:
    joined: Future[list[TransferResult]] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def done(_f: Future[list[TransferResult]]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        try:
            joined.set_result([r for f in futures for r in f.result()])
        except Exception as exc:  # noqa: BLE001 - hand the chunk's failure to the caller
            joined.set_exception(exc)

    for future in futures:
        future.add_done_callback(done)
    return joined
