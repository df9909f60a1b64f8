"""Evaluation: CEL semantics over plain JSON-like values."""

from __future__ import annotations

import datetime as dt
import math
import time
import types
from typing import Any

import pytest

from stepline._cel import EvaluationError
from stepline._cel import compile as compile_cel
from stepline._cel.values import CelType, UInt

EVENT = {
    "name": "app/order.created",
    "id": "01HZX",
    "ts": 1_700_000_000_000,
    "data": {
        "function_id": "app-fn",
        "userId": "u-1",
        "amount": 150,
        "price": 19.5,
        "plan": "pro",
        "tags": ["vip", "beta"],
        "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}],
        "nested": {"deep": {"value": True}},
        "nothing": None,
    },
    "user": {},
}
ASYNC = {
    "name": "app/order.cancelled",
    "data": {"userId": "u-1", "correlation_id": "run.abc", "sku": "b"},
}
BOTH = {"event": EVENT, "async": ASYNC}


def run(text: str, variables: dict[str, Any] | None = None) -> Any:
    return compile_cel(text).evaluate(BOTH if variables is None else variables)


def fails(text: str, fragment: str, variables: dict[str, Any] | None = None) -> None:
    with pytest.raises(EvaluationError) as info:
        run(text, variables)
    assert fragment in str(info.value), str(info.value)


# ---------------------------------------------------------------- what Inngest users write


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("event.data.function_id == 'app-fn'", True),
        ('event.data.function_id == "other"', False),
        ('async.data.correlation_id == "run.abc"', True),
        ("event.data.userId == async.data.userId", True),
        ("event.data.amount > 100 && event.data.plan != 'free'", True),
        ("event.data.amount > 200 || event.data.plan == 'free'", False),
        ("event.data.plan == 'enterprise' ? 120 : 0", 0),
        ("event.data.plan == 'pro' ? 60 : 0", 60),
        ("event.data.amount >= 150 ? -60 : 0", -60),
        ("event.data.userId", "u-1"),
        ("event.data.userId + '-' + event.data.plan", "u-1-pro"),
        ("event.name == 'app/order.created' && event.data.price < 20.0", True),
        ("event.data.price > 19", True),
        ("'vip' in event.data.tags", True),
        ("'plan' in event.data", True),
        ("event.data.items.exists(i, i.sku == async.data.sku)", True),
        ("event.data.items.all(i, i.qty > 0)", False),
        ("size(event.data.tags) == 2", True),
        ("has(event.data.plan) && !has(event.data.coupon)", True),
        ("event.data.nested.deep.value", True),
        ("event.data.nothing == null", True),
        ("event.name.startsWith('app/')", True),
        ("event.name.matches('^app/order\\\\.(created|paid)$')", True),
        ("event.ts > 0", True),
        ("event.user == {}", True),
    ],
)
def test_inngest_expressions(text: str, expected: Any) -> None:
    result = run(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        "event.data.missing == 'x'",
        "event.data.missing.deeper == 'x'",
        "async.data.userId == event.data.nope",
        "event.data.plan.size > 1",
        "unknown.field == 1",
        "event.data.amount > 'a'",
        "event.data.tags[5] == 'x'",
        "1 / 0 == 1",
        "event.data.plan",  # not a bool: no match either
        "event.data.amount",
        "'true'",
    ],
)
def test_matches_is_false_for_errors_and_non_bools(text: str) -> None:
    assert compile_cel(text).matches(BOTH) is False


def test_matches_is_true_only_for_true() -> None:
    assert compile_cel("event.data.amount == 150").matches(BOTH) is True
    assert compile_cel("true").matches({}) is True
    assert compile_cel("1 == 1.0").matches({}) is True


def test_missing_variable_is_an_evaluation_error() -> None:
    fails("async.data.x == 1", "undeclared reference to 'async'", {"event": EVENT})
    assert compile_cel("async.data.x == 1").matches({"event": EVENT}) is False


