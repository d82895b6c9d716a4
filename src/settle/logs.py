"""Structured JSON logs that never carry secrets.

Every event goes through :func:`mask_secrets`: fields whose name says they hold a secret are
replaced outright, and every other string is scanned for what must never be logged (API keys,
card numbers, bearer tokens). Settle's own log calls pass ids and codes, never payloads.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "mask_secrets", "mask_text"]

MASK = "[masked]"
# Field names whose values are secrets whatever they look like.
_SECRET_FIELDS = re.compile(
    r"(authorization|api_?key|secret|password|passwd|token|cookie|card_?number|pan|cvv|cvc"
    r"|account_?number|routing_?number|iban|private_?key)",
    re.IGNORECASE,
)
_API_KEY = re.compile(r"\b(sk|rk|whsec)_[A-Za-z0-9_+/=]{8,}")  # whsec_ is base64
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")
# 13 to 19 digits, optionally grouped by spaces or dashes: a card number's shape.
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")


def mask_text(text: str) -> str:
    """``text`` with API keys, bearer tokens and card-number-shaped digit runs masked."""
    if not any(c.isdigit() for c in text) and "_" not in text and "earer" not in text:
        return text
    text = _BEARER.sub("Bearer " + MASK, text)
    text = _API_KEY.sub(lambda m: m.group(1) + "_" + MASK, text)
    return _CARD.sub(MASK, text)


def _mask_value(name: str, value: Any) -> Any:
    if _SECRET_FIELDS.search(name):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(name, v) for v in value]
    return value


def mask_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: mask every secret-bearing field and value of the event."""
    for name, value in list(event_dict.items()):
        event_dict[name] = _mask_value(name, value)
    return event_dict


def configure_logging(level: str = "info") -> None:
    """JSON lines on stderr, with timestamps, levels and secrets masked."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
