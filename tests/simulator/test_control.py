"""Faults injected at run time, the API key, and the health route."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from settle.simulator.state import RequestStatus

if TYPE_CHECKING:
    from .support import Sim

DEFAULTS = {
    "latency_ms": 0.0,
    "jitter_ms": 0.0,
    "failure_rate": 0.0,
    "timeout_rate": 0.0,
    "down": False,
}


async def _faults(sim: Sim, **changes: Any) -> Any:
    response = await sim.client.post("/_control/faults", json=changes)
    assert response.status_code == 200, response.text
    return response.json()


async def test_faults_are_read_and_changed_at_run_time(sim: Sim) -> None:
    assert (await sim.client.get("/_control/faults")).json() == DEFAULTS

    changed = await _faults(sim, failure_rate=0.25, down=True)

    assert changed == {**DEFAULTS, "failure_rate": 0.25, "down": True}
    assert (await sim.client.get("/_control/faults")).json() == changed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"slowness": 1}, "unknown fault settings: slowness"),
        ({"failure_rate": 2}, "failure_rate is a probability between 0 and 1, not 2.0"),
        ({"latency_ms": -1}, "latency_ms must be a finite number >= 0, not -1.0"),
        ({"down": "yes"}, "down must be true or false"),
        ({"timeout_rate": True}, "timeout_rate must be a number"),
    ],
)
async def test_bad_fault_settings_are_refused_and_change_nothing(
    sim: Sim, changes: dict[str, Any], message: str
) -> None:
    response = await sim.client.post("/_control/faults", json=changes)

    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid_request", "message": message}}
    assert (await sim.client.get("/_control/faults")).json() == DEFAULTS


async def test_a_down_processor_answers_503_to_everything_and_does_nothing(sim: Sim) -> None:
    await _faults(sim, down=True)

    charge = await sim.authorize("key-1")
    lookup = await sim.lookup("key-1")

    assert charge.status_code == lookup.status_code == 503
    assert charge.json()["error"]["code"] == "service_unavailable"
    await _faults(sim, down=False)
    assert (await sim.lookup("key-1")).json() == {"status": "not_found"}
    assert await sim.authorizations() == []


async def test_an_injected_failure_does_nothing_and_keeps_no_key(sim: Sim) -> None:
    await _faults(sim, failure_rate=1.0)

    failed = await sim.authorize("key-1")

    assert (failed.status_code, failed.json()["error"]["code"]) == (500, "simulated_failure")
    await _faults(sim, failure_rate=0.0)
    assert await sim.authorizations() == []
    assert (await sim.authorize("key-1")).status_code == 201


async def test_an_injected_timeout_holds_the_claimed_key_then_frees_it(sim: Sim) -> None:
    await _faults(sim, timeout_rate=1.0)

    held = asyncio.create_task(sim.authorize("key-1"))
    for _ in range(100):
        record = sim.simulator.state.request("key-1")
        if record is not None:
            break
        await asyncio.sleep(0.01)
    assert record is not None
    assert record.status is RequestStatus.PROCESSING
    answer = await held

    assert (answer.status_code, answer.json()["error"]["code"]) == (504, "gateway_timeout")
    assert sim.simulator.state.request("key-1") is None
    await _faults(sim, timeout_rate=0.0)
    assert await sim.authorizations() == []


async def test_latency_and_jitter_delay_every_api_call(make_sim: Callable[..., Sim]) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    sim = make_sim(
        latency_ms=250, jitter_ms=100, app_args={"sleep": sleep, "rng": random.Random(5)}
    )

    await sim.authorize("key-1")
    await sim.lookup("key-1")
    await sim.client.get("/healthz")  # not an API call: no latency

    assert len(waits) == 2
    assert all(0.25 <= w <= 0.35 for w in waits)
    assert waits[0] != waits[1]


async def test_with_an_api_key_every_call_must_carry_it(make_sim: Callable[..., Sim]) -> None:
    anonymous = make_sim(api_key="sk_sim_secret")
    wrong = make_sim(api_key="sk_sim_secret", headers={"Authorization": "Bearer sk_sim_other"})
    right = make_sim(api_key="sk_sim_secret", headers={"Authorization": "Bearer sk_sim_secret"})

    for refused in (
        await anonymous.authorize("key-1"),
        await wrong.authorize("key-1"),
        await wrong.client.get("/_control/faults"),
    ):
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_api_key")
    assert anonymous.simulator.state.authorizations() == []
    assert (await right.authorize("key-1")).status_code == 201
    assert (await anonymous.client.get("/healthz")).json() == {"status": "ok", "processor": "sim"}


async def test_unknown_routes_and_methods_answer_json_errors(sim: Sim) -> None:
    missing = await sim.client.get("/v1/charges")
    wrong_method = await sim.client.delete("/v1/refunds")

    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (
        405,
        "method_not_allowed",
    )
