from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from graphs.tools import (
    MAX_EXPRESSION_CHARS,
    calculator,
    current_time,
    default_tools,
    evaluate_expression,
)


def calc(expression: str) -> str:
    # Through the tool interface, as the agent's ToolNode calls it.
    return str(calculator.invoke({"expression": expression}))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", "3"),
        ("12 * 7", "84"),
        ("7 - 10", "-3"),
        ("7 / 2", "3.5"),
        ("10 / 2", "5"),  # a whole float prints without ".0"
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("2 ** -2", "0.25"),
        ("-3", "-3"),
        ("+3", "3"),
        ("-(-3)", "3"),
        ("1.5 * 4", "6"),
        ("0.1 + 0.2", "0.3"),
        ("  42  ", "42"),
    ],
)
def test_arithmetic(expression: str, expected: str) -> None:
    assert calc(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("2 * 3 ** 2", "18"),
        ("2 ** 3 ** 2", "512"),  # right-associative
        ("-2 ** 2", "-4"),  # unary minus binds looser than **
        ("10 - 4 - 3", "3"),  # left-associative
        ("100 / 10 / 5", "2"),
        ("((1 + 2) * (3 + 4)) % 5", "1"),
    ],
)
def test_precedence(expression: str, expected: str) -> None:
    assert calc(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os')", "function calls are not allowed"),
        ("__import__('os').system('true')", "not allowed"),
        ("abs(-1)", "function calls are not allowed"),
        ("x + 1", "names like 'x' are not allowed"),
        ("os", "names like 'os' are not allowed"),
        ("(1).real", "attribute access is not allowed"),
        ("'a' * 3", "only numbers are allowed"),
        ("True + 1", "only numbers are allowed"),
        ("[1, 2]", "unsupported syntax"),
        ("1 < 2", "unsupported syntax"),
        ("2 ^ 3", "use ** for powers"),
        ("1 << 3", "unsupported operator"),
        ("lambda: 1", "unsupported syntax"),
        ("1 +", "not a valid arithmetic expression"),
        ("import os", "not a valid arithmetic expression"),
        ("", "the expression is empty"),
    ],
)
def test_refuses_anything_but_arithmetic(expression: str, reason: str) -> None:
    result = calc(expression)
    assert result.startswith("Error: ")
    assert reason in result


@pytest.mark.parametrize(
    "expression",
    ["9 ** 9 ** 9", "10 ** 100000", "2 ** 99999", "(10 ** 999) * (10 ** 999)", "10.0 ** 400"],
)
def test_refuses_huge_results_quickly(expression: str) -> None:
    started = time.perf_counter()
    result = calc(expression)
    assert result.startswith("Error: ")
    assert "limited" in result or "too large" in result or "digits" in result
    assert time.perf_counter() - started < 0.5


def test_refuses_long_expressions() -> None:
    result = evaluate_expression("1+" * MAX_EXPRESSION_CHARS + "1")
    assert result == f"Error: expressions are limited to {MAX_EXPRESSION_CHARS} characters"


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "5 % 0", "0 ** -1", "1 / (2 - 2)"])
def test_division_by_zero_is_an_error_text(expression: str) -> None:
    assert calc(expression) == "Error: division by zero"


def test_complex_results_are_refused() -> None:
    assert calc("(-8) ** 0.5") == "Error: the result is not a real number"


def test_current_time_in_utc_by_default() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = current_time.invoke({})
    parsed = datetime.fromisoformat(result)
    assert parsed.utcoffset() == timedelta(0)
    assert before <= parsed <= datetime.now(UTC)


def test_current_time_in_a_named_zone() -> None:
    result = current_time.invoke({"timezone": "Asia/Kolkata"})
    parsed = datetime.fromisoformat(result)
    assert parsed.utcoffset() == timedelta(hours=5, minutes=30)  # no DST in India
    assert abs(parsed - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../etc/passwd", "", "not a zone"])
def test_current_time_unknown_zone_is_an_error_text(zone: str) -> None:
    result = current_time.invoke({"timezone": zone})
    assert result == (f"Error: unknown time zone {zone!r}; use an IANA name like 'Europe/Paris'")


def test_default_tools() -> None:
    tools = default_tools()
    assert [t.name for t in tools] == ["calculator", "current_time"]
    assert all(t.description for t in tools)
    assert set(tools[0].args) == {"expression"}
    assert tools[1].args["timezone"]["default"] == "UTC"
