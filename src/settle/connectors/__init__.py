"""Connectors: Settle's side of the card processors' HTTP APIs, behind
:class:`settle.payments.processors.Processor` (retries, timeouts, circuit breakers, routing)."""

from settle.connectors.breaker import (
    TRANSITIONS,
    BreakerEvent,
    BreakerState,
    BreakerTransitionError,
    CircuitBreaker,
)
from settle.connectors.config import ProcessorConfig, build_router, parse_processor_config
from settle.connectors.http_processor import HttpProcessor
from settle.connectors.retry import Delivery, backoff_delay, classify_error, is_retryable_status
from settle.connectors.routing import ProcessorRouter

__all__ = [
    "TRANSITIONS",
    "BreakerEvent",
    "BreakerState",
    "BreakerTransitionError",
    "CircuitBreaker",
    "Delivery",
    "HttpProcessor",
    "ProcessorConfig",
    "ProcessorRouter",
    "backoff_delay",
    "build_router",
    "classify_error",
    "is_retryable_status",
    "parse_processor_config",
]