# ---------------------------------------------------------------- && and ||


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("false && missing.x", False),
        ("missing.x && false", False),
        ("true || missing.x", True),
        ("missing.x || true", True),
        ("false && 1", False),
        ("1 && false", False),
        ("'s' || true", True),
        ("missing.x && true && false", False),
        ("missing.x || false || true", True),
        ("true && true && true", True),
        ("false || false", False),
        ("(1 / 0 == 1) && event.data.plan == 'free'", False),
        ("event.data.missing == 1 || event.data.plan == 'pro'", True),
    ],
)
def test_error_absorption(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("true && missing.x", "undeclared reference to 'missing'"),
        ("missing.x && true", "undeclared reference to 'missing'"),
        ("false || missing.x", "undeclared reference to 'missing'"),
        ("missing.x || false", "undeclared reference to 'missing'"),
        ("true && 1", "no such overload: int && bool"),
        ("1 || false", "no such overload: int || bool"),
        ("missing.x && other.y", "undeclared reference to 'missing'"),
        ("!1", "no such overload: !int"),
        ("1 ? 2 : 3", "no such overload: int ? _ : _"),
    ],
)
def test_logical_errors(text: str, fragment: str) -> None:
    fails(text, fragment)


def test_conditional_only_evaluates_the_chosen_branch() -> None:
    assert run("true ? 1 : missing.x") == 1
    assert run("false ? missing.x : 2") == 2
    fails("missing.x ? 1 : 2", "undeclared reference")


# ---------------------------------------------------------------- equality


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1", True),
        ("1 == 1.0", True),
        ("1u == 1", True),
        ("1u == 1.0", True),
        ("0.1 + 0.2 == 0.3", False),
        ("1 == '1'", False),
        ("'a' == 'a'", True),
        ("'a' != 'b'", True),
        ("null == null", True),
        ("null == 0", False),
        ("null != false", True),
        ("true == 1", False),
        ("false == 0", False),
        ("true != 1", True),
        ("[1, 2] == [1, 2]", True),
        ("[1, 2] == [1.0, 2.0]", True),
        ("[1, 2] == [2, 1]", False),
        ("[1] == [1, 1]", False),
        ("[true] == [1]", False),
        ("{'a': 1} == {'a': 1.0}", True),
        ("{'a': 1, 'b': 2} == {'b': 2, 'a': 1}", True),
        ("{'a': 1} == {'b': 1}", False),
        ("{'a': 1} == {'a': 1, 'b': 2}", False),
        ("{1: 'x'} == {1u: 'x'}", True),
        ("[] == {}", False),
        ("double('nan') == double('nan')", False),
        ("double('nan') != double('nan')", True),
        ("type(1) == int", True),
        ("type(1) == type(2u)", False),
        ("type('s') == string", True),
        ("type(null) == null_type", True),
        ("type([]) == list && type({}) == map && type(true) == bool", True),
        ("type(1.5) == double && type(int) == type", True),
        ("event.data.tags == ['vip', 'beta']", True),
        ("event.data.items[0] == {'sku': 'a', 'qty': 2}", True),
    ],
)
def test_equality(text: str, expected: bool) -> None:
    assert run(text) is expected


# ---------------------------------------------------------------- ordering


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 2", True),
        ("2 >= 3", False),
        ("1 < 1.5", True),
        ("2u > 1", True),
        ("1.5 >= 1u", True),
        ("'a' < 'b'", True),
        ("'B' < 'a'", True),
        ("'abc' >= 'abd'", False),
        ("false < true", True),
        ("true <= false", False),
        ("double('nan') < 1.0", False),
        ("double('nan') >= 1.0", False),
        ("1 <= double('nan')", False),
        ("timestamp('2024-01-01T00:00:00Z') < timestamp('2024-01-02T00:00:00Z')", True),
        ("duration('1m') > duration('59s')", True),
    ],
)
def test_ordering(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1 < 'a'", "no such overload: int < string"),
        ("'a' >= 1", "no such overload: string >= int"),
        ("true > 0", "no such overload: bool > int"),
        ("null < 1", "no such overload: null < int"),
        ("[1] < [2]", "no such overload: list < list"),
        ("{} <= {}", "no such overload: map <= map"),
        ("event.data.amount > '100'", "no such overload: int > string"),
    ],
)
def test_ordering_errors(text: str, fragment: str) -> None:
    fails(text, fragment)


