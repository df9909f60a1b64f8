"""Checks for the conformance tables: one case, every way Stepline evaluates an expression.

A value case must give the same value, of the same CEL type, when compiled (parsed, folded,
closure-built), when evaluated unfolded, when its tree is rendered back to source and
compiled again, and when each of its variables is substituted (partial evaluation). An
error case must fail in each of those ways.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from stepline._cel import EvaluationError, ExpressionError, evaluator, parser, source
from stepline._cel import compile as compile_cel
from stepline._cel.values import CelType, UInt

__all__ = ["Case", "expect_error", "expect_invalid", "expect_value", "same"]

#: One table row: ``(expression, expected value or error fragment)``.
Case = tuple[str, Any]


def same(actual: Any, expected: Any) -> bool:
    """CEL identity for test results: equal values of the same type (``1 != 1u != 1.0``)."""
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(actual)
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            same(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, float):
        return actual == expected and math.copysign(1, actual) == math.copysign(1, expected)
    return bool(actual == expected)


def _ways(text: str, variables: dict[str, Any]) -> dict[str, Any]:
    """Thunks evaluating ``text`` each way; raising is left to the caller's check."""
    tree = parser.parse(text)
    ways: dict[str, Any] = {
        "compiled": lambda: compile_cel(text).evaluate(variables),
        "unfolded": lambda: evaluator.build(tree)(variables),
        "rendered": lambda: compile_cel(source.unparse(tree)).evaluate(variables),
    }
    for name, value in variables.items():
        rest = {other: bound for other, bound in variables.items() if other != name}
        program = compile_cel(text).substitute(name, value)
        ways[f"substituted {name}"] = lambda program=program, rest=rest: program.evaluate(rest)
    return ways


def expect_value(text: str, expected: Any, variables: dict[str, Any] | None = None) -> None:
    """Assert ``text`` evaluates to ``expected`` in every way."""
    for way, evaluate in _ways(text, variables or {}).items():
        actual = evaluate()
        assert same(actual, expected), f"{text} ({way}): {actual!r}, expected {expected!r}"


def expect_error(text: str, fragment: str, variables: dict[str, Any] | None = None) -> None:
    """Assert evaluating ``text`` fails, with ``fragment`` in the message, in every way."""
    for way, evaluate in _ways(text, variables or {}).items():
        with pytest.raises(EvaluationError) as info:
            evaluate()
        assert fragment in str(info.value), f"{text} ({way}): {info.value}"


def expect_invalid(text: str, fragment: str) -> None:
    """Assert ``text`` is refused at compile time with ``fragment`` in the reason."""
    with pytest.raises(ExpressionError) as info:
        compile_cel(text)
    assert fragment in info.value.reason, info.value.reason


# Values the tables name, shared so the rows stay short.
UTC = dt.timezone.utc
TYPES = {name: CelType(name) for name in ("int", "uint", "double", "string", "bool", "type")}
U = UInt
