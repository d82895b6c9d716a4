"""Which processors to use, from one line of configuration, and the router built from it.

A spec lists ``name=base_url`` pairs separated by commas, in order of priority::

    sim_a=http://127.0.0.1:9101,sim_b=http://127.0.0.1:9102
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from settle.clock import Clock, system_clock
from settle.connectors.breaker import CircuitBreaker
from settle.connectors.http_processor import HttpProcessor
from settle.connectors.routing import ProcessorRouter

__all__ = ["ProcessorConfig", "build_router", "parse_processor_config"]

_NAME = re.compile(r"^[a-z0-9_]+\Z")


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    name: str
    base_url: str


def _base_url(name: str, url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"processor {name!r}: bad URL {url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"processor {name!r}: the URL must be http(s)://host[:port], not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(
            f"processor {name!r}: the URL takes no query, fragment or credentials: {url!r}"
        )
    del port  # parsed only to refuse a bad one
    return url.rstrip("/")


def parse_processor_config(spec: str) -> list[ProcessorConfig]:
    """The processors of ``spec`` (``name=url,name=url``) in order of priority.

    Raises:
        ValueError: an empty spec, an entry that is not ``name=url``, a name outside
            ``[a-z0-9_]+``, a repeated name, or a URL that is not ``http(s)://host[:port]``.
    """
    entries = [entry.strip() for entry in spec.split(",")]
    if not any(entries):
        raise ValueError("no processors configured: expected name=url[,name=url...]")
    configs: list[ProcessorConfig] = []
    for position, entry in enumerate(entries, start=1):
        name, equals, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        if not equals or not name or not url:
            raise ValueError(f"processor entry {position} ({entry!r}) is not name=url")
        if not _NAME.match(name):
            raise ValueError(f"processor name {name!r} must match [a-z0-9_]+")
        if any(c.name == name for c in configs):
            raise ValueError(f"processor name {name!r} appears twice")
        configs.append(ProcessorConfig(name, _base_url(name, url)))
    return configs


def build_router(
    configs: Sequence[ProcessorConfig],
    *,
    clock: Clock = system_clock,
    timeout: float = 2.0,
    connect_timeout: float = 0.5,
    max_attempts: int = 3,
    backoff_initial: float = 0.05,
    backoff_max: float = 1.0,
    failure_threshold: int = 5,
    cooldown_seconds: float = 30.0,
    api_keys: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> ProcessorRouter:
    """An :class:`HttpProcessor` with its own :class:`CircuitBreaker` per config, in order.

    ``api_keys`` maps processor names to their API keys (those without one send none).
    """
    api_keys = api_keys or {}
    unknown = sorted(set(api_keys) - {c.name for c in configs})
    if unknown:
        raise ValueError(f"API keys for unconfigured processors: {', '.join(unknown)}")
    processors = [
        HttpProcessor(
            config.name,
            config.base_url,
            api_key=api_keys.get(config.name),
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_attempts=max_attempts,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            breaker=CircuitBreaker(
                failure_threshold=failure_threshold, cooldown_seconds=cooldown_seconds, clock=clock
            ),
            clock=clock,
            sleep=sleep,
            rng=rng,
        )
        for config in configs
    ]
    return ProcessorRouter(processors)