# ---------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2", 3),
        ("5 - 7", -2),
        ("6 * 7", 42),
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7 / -2", -3),
        ("-7 / -2", 3),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("-7 % -3", -1),
        ("1u + 2u", UInt(3)),
        ("7u / 2u", UInt(3)),
        ("7u % 4u", UInt(3)),
        ("1.5 + 1.5", 3.0),
        ("1.0 / 4.0", 0.25),
        ("1 + 0.5", 1.5),
        ("0.5 * 4", 2.0),
        ("-(2.5)", -2.5),
        ("'ab' + 'cd'", "abcd"),
        ("[1] + [2, 3]", [1, 2, 3]),
        ("[] + []", []),
        ("9223372036854775807 - 1", 2**63 - 2),
        ("-9223372036854775807 - 1", -(2**63)),
        ("18446744073709551615u - 1u", UInt(2**64 - 2)),
    ],
)
def test_arithmetic(text: str, expected: Any) -> None:
    result = run(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.0 / 0.0", math.inf),
        ("-1.0 / 0.0", -math.inf),
        ("1.0 / -0.0", -math.inf),
        ("1e308 * 10.0", math.inf),
    ],
)
def test_double_division_follows_ieee(text: str, expected: float) -> None:
    assert run(text) == expected
    assert math.isnan(run("0.0 / 0.0"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("9223372036854775807 + 1", "integer overflow"),
        ("-9223372036854775808 - 1", "integer overflow"),
        ("4611686018427387904 * 2", "integer overflow"),
        ("-(-9223372036854775807 - 1)", "integer overflow"),
        ("(-9223372036854775807 - 1) / -1", "integer overflow"),
        ("(-9223372036854775807 - 1) % -1", "integer overflow"),
        ("0u - 1u", "unsigned integer overflow"),
        ("18446744073709551615u + 1u", "unsigned integer overflow"),
        ("1 / 0", "division by zero"),
        ("1 % 0", "modulus by zero"),
        ("1u / 0u", "division by zero"),
        ("1.5 % 1.0", "no such overload: double % double"),
        ("1 + 1u", "no such overload: int + uint"),
        ("-(1u)", "no such overload: -uint"),
        ("'a' + 1", "no such overload: string + int"),
        ("'a' * 3", "no such overload: string * int"),
        ("[1] + 'a'", "no such overload: list + string"),
        ("{} + {}", "no such overload: map + map"),
        ("true + true", "no such overload: bool + bool"),
        ("null + 1", "no such overload: null + int"),
        ("-'a'", "no such overload: -string"),
        ("event.data.big + 1", "integer overflow"),
    ],
)
def test_arithmetic_errors(text: str, fragment: str) -> None:
    fails(text, fragment, {"event": {"data": {"big": 2**63 - 1}}})


def test_python_bool_is_not_an_int() -> None:
    variables = {"flag": True, "one": 1}
    assert run("flag == one", variables) is False
    assert run("flag == true", variables) is True
    fails("flag + one", "no such overload: bool + int", variables)
    fails("flag < one", "no such overload: bool < int", variables)
    assert run("one in [flag]", variables) is False
    assert run("[flag].exists(x, x == 1)", variables) is False


# ---------------------------------------------------------------- access


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("event.data['plan']", "pro"),
        ("event['data']['userId']", "u-1"),
        ("event.data.tags[0]", "vip"),
        ("event.data.tags[1u]", "beta"),
        ("event.data.tags[1.0]", "beta"),
        ("event.data.items[1].sku", "b"),
        ("{1: 'one'}[1]", "one"),
        ("{1: 'one'}[1u]", "one"),
        ("{1: 'one'}[1.0]", "one"),
        ("{true: 'yes'}[true]", "yes"),
        ("[[1, 2], [3]][0][1]", 2),
        ("{'a': [1, {'b': 'c'}]}.a[1].b", "c"),
    ],
)
def test_access(text: str, expected: Any) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("event.data.nope", "no such key: 'nope'"),
        ("event.data['nope']", "no such key: 'nope'"),
        ("event.data.tags[2]", "index 2 out of range for list of size 2"),
        ("event.data.tags[-1]", "index -1 out of range"),
        ("event.data.tags['0']", "list index must be an int, got string"),
        ("event.data.tags[true]", "list index must be an int, got bool"),
        ("event.data.tags[0.5]", "list index must be an int, got double"),
        ("event.data.plan.x", "cannot select field 'x' from string"),
        ("event.data.nothing.x", "cannot select field 'x' from null"),
        ("event.data.amount[0]", "cannot index into int"),
        ("'abc'[0]", "cannot index into string"),
        ("{1: 'one'}[true]", "no such key: True"),
        ("{true: 'yes'}[1]", "no such key: 1"),
        ("{'a': 1}[[1]]", "unsupported key type list"),
        ("{[1]: 2}", "unsupported map key type list"),
        ("{1.5: 2}", "unsupported map key type double"),
        ("{'a': 1, 'a': 2}", "repeated map key 'a'"),
        ("{1: 'a', 1u: 'b'}", "repeated map key"),
        ("{1: 'a', true: 'b'}", "collides with a key of another type"),
    ],
)
def test_access_errors(text: str, fragment: str) -> None:
    fails(text, fragment)


