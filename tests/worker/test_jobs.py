"""The job queue and runner on real databases: at-least-once runs under leases, backoff,
dead letters, and no job run twice at once by workers sharing one database."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest
import sqlalchemy as sa

from settle.jobs.model import Job, JobStatus, NewJob, Reschedule, retry_delay
from settle.store import job_tables
from settle.store.db import create_db_engine
from settle.store.jobs_repo import SqlJobQueue, claim_jobs, due_job_kinds, purge_finished_jobs
from settle.worker.jobs import JobRunner

TENANT = uuid.UUID("11111111-2222-3333-4444-555555555555")
T0 = 1_800_000_000_000_000
SECOND = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    e = create_db_engine(db_url)
    yield e
    e.dispose()


def enqueue(engine: sa.Engine, kind: str = "test.echo", dedupe: str | None = None,
            max_attempts: int = 3, run_at: int = T0) -> uuid.UUID | None:  # fmt: skip
    with engine.begin() as conn:
        return SqlJobQueue(conn).enqueue(
            NewJob(TENANT, kind, {"n": 1}, run_at, dedupe, max_attempts), now=T0
        )


def status(engine: sa.Engine, job_id: uuid.UUID) -> tuple[JobStatus, int]:
    with engine.connect() as conn:
        job = SqlJobQueue(conn).get(TENANT, job_id)
    assert job is not None
    return job.status, job.attempts


def test_enqueue_with_one_dedupe_key_makes_one_job(engine: sa.Engine) -> None:
    first = enqueue(engine, dedupe="refund:1")
    again = enqueue(engine, dedupe="refund:1")
    assert first is not None
    assert again is None
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar() == 1


def test_a_job_runs_once_and_is_done(engine: sa.Engine) -> None:
    clock = Clock()
    ran: list[Job] = []
    job_id = enqueue(engine)
    assert job_id is not None
    runner = JobRunner(engine, {"test.echo": ran.append}, clock, concurrency=2)
    try:
        assert runner.run_once() == 1
        assert runner.run_once() == 0
    finally:
        runner.stop()
    assert [j.id for j in ran] == [job_id]
    assert ran[0].attempts == 1
    assert status(engine, job_id) == (JobStatus.SUCCEEDED, 1)


def test_a_job_not_yet_due_waits(engine: sa.Engine) -> None:
    clock = Clock()
    job_id = enqueue(engine, run_at=T0 + 10 * SECOND)
    runner = JobRunner(engine, {"test.echo": lambda _j: None}, clock)
    try:
        assert runner.run_once() == 0
        clock.now += 10 * SECOND
        assert runner.run_once() == 1
    finally:
        runner.stop()
    assert job_id is not None
    assert status(engine, job_id)[0] is JobStatus.SUCCEEDED


def test_failures_back_off_then_the_job_is_dead(engine: sa.Engine) -> None:
    clock = Clock()
    job_id = enqueue(engine, max_attempts=3)
    assert job_id is not None

    def fail(_job: Job) -> None:
        raise ConnectionError("card 4242424242424242 refused")  # the message is never stored

    runner = JobRunner(engine, {"test.echo": fail}, clock, rng=random.Random(1))
    try:
        assert runner.run_once() == 1
        assert status(engine, job_id) == (JobStatus.QUEUED, 1)
        assert runner.run_once() == 0  # backing off
        clock.now += 3600 * SECOND
        assert runner.run_once() == 1
        clock.now += 3600 * SECOND
        assert runner.run_once() == 1
        assert status(engine, job_id) == (JobStatus.DEAD, 3)
        clock.now += 3600 * SECOND
        assert runner.run_once() == 0
    finally:
        runner.stop()
    with engine.connect() as conn:
        job = SqlJobQueue(conn).get(TENANT, job_id)
    assert job is not None
    assert job.last_error == "builtins.ConnectionError"


class FixedDraw(random.Random):
    """A generator whose every draw is ``value``: the jitter's two ends, exactly."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_retry_delay_is_capped_exponential_with_jitter_over_its_upper_half() -> None:
    lowest = [retry_delay(n, FixedDraw(0.0)) for n in (1, 2, 3, 5, 12, 13, 30)]
    assert lowest == [0.5, 1.0, 2.0, 8.0, 1024.0, 1800.0, 1800.0]
    assert retry_delay(3, FixedDraw(0.5)) == 3.0
    assert retry_delay(30, FixedDraw(0.5)) == 2700.0


def test_reschedule_runs_again_later_without_counting_a_failure(engine: sa.Engine) -> None:
    clock = Clock()
    job_id = enqueue(engine, max_attempts=1)
    assert job_id is not None
    runs: list[int] = []

    def wait_then_finish(job: Job) -> None:
        runs.append(job.attempts)
        if len(runs) < 3:
            raise Reschedule(2.0, "still processing")

    runner = JobRunner(engine, {"test.echo": wait_then_finish}, clock)
    try:
        for _ in range(3):
            assert runner.run_once() == 1
            assert runner.run_once() == 0
            clock.now += 2 * SECOND
    finally:
        runner.stop()
    assert runs == [1, 1, 1]  # a reschedule is not an attempt: max_attempts=1 still allows it
    assert status(engine, job_id) == (JobStatus.SUCCEEDED, 1)


