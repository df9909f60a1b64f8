"""Partial evaluation: substituting a variable, constant folding and the rendered text."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from stepline._cel import EvaluationError, Program
from stepline._cel import compile as compile_cel
from stepline._cel.values import CelType, UInt

EVENT = {
    "name": "app/signup",
    "id": "evt-1",
    "data": {"userId": "u-1", "plan": "pro", "amount": 150, "tags": ["a", "b"]},
}


# ---------------------------------------------------------------- the engine's use


@pytest.mark.parametrize(
    ("text", "folded", "variables"),
    [
        ("event.data.userId == async.data.userId", '"u-1" == async.data.userId', {"async"}),
        ("async.data.userId == event.data.userId", 'async.data.userId == "u-1"', {"async"}),
        ("event.data.amount > async.data.limit", "150 > async.data.limit", {"async"}),
        (
            "event.data.plan == 'pro' && async.data.ok",
            "true && async.data.ok",
            {"async"},
        ),
        ("event.data.plan == 'free' && async.data.ok", "false", set()),
        ("async.data.ok && event.data.plan == 'free'", "false", set()),
        ("event.data.plan == 'pro' || async.data.ok", "true", set()),
        ("event.data.plan == 'pro' ? async.data.a : async.data.b", "async.data.a", {"async"}),
        ("event.data.plan == 'enterprise' ? 120 : 0", "0", set()),
        ("size(event.data.tags) + async.data.n", "2 + async.data.n", {"async"}),
        ("async.data.tag in event.data.tags", 'async.data.tag in ["a", "b"]', {"async"}),
        (
            "async.data.items.exists(i, i.user == event.data.userId)",
            'async.data.items.exists(i, i.user == "u-1")',
            {"async"},
        ),
        # a field the event lacks: kept as is, so evaluation fails and nothing matches
        (
            "event.data.missing == async.data.x",
            '{"userId": "u-1", "plan": "pro", "amount": 150, "tags": ["a", "b"]}.missing'
            " == async.data.x",
            {"async"},
        ),
        ("async.data.x == 1", "async.data.x == 1", {"async"}),
        ("event", None, set()),
    ],
)
def test_substitute_event(text: str, folded: str | None, variables: set[str]) -> None:
    program = compile_cel(text).substitute("event", EVENT)
    if folded is not None:
        assert program.text == folded
    assert program.variables == frozenset(variables)
    assert compile_cel(program.text).variables == program.variables


def test_substituted_program_evaluates_like_the_original() -> None:
    original = compile_cel("event.data.userId == async.data.userId && async.name != event.name")
    partial = original.substitute("event", EVENT)
    for candidate in (
        {"name": "app/cancel", "data": {"userId": "u-1"}},
        {"name": "app/signup", "data": {"userId": "u-1"}},
        {"name": "app/cancel", "data": {"userId": "u-2"}},
        {"name": "app/cancel", "data": {}},
    ):
        expected = original.matches({"event": EVENT, "async": candidate})
        assert partial.matches({"async": candidate}) is expected


def test_missing_event_field_never_matches() -> None:
    partial = compile_cel("event.data.nope == async.data.nope").substitute("event", EVENT)
    assert partial.is_constant_false is False
    assert partial.matches({"async": {"data": {"nope": 1}}}) is False
    with pytest.raises(EvaluationError, match="no such key: 'nope'"):
        partial.evaluate({"async": {"data": {"nope": 1}}})


def test_is_constant_false() -> None:
    assert compile_cel("false").is_constant_false is True
    assert compile_cel("1 == 2").is_constant_false is True
    assert compile_cel("x && false").is_constant_false is True
    assert compile_cel("true").is_constant_false is False
    assert compile_cel("x").is_constant_false is False
    assert compile_cel("1 / 0 == 1").is_constant_false is False  # an error, not false
    cancel = compile_cel("event.data.plan == 'free' && async.data.userId == event.data.userId")
    assert cancel.substitute("event", EVENT).is_constant_false is True


def test_invoke_resume_expression() -> None:
    program = compile_cel('async.data.correlation_id == "run.abc"')
    assert program.substitute("async", {"data": {"correlation_id": "run.abc"}}).text == "true"
    assert program.substitute("async", {"data": {"correlation_id": "x"}}).is_constant_false
    assert program.substitute("async", {"data": {}}).variables == frozenset()


# ---------------------------------------------------------------- scoping and copying


def test_loop_variables_shadow_the_substituted_name() -> None:
    program = compile_cel("[1, 2].all(event, event > 0) && event.x == async.x")
    partial = program.substitute("event", {"x": 5})
    assert partial.text == "5 == async.x"
    shadowed = compile_cel("async.items.all(event, event.ok)").substitute("event", {"ok": 0})
    assert shadowed.text == "async.items.all(event, event.ok)"
    assert shadowed.matches({"async": {"items": [{"ok": True}]}}) is True


def test_substitution_in_the_target_of_a_shadowing_macro() -> None:
    program = compile_cel("event.items.exists(event, event == 2)").substitute(
        "event", {"items": [1, 2]}
    )
    assert program.text == "true"


def test_substitute_copies_the_value() -> None:
    event: dict[str, Any] = {"data": {"id": "a", "tags": ["x"]}}
    program = compile_cel("event.data.tags == async.tags").substitute("event", event)
    event["data"]["tags"].append("y")
    assert program.matches({"async": {"tags": ["x"]}}) is True


def test_substitute_rejects_values_cel_cannot_hold() -> None:
    program = compile_cel("event == 1")
    with pytest.raises(TypeError, match="unsupported value of Python type set"):
        program.substitute("event", {"a": {1, 2}})
    with pytest.raises(TypeError, match="unsupported map key type list"):
        program.substitute("event", {(1, 2): 1})
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        program.substitute("event", deep)


def test_substitute_keeps_the_original_program() -> None:
    program = compile_cel("event.a == async.a")
    partial = program.substitute("event", {"a": 1})
    assert isinstance(partial, Program)
    assert program.text == "event.a == async.a"
    assert program.variables == {"event", "async"}


def test_substitute_twice() -> None:
    program = compile_cel("event.a == async.a").substitute("event", {"a": 1})
    assert program.substitute("async", {"a": 1}).text == "true"
    assert program.substitute("async", {"a": 2}).text == "false"


# ---------------------------------------------------------------- folding at compile time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("'a' + 'b' == x", '"ab" == x'),
        ("x == [1, 2].map(v, v * 2)", "x == [2, 4]"),
        ("x.y && (1 < 2)", "x.y && true"),
        ("x.y || !true", "x.y || false"),
        ("x.y == 1 && true", "x.y == 1"),
        ("true && x.y && 1 < 2 && z", "x.y && z"),
        ("false || !x", "!x"),
        ("true && has(x.y)", "has(x.y)"),
        ("true && x.startsWith('a')", 'x.startsWith("a")'),
        ("true && x.all(v, v)", "x.all(v, v)"),
        ("true && (x || y)", "x || y"),
        ("true && x.map(v, v)", "true && x.map(v, v)"),
        ("true && -x", "true && -x"),
        ("x ? 1 + 1 : 2 + 2", "x ? 2 : 4"),
        ("(1 + 2) * x", "3 * x"),
        ("x * (1 + 2)", "x * 3"),
        ("x - (1 - 2)", "x - -1"),
        ("-(x)", "-x"),
        ("-(-x)", "-(-x)"),
        ("!(!x)", "!(!x)"),
        ("(x + 1) * 2", "(x + 1) * 2"),
        ("x + (y + 1)", "x + (y + 1)"),
        ("(a || b) && c", "(a || b) && c"),
        ("a || b && c", "a || b && c"),
        ("(a ? b : c) ? d : e", "(a ? b : c) ? d : e"),
        ("a ? (b ? c : d) : e", "a ? (b ? c : d) : e"),
        ("a ? b : c ? d : e", "a ? b : c ? d : e"),
        ("(x).size()", "x.size()"),
        ("(-1).x", "(-1).x"),
        ("(x + 1).y", "(x + 1).y"),
        ("has(x.y)", "has(x.y)"),
        ("x[0][1 + 1]", "x[0][2]"),
        ("{x: 1}", "{x: 1}"),
        ("[x, 1 + 1]", "[x, 2]"),
        ("x.map(v, v + 1 + 1)", "x.map(v, v + 1 + 1)"),
        ("x.map(v, v > 0, v * (2 + 2))", "x.map(v, v > 0, v * 4)"),
        ("1 / 0 == x", "1 / 0 == x"),  # failing constants stay, to fail at evaluation
        ("string(x) + string(1.5)", 'string(x) + "1.5"'),
        ("1 < 2 == x", "true == x"),
        ("x in [1] + [2]", "x in [1, 2]"),
    ],
)
def test_folding_and_rendering(text: str, expected: str) -> None:
    program = compile_cel(text).substitute("unused", 0)
    assert program.text == expected
    again = compile_cel(program.text)
    assert again.substitute("unused", 0).text == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -5,
        2**63 - 1,
        -(2**63),
        UInt(2**64 - 1),
        0.0,
        -0.0,
        1.5,
        -2.5e-300,
        1e300,
        math.inf,
        -math.inf,
        "",
        "plain",
        "quotes ' and \" and \\ backslash",
        "line\nbreak\ttab\rcr \x00 \x1f \x7f",
        "unicode é ✓ 😀",
        [],
        [1, "two", [3.0]],
        {},
        {"a": {"b": [1, {"c": None}]}, 'we"ird': 1},
        {1: "int key", UInt(2): "uint key", "s": "str key"},
        {True: "bool key", False: 0},
        CelType("int"),
        CelType("null_type"),
        CelType("google.protobuf.Timestamp"),
        CelType("google.protobuf.Duration"),
        dt.datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=dt.timezone.utc),
        dt.timedelta(seconds=-90.5),
    ],
)
def test_values_render_to_source_that_evaluates_back(value: Any) -> None:
    program = compile_cel("x").substitute("x", value)
    result = compile_cel(program.text).evaluate({})
    assert repr(result) == repr(value)
    assert type(result) is type(value)


def test_nan_renders_to_source_that_evaluates_back() -> None:
    program = compile_cel("x").substitute("x", math.nan)
    assert program.text == 'double("NaN")'
    assert math.isnan(compile_cel(program.text).evaluate({}))


def test_tuples_and_mapping_subclasses_are_normalised() -> None:
    from collections import OrderedDict

    program = compile_cel("x").substitute("x", OrderedDict(a=(1, 2)))
    assert program.text == '{"a": [1, 2]}'
    assert program.evaluate({}) == {"a": [1, 2]}
