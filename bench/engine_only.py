"""Micro-benchmark of the group-commit engine alone: threads, queue, futures, no database.

``--submitters`` threads each submit one request at a time through ``GroupCommitEngine``, whose
committer answers every batch after sleeping ``--commit-ms`` (the GIL is free meanwhile, as it
is while a database commits). With ``--commit-ms 0`` the figure is what the engine and the
threads cost per request; with a commit time it shows how the two cohorts of callers overlap.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from settle.ledger.apply import TransferResult, Unit
from settle.ledger.errors import ResultCode
from settle.ledger.group_commit import GroupCommitEngine
from settle.ledger.requests import TransferSpec


class _Prepared:
    cache = None
    cache_size = 0

    def __init__(self, units: Sequence[Unit]) -> None:
        self.units = units


class SleepingCommitter:
    """Answers every request ``ok`` after ``seconds`` of sleep per batch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def _answer(self, units: Sequence[Unit]) -> list[list[TransferResult]]:
        time.sleep(self.seconds)
        return [[TransferResult(r.id, ResultCode.OK, 1) for r in u.requests] for u in units]

    def commit(self, units: Sequence[Unit]) -> list[list[TransferResult]]:
        return self._answer(units)

    def prepare(self, units: Sequence[Unit], cache: Any) -> _Prepared:  # noqa: ARG002 - no state
        return _Prepared(units)

    def commit_prepared(self, prepared: _Prepared) -> tuple[list[list[TransferResult]], bool]:
        return self._answer(prepared.units), False

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submitters", type=int, default=64)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--commit-ms", type=float, default=0.0)
    args = parser.parse_args()
    tenant, a, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    requests = [
        TransferSpec.shorthand(
            tenant, uuid.uuid4(), debit_account_id=a, credit_account_id=b, amount=1, currency="USD"
        )
        for _ in range(args.requests)
    ]
    engine = GroupCommitEngine(SleepingCommitter(args.commit_ms / 1000))
    cursor = iter(requests)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                request = next(cursor, None)
            if request is None:
                return
            engine.submit([request])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.submitters) as pool:
        for future in [pool.submit(work) for _ in range(args.submitters)]:
            future.result()
    seconds = time.perf_counter() - started
    engine.close()
    print(
        json.dumps(
            {
                "submitters": args.submitters,
                "requests": args.requests,
                "commit_ms": args.commit_ms,
                "seconds": round(seconds, 3),
                "requests_per_second": round(args.requests / seconds, 1),
                "batches": engine.stats.batches,
                "batch_size_mean": round(args.requests / engine.stats.batches, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