def test_a_dead_workers_job_is_taken_again_after_its_lease(engine: sa.Engine) -> None:
    clock = Clock()
    job_id = enqueue(engine)
    assert job_id is not None
    # A worker claims the job and dies before finishing it.
    [claimed] = claim_jobs(engine, worker_id="dead", now=clock(), lease_us=30 * SECOND, limit=5)
    assert claimed.id == job_id
    ran: list[Job] = []
    runner = JobRunner(engine, {"test.echo": ran.append}, clock, lease_seconds=30)
    try:
        assert runner.run_once() == 0  # the lease still holds
        clock.now += 31 * SECOND
        assert runner.run_once() == 1
    finally:
        runner.stop()
    assert [(j.id, j.attempts) for j in ran] == [(job_id, 2)]
    assert status(engine, job_id) == (JobStatus.SUCCEEDED, 2)


def test_a_job_that_kills_every_worker_goes_dead(engine: sa.Engine) -> None:
    clock = Clock()
    job_id = enqueue(engine, max_attempts=2)
    assert job_id is not None
    for worker in ("w1", "w2"):
        assert len(claim_jobs(engine, worker_id=worker, now=clock(), lease_us=SECOND, limit=1)) == 1
        clock.now += 2 * SECOND
    assert claim_jobs(engine, worker_id="w3", now=clock(), lease_us=SECOND, limit=1) == []
    assert status(engine, job_id) == (JobStatus.DEAD, 3)


def test_a_late_worker_cannot_settle_a_job_another_worker_took_over(engine: sa.Engine) -> None:
    clock = Clock()
    job_id = enqueue(engine)
    assert job_id is not None
    [slow] = claim_jobs(engine, worker_id="slow", now=clock(), lease_us=SECOND, limit=1)
    clock.now += 2 * SECOND
    [fast] = claim_jobs(engine, worker_id="fast", now=clock(), lease_us=60 * SECOND, limit=1)
    runner = JobRunner(engine, {"test.echo": lambda _j: None}, clock)
    try:
        # The slow worker's outcome arrives after its lease lapsed: it changes nothing.
        def fail(_job: Job) -> None:
            raise RuntimeError("late")

        runner.handlers["test.echo"] = fail
        runner.run_job(slow)
        assert status(engine, job_id) == (JobStatus.RUNNING, 2)
        runner.handlers["test.echo"] = lambda _j: None
        runner.run_job(fast)
    finally:
        runner.stop()
    assert status(engine, job_id) == (JobStatus.SUCCEEDED, 2)


def test_workers_sharing_a_database_never_claim_one_job_twice(engine: sa.Engine) -> None:
    clock = Clock()
    ids = {enqueue(engine) for _ in range(120)}
    claims: Counter[uuid.UUID] = Counter()
    lock = threading.Lock()

    def claim_all(worker: str) -> None:
        while True:
            got = claim_jobs(engine, worker_id=worker, now=clock(), lease_us=60 * SECOND, limit=7)
            if not got:
                return
            with lock:
                claims.update(j.id for j in got)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(claims) == ids
    assert set(claims.values()) == {1}


def test_the_background_loop_runs_what_is_enqueued(engine: sa.Engine) -> None:
    done = threading.Event()
    runner = JobRunner(engine, {"test.echo": lambda _j: done.set()}, lambda: T0, poll_seconds=0.01)
    runner.start()
    try:
        enqueue(engine)
        runner.wake()
        assert done.wait(5)
    finally:
        runner.stop()


def test_succeeded_jobs_are_purged_after_the_retention_and_dead_ones_kept(
    engine: sa.Engine,
) -> None:
    clock = Clock()
    done_id, dead_id, queued_id = (
        enqueue(engine),
        enqueue(engine, max_attempts=1),
        enqueue(engine, run_at=T0 + 100 * SECOND),
    )

    def run(job: Job) -> None:
        if job.id == dead_id:
            raise RuntimeError("poisoned")

    runner = JobRunner(engine, {"test.echo": run}, clock)
    try:
        assert runner.run_once() == 2
    finally:
        runner.stop()
    assert status(engine, done_id)[0] is JobStatus.SUCCEEDED
    assert status(engine, dead_id)[0] is JobStatus.DEAD

    assert purge_finished_jobs(engine, before=T0) == 0  # finished at T0: not before it
    assert purge_finished_jobs(engine, before=T0 + 1, chunk=1) == 1
    with engine.connect() as conn:
        left = {r[0] for r in conn.execute(sa.text("SELECT id FROM jobs"))}
    assert {uuid.UUID(str(i)) for i in left} == {dead_id, queued_id}


# ---- batched kinds ---------------------------------------------------------------------------


