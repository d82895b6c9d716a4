"""docs/processor-simulator.md tells the truth about the test cards and the error codes."""

from __future__ import annotations

import re
from pathlib import Path

import settle.simulator
from settle.simulator import CARD_RULES, CardBehaviour

DOC = (Path(__file__).resolve().parents[2] / "docs" / "processor-simulator.md").read_text()
SOURCES = Path(settle.simulator.__file__).parent


def _table_rows(heading: str) -> list[list[str]]:
    section = DOC.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ][1:]


def test_every_test_card_is_documented_with_its_decline_code() -> None:
    rows = {row[0].strip("`"): row[1] for row in _table_rows("Test cards")}

    for number, rule in CARD_RULES.items():
        assert number in rows, number
        if rule.behaviour is CardBehaviour.DECLINE:
            assert f"`{rule.decline_code}`" in rows[number]
            assert f"`do_not_retry: {str(rule.do_not_retry).lower()}`" in rows[number]


def test_every_error_code_the_simulator_answers_is_documented() -> None:
    source = "\n".join(p.read_text() for p in SOURCES.glob("*.py"))
    answered = set(
        re.findall(r"(?:Refusal|_error|_error_body)\(\s*(?:\d{3},\s*)?\"([a-z_]+)\"", source)
    )
    answered |= set(re.findall(r"\{404: \"([a-z_]+)\", 405: \"([a-z_]+)\"\}", source)[0])
    answered |= set(re.findall(r"AuthorizationAction\.[A-Z]+\): \"([a-z_]+)\"", source))
    documented = {row[1].strip("`") for row in _table_rows("Error codes") if row[0] != "402"}

    assert answered == documented