def test_has() -> None:
    assert run("has(event.data.plan)") is True
    assert run("has(event.data.nothing)") is True  # present, even though null
    assert run("has(event.data.coupon)") is False
    assert run("has(event.data.nested.deep.value)") is True
    assert run("has({'a': 1}.a)") is True
    fails("has(event.data.coupon.code)", "no such key: 'coupon'")
    fails("has(event.data.plan.x)", "has() cannot test field 'x' of string")
    fails("has(event.data.nothing.x)", "has() cannot test field 'x' of null")


def test_non_dict_mappings_and_tuples_are_accepted() -> None:
    variables = {"event": types.MappingProxyType({"data": {"tags": ("a", "b")}})}
    assert run("event.data.tags[1] == 'b' && 'a' in event.data.tags", variables) is True
    assert run("event.data.tags == ['a', 'b']", variables) is True
    assert run("size(event) == 1 && has(event.data)", variables) is True


def test_unsupported_python_values_are_evaluation_errors() -> None:
    fails("x == 1", "unsupported value of Python type set", {"x": {1}})
    fails("x.y", "unsupported value of Python type object", {"x": object()})
    fails("x == x", "timestamps must be timezone-aware", {"x": dt.datetime(2024, 1, 1)})


def test_absurdly_deep_values_are_evaluation_errors() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    program = compile_cel("x == y")
    with pytest.raises(EvaluationError, match="nested too deeply"):
        program.evaluate({"x": deep, "y": deep})
    assert program.matches({"x": deep, "y": deep}) is False


