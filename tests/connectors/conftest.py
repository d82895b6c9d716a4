from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from settle.connectors import HttpProcessor
from settle.simulator import SimulatorConfig, SimulatorThread

HOLD_SECONDS = 1.0  # the simulator's --hang-seconds and --late-seconds here
TIMEOUT = 0.4  # the connector's read timeout: well under the hold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Audit:
    """What a simulator recorded, read over its own HTTP API."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        headers = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=5)

    def authorizations(self, reference: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.http.get(
            "/v1/authorizations", params={"reference": reference}
        ).json()["data"]
        return data

    def calls(
        self, path: str = "/v1/authorizations", method: str = "POST"
    ) -> list[tuple[str, int]]:
        data = self.http.get("/_control/calls").json()["data"]
        return [
            (c["idempotency_key"], c["status"])
            for c in data
            if c["path"] == path and c["method"] == method
        ]

    def faults(self, **changes: Any) -> None:
        assert self.http.post("/_control/faults", json=changes).status_code == 200


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., SimulatorThread]]:
    started: list[SimulatorThread] = []

    def make(name: str = "sim_a", **config: Any) -> SimulatorThread:
        settings: dict[str, Any] = {
            "latency_ms": 0,
            "hang_seconds": HOLD_SECONDS,
            "late_seconds": HOLD_SECONDS,
            "seed": 3,
            **config,
        }
        started.append(SimulatorThread(SimulatorConfig(name=name, **settings)).start())
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def simulator(make_simulator: Callable[..., SimulatorThread]) -> SimulatorThread:
    return make_simulator()


@pytest.fixture
def make_audit() -> Iterator[Callable[..., Audit]]:
    made: list[Audit] = []

    def make(server: SimulatorThread, api_key: str | None = None) -> Audit:
        made.append(Audit(server.base_url, api_key))
        return made[-1]

    yield make
    for audit in made:
        audit.http.close()


@pytest.fixture
def audit(make_audit: Callable[..., Audit], simulator: SimulatorThread) -> Audit:
    return make_audit(simulator)


@pytest.fixture
def sleeps() -> list[float]:
    """The connector's waits between attempts, recorded instead of slept."""
    return []


@pytest.fixture
def make_processor(sleeps: list[float]) -> Iterator[Callable[..., HttpProcessor]]:
    made: list[HttpProcessor] = []

    def make(base_url: str, name: str = "sim_a", **options: Any) -> HttpProcessor:
        settings: dict[str, Any] = {
            "timeout": TIMEOUT,
            "connect_timeout": 0.2,
            "sleep": sleeps.append,
            "rng": random.Random(1),
            **options,
        }
        made.append(HttpProcessor(name, base_url, **settings))
        return made[-1]

    yield make
    for processor in made:
        processor.close()


@pytest.fixture
def processor(
    make_processor: Callable[..., HttpProcessor], simulator: SimulatorThread
) -> HttpProcessor:
    return make_processor(simulator.base_url)
