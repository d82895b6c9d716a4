"""Logs never carry secrets: keys, bearer tokens, card and account numbers are masked."""

from __future__ import annotations

import json

import pytest
import structlog

from settle.logs import MASK, configure_logging, mask_secrets, mask_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk_test_AbCdEfGh12345678AbCdEfGh12345678 used", f"key sk_{MASK} used"),
        ("Authorization: Bearer sk_live_abc", f"Authorization: Bearer {MASK}"),
        ("card 4242 4242 4242 4242 declined", f"card {MASK} declined"),
        ("card 4242-4242-4242-4242", f"card {MASK}"),
        ("pan 4000056655665556", f"pan {MASK}"),
        ("transfer 3f1e... seq 12345 amount 1000", "transfer 3f1e... seq 12345 amount 1000"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", f"whsec_{MASK}"),
        ("secret whsec_c2lt+YS1ub3RpZnk/c2V0dGxl== rotated", f"secret whsec_{MASK} rotated"),
    ],
)
def test_text_is_masked_where_it_holds_a_secret(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_fields_named_for_secrets_are_masked_whatever_their_value() -> None:
    event = {
        "event": "request",
        "api_key": "anything",
        "Authorization": "Basic Zm9vOmJhcg==",
        "account_number": "000123456789",
        "nested": {"password": "hunter2", "tenant_id": "t-1"},
        "status": 201,
    }
    masked = mask_secrets(None, "info", dict(event))
    assert masked == {
        "event": "request",
        "api_key": MASK,
        "Authorization": MASK,
        "account_number": MASK,
        "nested": {"password": MASK, "tenant_id": "t-1"},
        "status": 201,
    }


def test_configured_logs_are_json_lines_with_secrets_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info")
    try:
        structlog.get_logger("test").info(
            "key presented", presented="sk_test_AbCdEfGh12345678AbCdEfGh12345678", route="/v1"
        )
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        structlog.reset_defaults()
    record = json.loads(line)
    assert record["event"] == "key presented"
    assert record["presented"] == f"sk_{MASK}"
    assert record["route"] == "/v1"
    assert record["level"] == "info"
    assert "sk_test_AbCd" not in line