def test_a_batched_kind_runs_its_due_jobs_in_one_call_and_each_outcome_is_recorded(
    engine: sa.Engine,
) -> None:
    clock = Clock()
    ids = [enqueue(engine, kind="test.batch") for _ in range(5)]
    single = enqueue(engine)
    calls: list[list[uuid.UUID]] = []
    singles: list[Job] = []

    def batch(jobs: Sequence[Job]) -> dict[uuid.UUID, BaseException | None]:
        calls.append([j.id for j in jobs])
        first, second, third, fourth, _fifth = sorted(j.id for j in jobs)
        return {
            first: None,
            second: None,
            third: Reschedule(30, "ask again"),
            fourth: ConnectionError("down"),
            # the fifth is left out: it is retried like a failure
        }

    runner = JobRunner(
        engine, {"test.echo": singles.append}, clock, batch_handlers={"test.batch": batch},
        rng=random.Random(1),
    )  # fmt: skip
    try:
        assert runner.run_once() == 6
    finally:
        runner.stop()
    assert len(calls) == 1
    assert sorted(calls[0]) == sorted(i for i in ids if i is not None)
    assert [j.id for j in singles] == [single]
    first, second, third, fourth, fifth = sorted(i for i in ids if i is not None)
    assert status(engine, first) == (JobStatus.SUCCEEDED, 1)
    assert status(engine, second) == (JobStatus.SUCCEEDED, 1)
    assert status(engine, third) == (JobStatus.QUEUED, 0)  # a reschedule is no attempt
    assert status(engine, fourth) == (JobStatus.QUEUED, 1)
    assert status(engine, fifth) == (JobStatus.QUEUED, 1)
    with engine.connect() as conn:
        jobs = job_tables.jobs
        errors = {r.id: r.last_error for r in conn.execute(sa.select(jobs.c.id, jobs.c.last_error))}
    assert errors[third] == "ask again"
    assert errors[fourth] == "builtins.ConnectionError"
    assert errors[fifth] == "builtins.RuntimeError"


def test_a_batch_handler_that_raises_fails_every_job_of_the_batch(engine: sa.Engine) -> None:
    clock = Clock()
    ids = [enqueue(engine, kind="test.batch", max_attempts=1) for _ in range(3)]

    def batch(_jobs: Sequence[Job]) -> dict[uuid.UUID, BaseException | None]:
        raise ValueError("the database went away")

    runner = JobRunner(engine, {}, clock, batch_handlers={"test.batch": batch})
    try:
        assert runner.run_once() == 3
    finally:
        runner.stop()
    for job_id in ids:
        assert job_id is not None
        assert status(engine, job_id) == (JobStatus.DEAD, 1)


def test_batches_hold_at_most_batch_size_jobs_and_the_background_loop_drains_them(
    engine: sa.Engine,
) -> None:
    clock = Clock()
    ids = {enqueue(engine, kind="test.batch") for _ in range(25)}
    sizes: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def batch(jobs: Sequence[Job]) -> dict[uuid.UUID, BaseException | None]:
        with lock:
            sizes.append(len(jobs))
            if sum(sizes) == len(ids):
                done.set()
        return {j.id: None for j in jobs}

    runner = JobRunner(
        engine, {}, clock, batch_handlers={"test.batch": batch}, batch_size=10, poll_seconds=0.01
    )
    runner.start()
    try:
        assert done.wait(20)
    finally:
        runner.stop()
    assert max(sizes) <= 10
    assert sum(sizes) == 25
    for job_id in ids:
        assert job_id is not None
        assert status(engine, job_id) == (JobStatus.SUCCEEDED, 1)


def test_a_batch_finished_by_a_worker_whose_lease_lapsed_changes_nothing(
    engine: sa.Engine,
) -> None:
    clock = Clock()
    job_id = enqueue(engine, kind="test.batch")
    assert job_id is not None
    late = claim_jobs(engine, worker_id="late", now=T0, lease_us=SECOND, limit=5)
    clock.now += 2 * SECOND  # the late worker's lease lapsed; another takes the job
    taken = claim_jobs(engine, worker_id="next", now=clock.now, lease_us=60 * SECOND, limit=5)
    assert [j.id for j in taken] == [job_id]
    runner = JobRunner(
        engine, {}, clock, batch_handlers={"test.batch": lambda js: {j.id: None for j in js}}
    )
    try:
        runner.run_batch(late)
    finally:
        runner.stop()
    assert status(engine, job_id) == (JobStatus.RUNNING, 2)  # still the next worker's


def test_the_due_read_reports_every_kind_when_one_kind_fills_its_scan(engine: sa.Engine) -> None:
    for _ in range(4):
        enqueue(engine, kind="test.flood")
    enqueue(engine, kind="test.rare", run_at=T0 + 1)  # behind the flood in due order
    kinds = ["test.flood", "test.rare", "test.idle"]
    now = T0 + 2
    assert due_job_kinds(engine, now=now, kinds=kinds, scan=10) == {"test.flood", "test.rare"}
    # Four due jobs fill a scan of four: the rare kind is not seen, so every kind is claimed
    # for (a kind behind a flood must not starve).
    assert due_job_kinds(engine, now=now, kinds=kinds, scan=4) == set(kinds)
    assert due_job_kinds(engine, now=T0 - 1, kinds=kinds, scan=4) == set()