# ---------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("size('héllo')", 5),
        ("'😀a'.size()", 2),
        ("size([1, 2, 3])", 3),
        ("{'a': 1}.size()", 1),
        ("'hello'.startsWith('he')", True),
        ("'hello'.endsWith('lo')", True),
        ("'hello'.contains('ell')", True),
        ("'hello'.contains('xyz')", False),
        ("'hello'.matches('l+')", True),
        ("'hello'.matches('^l')", False),
        ("matches('abc', 'b')", True),
        ("'abc'.matches(pattern)", True),
        ("'MiXeD É'.lowerAscii()", "mixed É"),
        ("'MiXeD é'.upperAscii()", "MIXED é"),
        ("int(42)", 42),
        ("int(2u)", 2),
        ("int(3.99)", 3),
        ("int(-3.99)", -3),
        ("int('-42')", -42),
        ("int('+7')", 7),
        ("int(timestamp('1970-01-01T00:01:00Z'))", 60),
        ("uint(3)", UInt(3)),
        ("uint(3.7)", UInt(3)),
        ("uint('18446744073709551615')", UInt(2**64 - 1)),
        ("double(3)", 3.0),
        ("double(2u)", 2.0),
        ("double('1.5')", 1.5),
        ("double('-1e3')", -1000.0),
        ("double('inf')", math.inf),
        ("string('s')", "s"),
        ("string(42)", "42"),
        ("string(42u)", "42"),
        ("string(true)", "true"),
        ("string(false)", "false"),
        ("string(1.0)", "1"),
        ("string(1.5)", "1.5"),
        ("string(-0.25)", "-0.25"),
        ("string(123456.0)", "123456"),
        ("string(1234567.0)", "1.234567e+06"),
        ("string(1e21)", "1e+21"),
        ("string(0.0001)", "0.0001"),
        ("string(0.00001)", "1e-05"),
        ("string(-0.0)", "-0"),
        ("string(double('inf'))", "+Inf"),
        ("string(double('-inf'))", "-Inf"),
        ("string(double('nan'))", "NaN"),
        ("string(timestamp('2024-01-02T03:04:05.250+02:00'))", "2024-01-02T01:04:05.25Z"),
        ("string(duration('1h1m1.5s'))", "3661.5s"),
        ("string(duration('-90s'))", "-90s"),
        ("bool(true)", True),
        ("bool('true')", True),
        ("bool('F')", False),
        ("bool('0')", False),
        ("dyn(5)", 5),
        ("type(1u)", CelType("uint")),
        ("type(timestamp('2024-01-01T00:00:00Z'))", CelType("google.protobuf.Timestamp")),
        ("'a' + string(1) + string(2.5)", "a12.5"),
    ],
)
def test_functions(text: str, expected: Any) -> None:
    result = run(text, {"pattern": "b"})
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("size(1)", "no such overload: size(int)"),
        ("size(null)", "no such overload: size(null)"),
        ("(1).size()", "no such overload: size(int)"),
        ("'a'.startsWith(1)", "no such overload: startsWith(string, int)"),
        ("(1).contains('a')", "no such overload: contains(int, string)"),
        ("'a'.matches(pattern)", "invalid regular expression '['"),
        ("(1).matches('a')", "no such overload: int.matches(string)"),
        ("(1).lowerAscii()", "no such overload: lowerAscii(int)"),
        ("int('1.5')", "cannot convert '1.5' to int"),
        ("int(' 1')", "cannot convert ' 1' to int"),
        ("int('9223372036854775808')", "integer overflow"),
        ("int(1e19)", "integer overflow"),
        ("int(double('nan'))", "cannot convert nan to int"),
        ("int(true)", "no such overload: int(bool)"),
        ("uint(-1)", "unsigned integer overflow"),
        ("uint('-1')", "cannot convert '-1' to uint"),
        ("uint(double('inf'))", "cannot convert inf to uint"),
        ("double('abc')", "cannot convert 'abc' to double"),
        ("double('1e999')", "double out of range"),
        ("double('1_000')", "cannot convert '1_000' to double"),
        ("double(null)", "no such overload: double(null)"),
        ("string(null)", "no such overload: string(null)"),
        ("string([1])", "no such overload: string(list)"),
        ("bool('yes')", "cannot convert 'yes' to bool"),
        ("bool(1)", "no such overload: bool(int)"),
        ("timestamp(pattern)", "invalid timestamp '['"),
        ("duration(pattern)", "invalid duration '['"),
        ("duration(1)", "no such overload: duration(int)"),
        ("timestamp('0001-01-01T00:00:00Z') - duration('1s')", "timestamp out of range"),
    ],
)
def test_function_errors(text: str, fragment: str) -> None:
    fails(text, fragment, {"pattern": "["})


def test_timestamps_and_durations() -> None:
    start = run("timestamp('2024-01-01T00:00:00Z')")
    assert start == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert run("timestamp(60)") == dt.datetime(1970, 1, 1, 0, 1, tzinfo=dt.timezone.utc)
    assert run("duration('1h30m')") == dt.timedelta(hours=1, minutes=30)
    assert run("duration('1.5s') + duration('500ms')") == dt.timedelta(seconds=2)
    assert run("duration('1us') + duration('1000ns')") == dt.timedelta(microseconds=2)
    assert run("duration('0') == duration('0s')") is True
    assert run("-duration('1s')") == dt.timedelta(seconds=-1)
    late = "timestamp('2024-01-02T00:00:00Z')"
    assert run(f"{late} - timestamp('2024-01-01T00:00:00Z') == duration('24h')") is True
    assert run(f"{late} - duration('24h') == timestamp('2024-01-01T00:00:00Z')") is True
    assert run(f"duration('1h') + {late} > {late}") is True
    fails(f"{late} + {late}", "no such overload: timestamp + timestamp")
    fails(f"duration('1s') - {late}", "no such overload: duration - timestamp")
    fails("timestamp(text)", "expected RFC 3339", {"text": "2024-01-01 00:00:00Z"})
    fails("timestamp(text)", "out of range", {"text": "2024-13-01T00:00:00Z"})


