"""The processor spec: a line of configuration, and the router built from it."""

from __future__ import annotations

import pytest

from settle.connectors import (
    BreakerState,
    HttpProcessor,
    ProcessorConfig,
    build_router,
    parse_processor_config,
)


def test_a_spec_lists_processors_in_order_of_priority() -> None:
    configs = parse_processor_config(
        " sim_b=http://127.0.0.1:9102/ , sim_a=https://processor.test:8443/api"
    )

    assert configs == [
        ProcessorConfig("sim_b", "http://127.0.0.1:9102"),
        ProcessorConfig("sim_a", "https://processor.test:8443/api"),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no processors configured: expected name=url[,name=url...]"),
        ("sim_a", "processor entry 1 ('sim_a') is not name=url"),
        ("sim_a=http://127.0.0.1:1,=http://x", "processor entry 2 ('=http://x') is not name=url"),
        ("Sim-A=http://127.0.0.1:1", "processor name 'Sim-A' must match [a-z0-9_]+"),
        ("a=http://h:1,a=http://h:2", "processor name 'a' appears twice"),
        ("a=ftp://h", "processor 'a': the URL must be http(s)://host[:port], not 'ftp://h'"),
        ("a=http://h:99999", "processor 'a': bad URL 'http://h:99999'"),
        ("a=http://h:1?x=1", "processor 'a': the URL takes no query, fragment or credentials"),
    ],
)
def test_a_bad_spec_is_refused_saying_why(spec: str, message: str) -> None:
    with pytest.raises(
        ValueError,
        match="^"
        + message.replace("[", r"\[")
        .replace("(", r"\(")
        .replace(")", r"\)")
        .replace("?", r"\?")
        .replace(".", r"\."),
    ):
        parse_processor_config(spec)


def test_the_router_has_one_breaker_per_processor() -> None:
    configs = parse_processor_config("sim_a=http://127.0.0.1:1,sim_b=http://127.0.0.1:2")

    router = build_router(configs, failure_threshold=1, api_keys={"sim_b": "sk_b"})
    a, b = router.get("sim_a"), router.get("sim_b")

    assert router.names == ("sim_a", "sim_b")
    assert isinstance(a, HttpProcessor)
    assert isinstance(b, HttpProcessor)
    assert a.breaker is not None
    assert b.breaker is not None
    assert a.breaker is not b.breaker
    a.breaker.record_failure()
    assert (a.breaker.state, b.breaker.state) == (BreakerState.OPEN, BreakerState.CLOSED)
    assert router.pick() is b
    router.close()


def test_api_keys_must_name_configured_processors() -> None:
    with pytest.raises(ValueError, match="API keys for unconfigured processors: sim_z"):
        build_router(parse_processor_config("sim_a=http://127.0.0.1:1"), api_keys={"sim_z": "k"})
