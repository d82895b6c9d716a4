"""A simulated card processor: an outside service Settle's connectors talk to over HTTP.

Not part of Settle's domain: it has its own error codes (``docs/processor-simulator.md``) and
raises no SettleError. ``settle simulate processor`` serves it; tests run it in process
(``create_simulator_app`` with ``httpx.ASGITransport``), in a thread (:class:`SimulatorThread`)
or as a real process.
"""

from settle.simulator.app import Simulator, create_simulator_app
from settle.simulator.cards import CARD_RULES, CardBehaviour, CardRule, card_rule, luhn_valid
from settle.simulator.config import FaultSettings, SimulatorConfig, decode_webhook_secret
from settle.simulator.notifier import Notifier, sign_notification, verify_notification
from settle.simulator.server import SimulatorThread
from settle.simulator.state import (
    Authorization,
    AuthorizationStatus,
    Refund,
    Refusal,
    SimulatorState,
)

__all__ = [
    "CARD_RULES",
    "Authorization",
    "AuthorizationStatus",
    "CardBehaviour",
    "CardRule",
    "FaultSettings",
    "Notifier",
    "Refund",
    "Refusal",
    "Simulator",
    "SimulatorConfig",
    "SimulatorState",
    "SimulatorThread",
    "card_rule",
    "create_simulator_app",
    "decode_webhook_secret",
    "luhn_valid",
    "sign_notification",
    "verify_notification",
]
