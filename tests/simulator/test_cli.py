"""``settle simulate processor`` refuses bad settings before serving anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from settle.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--failure-rate", "2"], "failure_rate is a probability between 0 and 1, not 2.0"),
        (["--name", "Sim-A"], "a processor name is [a-z0-9_]+, not 'Sim-A'"),
        (["--notify-url", "http://127.0.0.1:9/h"], "give notify_secret with notify_url"),
        (["--notify-secret", "secret"], "a notification secret starts with 'whsec_'"),
    ],
)
def test_bad_settings_exit_2_with_the_reason(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["simulate", "processor", "--port", "1", *args])

    assert result.exit_code == 2
    assert message in result.output