# ---------------------------------------------------------------- in


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 in [1, 2]", True),
        ("3 in [1, 2]", False),
        ("1.0 in [1, 2]", True),
        ("'a' in ['a']", True),
        ("'a' in {'a': 1}", True),
        ("'b' in {'a': 1}", False),
        ("1 in {1: 'x'}", True),
        ("true in {1: 'x'}", False),
        ("[1] in [[1], [2]]", True),
        ("null in [null]", True),
        ("1 in []", False),
    ],
)
def test_in(text: str, expected: bool) -> None:
    assert run(text) is expected


def test_in_needs_a_list_or_map() -> None:
    fails("'a' in 'abc'", "no such overload: string in string")
    fails("1 in 1", "no such overload: int in int")


# ---------------------------------------------------------------- macros


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2, 3].all(x, x > 0)", True),
        ("[1, 2, 3].all(x, x > 1)", False),
        ("[].all(x, false)", True),
        ("[1, 2, 3].exists(x, x == 2)", True),
        ("[].exists(x, true)", False),
        ("[1, 2, 3].exists_one(x, x > 2)", True),
        ("[1, 2, 3].exists_one(x, x > 1)", False),
        ("[1, 2, 3].map(x, x * 10)", [10, 20, 30]),
        ("[1, 2, 3].map(x, x > 1, x * 10)", [20, 30]),
        ("[1, 2, 3].filter(x, x % 2 == 1)", [1, 3]),
        ("{'a': 1, 'b': 2}.all(k, k.size() == 1)", True),
        ("{'a': 1, 'b': 2}.exists(k, k == 'b')", True),
        ("{'a': 1, 'b': 2}.map(k, k + k)", ["aa", "bb"]),
        ("{'a': 1, 'b': 2}.filter(k, k != 'a')", ["b"]),
        ("[[1, 2], [3]].map(l, l.map(x, x + 1))", [[2, 3], [4]]),
        ("[1, 2].all(x, [3, 4].all(y, y > x))", True),
        ("[1, 2].exists(x, x == outer)", True),
        # error absorption inside the quantifiers
        ("[0, 1].exists(x, 1 / x == 1)", True),
        ("[0, 1].all(x, 1 / x == 5)", False),
        ("[1, 'a'].exists(x, x == 1)", True),
        # the loop variable shadows an outer variable of the same name
        ("[1, 2].all(outer, outer < 3)", True),
        ("event.data.items.filter(i, i.qty > 0).map(i, i.sku)", ["a"]),
        ("event.data.items.map(i, i.qty).exists(q, q == 0)", True),
    ],
)
def test_macros(text: str, expected: Any) -> None:
    assert run(text, {"event": EVENT, "outer": 2}) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[0].exists(x, 1 / x == 1)", "division by zero"),
        ("[0, 1].all(x, 1 / x == 1)", "division by zero"),
        ("[1].all(x, x)", "'.all()' predicate returned int, not bool"),
        ("[1, 2].exists_one(x, 1 / (x - 1) == 1)", "division by zero"),
        ("[1].exists_one(x, 'a')", "'.exists_one()' predicate returned string"),
        ("[1].filter(x, x)", "'.filter()' predicate returned int"),
        ("[1].map(x, x, x)", "'.map()' predicate returned int"),
        ("(1).all(x, true)", "'.all()' cannot iterate over int"),
        ("'abc'.exists(c, true)", "'.exists()' cannot iterate over string"),
        ("[x].all(x, true)", "undeclared reference to 'x'"),
    ],
)
def test_macro_errors(text: str, fragment: str) -> None:
    fails(text, fragment, {})


def test_macros_do_not_touch_the_callers_variables() -> None:
    variables = {"x": "outer"}
    assert run("[1, 2].map(x, x * 2)", variables) == [2, 4]
    assert variables == {"x": "outer"}


# ---------------------------------------------------------------- speed


def test_matching_costs_microseconds() -> None:
    program = compile_cel("event.data.userId == async.data.userId")
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        program.matches(BOTH)
    per_call = (time.perf_counter() - started) / rounds
    assert per_call < 50e-6  # ~0.5 µs on a laptop; generous for slow CI machines
