from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from settle.simulator import SimulatorConfig, create_simulator_app

from .support import Receiver, Sim

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Sim]]:
    """Simulators in process: no latency, a 0.3 s hold and a 0.3 s late answer by default."""
    made: list[Sim] = []

    def make(*, headers: dict[str, str] | None = None, app_args: Any = None, **config: Any) -> Sim:
        settings: dict[str, Any] = {
            "latency_ms": 0,
            "hang_seconds": 0.3,
            "late_seconds": 0.3,
            "seed": 7,
            **config,
        }
        app = create_simulator_app(SimulatorConfig(**settings), **(app_args or {}))
        made.append(Sim(app, headers))
        return made[-1]

    yield make
    for sim in made:
        await sim.close()


@pytest.fixture
def sim(make_sim: Callable[..., Sim]) -> Sim:
    return make_sim(app_args={"clock": lambda: T0})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()
