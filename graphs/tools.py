"""Tools the graphs' agents may call: a safe calculator and a clock.

Tools return error *strings* for bad input instead of raising: the text goes back to the
model as the tool's result, so the agent can correct itself instead of the run failing.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain_core.tools import BaseTool, tool

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 10_000
# Results (and intermediates) past this many decimal digits are refused: big-int arithmetic
# on them gets slow enough to stall a replica, and no agent needs such numbers.
MAX_RESULT_DIGITS = 1_000

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate."""


def _check_size(value: Number) -> Number:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CalculatorError("the result is too large")
    elif abs(value).bit_length() > MAX_RESULT_DIGITS * math.log2(10):
        raise CalculatorError(f"the result has more than {MAX_RESULT_DIGITS} digits")
    return value


def _power(base: Number, exponent: Number) -> Number:
    # Estimate the result's size before computing it: 9 ** 9 ** 9 must not start at all.
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponents are limited to {MAX_EXPONENT}")
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > MAX_RESULT_DIGITS:
        raise CalculatorError(f"the result has more than {MAX_RESULT_DIGITS} digits")
    result = base**exponent
    if isinstance(result, complex):  # (-8) ** 0.5
        raise CalculatorError("the result is not a real number")
    return result


def _evaluate(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        # bool is an int subclass; True + 1 is not arithmetic the agent should rely on.
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return _check_size(node.value)
        raise CalculatorError(f"unsupported literal {node.value!r}; only numbers are allowed")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.BitXor):
            raise CalculatorError("'^' is not supported; use ** for powers")
        if type(node.op) not in _BINARY:
            raise CalculatorError(f"unsupported operator {type(node.op).__name__}")
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Name):
        raise CalculatorError(f"names like {node.id!r} are not allowed; use numbers only")
    if isinstance(node, ast.Call):
        raise CalculatorError("function calls are not allowed")
    if isinstance(node, ast.Attribute):
        raise CalculatorError("attribute access is not allowed")
    raise CalculatorError(f"unsupported syntax {type(node).__name__}")


def _format(value: Number) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        # 15 significant digits hide binary noise: 0.1 + 0.2 -> "0.3".
        return f"{value:.15g}"
    return str(value)


def evaluate_expression(expression: str) -> str:
    """Evaluate arithmetic safely; return the number as text or an ``Error: ...`` text."""
    text = expression.strip()
    if not text:
        return "Error: the expression is empty"
    if len(text) > MAX_EXPRESSION_CHARS:
        return f"Error: expressions are limited to {MAX_EXPRESSION_CHARS} characters"
    try:
        tree = ast.parse(text, mode="eval")
        return _format(_evaluate(tree))
    except SyntaxError:
        return f"Error: {text!r} is not a valid arithmetic expression"
    except ZeroDivisionError:
        return "Error: division by zero"
    except OverflowError:
        return "Error: the result is too large"
    except CalculatorError as error:
        return f"Error: {error}"
    except ValueError:  # e.g. a NUL byte in the source
        return f"Error: {text!r} is not a valid arithmetic expression"


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result.

    Supports numbers, + - * / // % ** , unary + and -, and parentheses,
    e.g. "(2 + 3) * 4" or "2 ** 10 / 3".
    """
    return evaluate_expression(expression)


@tool
def current_time(timezone: str = "UTC") -> str:
    """Return the current date and time (ISO 8601) in an IANA time zone such as
    "UTC", "Europe/Paris" or "America/New_York"."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: keys that are not zone names at all, e.g. "../etc/passwd" or "".
        return f"Error: unknown time zone {timezone!r}; use an IANA name like 'Europe/Paris'"
    return datetime.now(zone).isoformat(timespec="seconds")


def default_tools() -> list[BaseTool]:
    """The tools the ReAct agent is given."""
    return [calculator, current_time]
