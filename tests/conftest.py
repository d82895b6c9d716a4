"""Test databases: a real SQLite file and a real PostgreSQL database for every storage test.

PostgreSQL comes from ``SETTLE_TEST_DATABASE_URL`` (a server we may create databases on) or,
failing that, from a throwaway cluster started with the local PostgreSQL binaries (``initdb``
refuses root, so as root it runs as the ``postgres`` OS user). The suite creates one fresh
database per run, migrates it once, and clones it per test (``CREATE DATABASE ... TEMPLATE``).
With ``SETTLE_REQUIRE_POSTGRES=1`` (CI), PostgreSQL tests fail instead of skipping when no
server can be had.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import settings

from settle.store.db import create_db_engine, upgrade_database
from settle.store.ledger_store import LedgerStore

REQUIRE_POSTGRES = os.environ.get("SETTLE_REQUIRE_POSTGRES") == "1"

# CI replays the same examples on every run (a failure there is reproducible and not a matter
# of luck); developers' runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class _ThrowawayCluster:
    """A private PostgreSQL cluster in a temporary directory, on a free loopback port."""

    def __init__(self) -> None:
        initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) on this machine")
        self.pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="settle-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*self.as_user, initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
             "--no-instructions", "-E", "UTF8"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*self.as_user, pg_ctl, "-D", str(self.data), "-w", "-l", str(self.dir / "log"),
             "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def _with_database(url: str, name: str) -> str:
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """An admin URL of a PostgreSQL server the tests may create databases on."""
    url = os.environ.get("SETTLE_TEST_DATABASE_URL")
    cluster = None
    if not url:
        try:
            cluster = _ThrowawayCluster()
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            if REQUIRE_POSTGRES:
                pytest.fail(f"PostgreSQL is required but could not be started: {exc}")
            pytest.skip(f"no PostgreSQL: {exc}")
        url = cluster.url
    try:
        with _admin(url):
            pass
    except psycopg.OperationalError as exc:
        if cluster is not None:
            cluster.stop()
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required but unreachable at {url}: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield url
    if cluster is not None:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> Iterator[str]:
    """A migrated database for this run, cloned by every PostgreSQL test."""
    name = f"settle_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin(postgres_server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(postgres_server, name)
    engine = create_db_engine(url)
    upgrade_database(engine)
    engine.dispose()
    yield name
    with _admin(postgres_server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_postgres_database(server: str, template: str) -> Iterator[str]:
    name = f"{template}_{uuid.uuid4().hex[:10]}"
    with _admin(server) as conn:
        for attempt in range(20):
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
                break
            except psycopg.errors.ObjectInUse:  # the template is briefly busy
                time.sleep(0.05 * (attempt + 1))
    try:
        yield _with_database(server, name)
    finally:
        with _admin(server) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'settle.db'}"
        engine = create_db_engine(url)
        upgrade_database(engine)
        engine.dispose()
        yield url
        return
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    with fresh_postgres_database(server, template) as url:
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[LedgerStore]:
    """The ledger on a fresh database of each kind."""
    ledger = LedgerStore(db_url)
    yield ledger
    ledger.close()


@pytest.fixture
def tenant() -> uuid.UUID:
    return uuid.uuid4()
