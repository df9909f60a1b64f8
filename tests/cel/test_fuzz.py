"""Property tests: compile only raises ExpressionError; evaluation only EvaluationError;
substitution and re-rendering never change a result."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stepline._cel import EvaluationError, ExpressionError, Program
from stepline._cel import compile as compile_cel
from stepline._cel.source import render_value

pytestmark = [pytest.mark.slow]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_EXPRESSIONS = settings(FUZZ, max_examples=200)

# ---------------------------------------------------------------- arbitrary text

# Characters CEL cares about, so random text reaches deep into the lexer and parser.
_CEL_ALPHABET = st.sampled_from(
    [
        *"abexyz_019.,:?!-+*/%<>=&|()[]{}'\"\\ \t\nurRbB",
        *["==", "&&", "||", "in", "true", "null", "'''", '"""', "\\x4", "\\u00", "0x", "1e"],
        *["has(", "event.data", ".exists(v, ", "size("],
    ]
)
_cel_like = st.lists(_CEL_ALPHABET, max_size=40).map("".join)


def _compile_only_raises_expression_error(text: str) -> None:
    try:
        program = compile_cel(text)
    except ExpressionError as exc:
        error = exc
    else:
        assert program.text == text
        program.matches({"event": {"data": {}}})  # whatever it means, matching never raises
        return
    assert error.column >= 1
    assert error.reason in str(error)


@FUZZ
@given(st.text(max_size=80))
def test_arbitrary_text_compiles_or_raises_expression_error(text: str) -> None:
    _compile_only_raises_expression_error(text)


@FUZZ
@given(_cel_like)
def test_cel_like_text_compiles_or_raises_expression_error(text: str) -> None:
    _compile_only_raises_expression_error(text)


# ---------------------------------------------------------------- well-formed expressions

_FIELD_NAMES = ["data", "id", "name", "n", "x", "tags", "items", "ok"]
_FIELDS = st.sampled_from(_FIELD_NAMES)
_ROOTS = st.sampled_from(["event", "async"])


def _json(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-3, 3),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=4),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(_FIELDS, inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


# Events hold every field most of the time, so generated paths usually resolve.
_DATA = st.one_of(
    st.fixed_dictionaries({field: _json() for field in _FIELD_NAMES}),
    st.dictionaries(_FIELDS, _json(), max_size=5),
)
_EVENTS = st.fixed_dictionaries({"name": st.text(max_size=4), "data": _DATA})

_literals = st.one_of(
    st.integers(-3, 3).map(str),
    st.sampled_from(["true", "false"]),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(0, 2**64 - 1).map(lambda n: f"{n}u"),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=4).map(render_value),
    st.sampled_from(["true", "false", "null", "[]", "{}", "int", "string"]),
)
_paths = st.one_of(
    st.builds(lambda root, field: f"{root}.data.{field}", _ROOTS, _FIELDS),
    st.builds(
        lambda root, fields: ".".join([root, *fields]), _ROOTS, st.lists(_FIELDS, max_size=3)
    ),
)
# 'v' is the macros' loop variable; elsewhere it is an undeclared reference, so keep it rare.
_leaves = st.one_of(_literals, _paths, _literals, _paths, _literals, st.just("v"))
_BINARY = ["||", "&&", "==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%"]
_GLOBAL_1 = [
    *["size", "int", "uint", "double", "string", "bool", "type", "dyn"],
    *["duration", "timestamp"],
]
_MEMBER = {
    "size": 0,
    "lowerAscii": 0,
    "upperAscii": 0,
    "startsWith": 1,
    "endsWith": 1,
    "contains": 1,
    "matches": 1,
}
_MACROS = ["all", "exists", "exists_one", "filter", "map"]


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(_BINARY), inner),
        st.builds(lambda op, a: f"{op}({a})", st.sampled_from(["!", "-"]), inner),
        st.builds(lambda a, b, c: f"({a} ? {b} : {c})", inner, inner, inner),
        st.lists(inner, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
        st.lists(pair, max_size=2).map(
            lambda entries: "{" + ", ".join(f"{k}: {v}" for k, v in entries) + "}"
        ),
        st.builds(lambda a, b: f"({a})[{b}]", inner, inner),
        st.builds(lambda a, field: f"({a}).{field}", inner, _FIELDS),
        st.builds(lambda a, field: f"has(({a}).{field})", inner, _FIELDS),
        st.builds(lambda name, a: f"{name}({a})", st.sampled_from(_GLOBAL_1), inner),
        st.builds(
            lambda a, name, b: f"({a}).{name}({b if _MEMBER[name] else ''})",
            inner,
            st.sampled_from(sorted(_MEMBER)),
            inner,
        ),
        st.builds(
            lambda a, name, b: f"({a}).{name}(v, {b})", inner, st.sampled_from(_MACROS), inner
        ),
        st.builds(lambda a, b, c: f"({a}).map(v, {b}, {c})", inner, inner, inner),
    )


_expressions = st.recursive(_leaves, _extend, max_leaves=10)


def _outcome(program: Program, variables: dict[str, Any]) -> str:
    try:
        return repr(program.evaluate(variables))
    except EvaluationError:
        return "error"


def _compile(text: str) -> Program:
    try:
        return compile_cel(text)
    except ExpressionError as exc:
        reason = exc.reason
    # Only literal arguments checked at compile time can fail a well-formed expression.
    literal_checks = ("invalid duration", "invalid timestamp", "invalid regular expression")
    assert reason.startswith(literal_checks), reason
    assume(False)
    raise AssertionError("unreachable")


@FUZZ_EXPRESSIONS
@given(_expressions, _EVENTS, _EVENTS)
def test_evaluation_only_raises_evaluation_error(text: str, event: Any, other: Any) -> None:
    program = _compile(text)
    variables = {"event": event, "async": other}
    outcome = _outcome(program, variables)
    assert program.matches(variables) is (outcome == "True")


@FUZZ_EXPRESSIONS
@given(_expressions, _EVENTS, _EVENTS)
def test_substitution_preserves_results(text: str, event: Any, other: Any) -> None:
    program = _compile(text)
    expected = _outcome(program, {"event": event, "async": other})
    partial = program.substitute("event", event)
    assert "event" not in partial.variables
    assert _outcome(partial, {"async": other}) == expected
    assert partial.is_constant_false is (expected == "False" and not partial.variables)
    if partial.is_constant_false:
        assert expected == "False"


@FUZZ_EXPRESSIONS
@given(_expressions, _EVENTS, _EVENTS)
def test_rendered_text_means_the_same(text: str, event: Any, other: Any) -> None:
    program = _compile(text)
    partial = program.substitute("event", event)
    rendered = compile_cel(partial.text)
    assert rendered.variables == partial.variables
    variables = {"async": other}
    assert _outcome(rendered, variables) == _outcome(partial, variables)
