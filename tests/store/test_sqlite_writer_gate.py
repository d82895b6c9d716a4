"""SQLite writers of one file queue on the process's writer gate: one at a time, the turn
given back after a commit, a rollback or a lost connection, and readers never wait for it."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from settle.store.db import SqliteWriterGate, create_db_engine

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def url(tmp_path: Path) -> str:
    database = f"sqlite:///{tmp_path / 'gate.db'}"
    engine = create_db_engine(database)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
    engine.dispose()
    return database


def _gate(engine: sa.Engine) -> SqliteWriterGate:
    gate: SqliteWriterGate = engine.dialect.settle_writer_gate  # type: ignore[attr-defined]
    return gate


def _write(engine: sa.Engine) -> sa.Connection:
    return engine.connect().execution_options(sqlite_begin="IMMEDIATE")


def test_engines_on_one_file_share_one_gate_and_writers_take_turns(url: str) -> None:
    engines = [create_db_engine(url), create_db_engine(url)]
    assert _gate(engines[0]) is _gate(engines[1])
    inside = 0
    most = 0
    lock = threading.Lock()

    def bump(engine: sa.Engine) -> None:
        nonlocal inside, most
        for _ in range(25):
            with _write(engine) as conn, conn.begin():
                with lock:
                    inside += 1
                    most = max(most, inside)
                n = conn.exec_driver_sql("SELECT n FROM counter").scalar_one()
                time.sleep(0.0005)  # a read-modify-write that would lose updates if it raced
                conn.exec_driver_sql(f"UPDATE counter SET n = {n + 1}")
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=bump, args=(engines[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engines[0].connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar_one() == 200
    assert most == 1
    for engine in engines:
        engine.dispose()


def test_a_rolled_back_or_failed_writer_gives_its_turn_back(url: str) -> None:
    engine = create_db_engine(url)
    gate = _gate(engine)
    with _write(engine) as conn, conn.begin():
        assert gate.held  # the turn is taken at BEGIN
        conn.exec_driver_sql("UPDATE counter SET n = 1")
        conn.rollback()
    assert not gate.held
    with pytest.raises(sa.exc.OperationalError), _write(engine) as conn, conn.begin():
        conn.exec_driver_sql("UPDATE no_such_table SET n = 1")
    assert not gate.held
    # A connection closed with its transaction open (the pool drops it) gives it back too.
    conn = _write(engine)
    conn.begin()
    conn.exec_driver_sql("UPDATE counter SET n = 2")
    conn.invalidate()
    conn.close()
    assert not gate.held
    with _write(engine) as again, again.begin():
        again.exec_driver_sql("UPDATE counter SET n = 3")
    with engine.connect() as read:
        assert read.exec_driver_sql("SELECT n FROM counter").scalar_one() == 3
    engine.dispose()


def test_readers_do_not_wait_for_a_writers_turn(url: str) -> None:
    engine = create_db_engine(url)
    with _write(engine) as writer, writer.begin():
        writer.exec_driver_sql("UPDATE counter SET n = 9")
        started = time.monotonic()
        with engine.connect() as reader:  # deferred: reads the last commit, no turn needed
            assert reader.exec_driver_sql("SELECT n FROM counter").scalar_one() == 0
        assert time.monotonic() - started < 1
    engine.dispose()


def test_a_writer_that_never_gets_its_turn_fails_instead_of_hanging(url: str) -> None:
    engine = create_db_engine(url)
    gate = _gate(engine)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with _write(engine) as conn, conn.begin():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    timeout, gate.timeout = gate.timeout, 0.2
    try:
        with (
            pytest.raises(sa.exc.OperationalError, match="no turn to write"),
            _write(engine) as conn,
            conn.begin(),
        ):
            pass
    finally:
        gate.timeout = timeout
        release.set()
        holder.join()
    engine.dispose()
