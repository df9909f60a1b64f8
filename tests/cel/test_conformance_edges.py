"""Conformance with the CEL specification: field names, numeric edges, time ranges.

The project's own cases, written from the specification's rules (langdef.md: the lexis,
*Numeric Values*, *Overflow*, the conversion functions and the timestamp and duration
ranges), checked every way Stepline evaluates an expression (see ``_spec``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import stepline
from stepline import _cel
from stepline._cel import ExpressionError
from stepline._cel import compile as compile_cel
from tests.cel._spec import UTC, Case, U, expect_error, expect_invalid, expect_value

# ------------------------------------------------------------------ field names

#: Reserved for embedding CEL in host languages: refused as identifiers, not as fields.
RESERVED = [
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "namespace",
    "package",
    "return",
    "var",
    "void",
    "while",
]
FIELDS: list[Case] = [
    *((f"{{'{word}': 1}}.{word}", 1) for word in RESERVED),
    ("{'if': {'while': 2}}.if.while", 2),
    ("has({'for': 1}.for)", True),
    # The keywords of the grammar itself are fields only when quoted.
    ("{'in': 1}.`in`", 1),
    ("{'true': 1}.`true`", 1),
    ("{'null': null}.`null` == null", True),
    # Backticks quote names with letters, digits, '_', '.', '-', '/' and spaces.
    ("{'content-type': 'json'}.`content-type`", "json"),
    ("{'foo.txt': 1}.`foo.txt`", 1),
    ("{'a b': 1}.`a b`", 1),
    ("{'a/b_c': 1}.`a/b_c`", 1),
    ("{'9lives': 1}.`9lives`", 1),
    ("{'plain': 1}.`plain`", 1),
    ("{'a': {'b-c': {'d': 2}}}.a.`b-c`.d", 2),
    ("has({'foo.txt': 1}.`foo.txt`)", True),
    ("has({'foo': 1}.`foo.txt`)", False),
    ("[{'x-y': 1}, {'x-y': 2}].map(m, m.`x-y`)", [1, 2]),
]
FIELD_ERRORS: list[Case] = [
    ("{'a': 1}.`a-b`", "no such key: 'a-b'"),
    ("1.`a-b`", "cannot select field 'a-b' from int"),
]
INVALID_FIELDS: list[Case] = [
    ("{'if': 1}.in", "'in' is a keyword; quote it"),
    ("x.false", "'false' is a keyword; quote it"),
    ("if", "'if' is a reserved word and cannot be an identifier"),
    ("[1].all(while, true)", "'while' is a reserved word"),
    ("`a-b`", "a quoted name can only be a field name"),
    ("x.`size`()", "a quoted field name cannot be called"),
    ("x.``", "empty quoted field name"),
    ("x.`a", "unterminated quoted field name"),
    ("x.`a\nb`", "unterminated quoted field name"),
    ("x.`a+b`", "unexpected character '+' in a quoted field name"),
    ("x.`é`", "unexpected character 'é' in a quoted field name"),
]

# ------------------------------------------------------------------ numeric edges

NUMERIC: list[Case] = [
    # Across int/uint and double, the integer becomes a double (round to nearest), so near
    # 2**63 and 2**64 the comparison is the double's; beyond the range, the sign decides.
    ("dyn(9223372036854775807) < 9223372036854775808.0", False),
    ("dyn(9223372036854775807) <= 9223372036854775808.0", True),
    ("dyn(9223372036854775807) == 9223372036854775808.0", True),
    ("dyn(9223372036854775807) < 9223372036854777857.0", True),
    ("dyn(-9223372036854775808) > -9223372036854775809.0", False),
    ("dyn(-9223372036854775808) > -9223372036854777857.0", True),
    ("dyn(18446744073709551615u) < 18446744073709590000.0", True),
    ("dyn(18446744073709551615u) == 18446744073709551616.0", True),
    ("dyn(18446744073709551615u) > 18446744073709551615.0", False),
    ("dyn(0u) > -1.0", True),
    ("dyn(1u) < 1e300", True),
    ("dyn(1) > -1e300", True),
    ("9007199254740993 == 9007199254740992.0", True),
    ("[9007199254740993].exists(x, x == 9007199254740992.0)", True),
    # NaN orders with nothing.
    ("dyn(1) < 0.0 / 0.0 || dyn(1) >= 0.0 / 0.0", False),
    ("dyn(1u) == 0.0 / 0.0", False),
    # int against uint is exact.
    ("dyn(9223372036854775807) < 9223372036854775808u", True),
    ("dyn(-1) < 0u", True),
    ("dyn(18446744073709551615u) > 9223372036854775807", True),
    # Map keys are found by exact value, not by that lossy order.
    ("{9007199254740993: 'a'}[9007199254740993u]", "a"),
    ("9007199254740993 in {9007199254740992: 'a'}", False),
    # int() and uint() of a double truncate toward zero, strictly inside the range.
    ("int(9223372036854774784.0)", 9223372036854774784),
    ("int(-9223372036854774784.0)", -9223372036854774784),
    ("int(-0.9)", 0),
    ("uint(18446744073709549568.0)", U(18446744073709549568)),
    ("uint(0.9)", U(0)),
    ("double(18446744073709551615u)", 18446744073709551616.0),
    ("double(-9223372036854775808)", -9223372036854775808.0),
]
NUMERIC_ERRORS: list[Case] = [
    ("int(9223372036854775807.0)", "integer overflow"),  # that double is 2**63
    ("int(9223372036854775808.0)", "integer overflow"),
    ("int(-9223372036854775808.0)", "integer overflow"),  # at the end is out too
    ("int(1e19)", "integer overflow"),
    ("int(-1e19)", "integer overflow"),
    ("int(double('inf'))", "cannot convert inf to int"),
    ("int(double('nan'))", "cannot convert nan to int"),
    ("uint(18446744073709551615.0)", "unsigned integer overflow"),  # that double is 2**64
    ("uint(1e20)", "unsigned integer overflow"),
    ("uint(-1.0)", "unsigned integer overflow"),
    ("uint(-0.5)", "unsigned integer overflow"),
    ("uint(double('-inf'))", "cannot convert -inf to uint"),
    ("int(9223372036854775808u)", "integer overflow"),
    ("uint(-1)", "unsigned integer overflow"),
    ("int(dyn('-9223372036854775809'))", "integer overflow"),
    ("double(dyn('1e309'))", "double out of range"),
]

# ------------------------------------------------------------------ timestamps and durations

TIME: list[Case] = [
    ("timestamp('0001-01-01T00:00:00Z') == timestamp(-62135596800)", True),
    ("timestamp('9999-12-31T23:59:59Z') == timestamp(253402300799)", True),
    ("timestamp('9999-12-31T23:59:59.999999Z') > timestamp('9999-12-31T23:59:59Z')", True),
    ("timestamp('2024-01-01T00:00:00+01:00') == timestamp('2023-12-31T23:00:00Z')", True),
    ("int(timestamp('1970-01-01T00:00:10Z'))", 10),
    ("int(timestamp('1969-12-31T23:59:59.5Z'))", -1),  # floor, like Unix seconds
    ("string(timestamp('2024-02-29T12:00:00.25Z'))", "2024-02-29T12:00:00.25Z"),
    (
        "timestamp('2024-01-01T00:00:00Z') + duration('1h') > timestamp('2024-01-01T00:59:59Z')",
        True,
    ),
    ("timestamp('2024-01-02T00:00:00Z') - timestamp('2024-01-01T00:00:00Z')", dt.timedelta(days=1)),
    # A duration is a signed 64-bit count of nanoseconds: about +/-292 years.
    (
        "timestamp('2262-04-11T23:47:16Z') - timestamp('1970-01-01T00:00:00Z')",
        dt.timedelta(seconds=9223372036),
    ),
    (
        "duration(dyn('-9223372036.854775808s'))",
        -dt.timedelta(seconds=9223372036, microseconds=854775),
    ),
    ("-duration('9223372036.854775s') == duration('-9223372036.854775s')", True),
    ("duration('1h30m') == duration('5400s')", True),
    ("string(duration('-1.5s'))", "-1.5s"),
    ("duration('4611686018s') + duration('4611686018s')", dt.timedelta(seconds=9223372036)),
    ("duration('-1m') < duration('0s')", True),
    ("timestamp('2024-01-01T00:00:00Z')", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    # Documented truncation: Python keeps microseconds, digits past the sixth are dropped.
    ("string(timestamp('2024-01-01T00:00:00.123456789Z'))", "2024-01-01T00:00:00.123456Z"),
    ("duration('1ns') == duration('0s')", True),
    ("duration('1.5us') == duration('1us')", True),
    ("duration('-1.5us') == duration('-1us')", True),
]
TIME_ERRORS: list[Case] = [
    ("timestamp('0001-01-01T00:00:00Z') - duration('1s')", "timestamp out of range"),
    ("timestamp('9999-12-31T23:59:59Z') + duration('1s')", "timestamp out of range"),
    ("duration('1s') + timestamp('9999-12-31T23:59:59.999999Z')", "timestamp out of range"),
    ("timestamp(253402300800)", "timestamp out of range"),
    ("timestamp(-62135596801)", "timestamp out of range"),
    ("timestamp(dyn('0000-01-01T00:00:00Z'))", "out of range"),
    ("timestamp(dyn('9999-12-31T23:59:59-01:00'))", "out of range"),
    ("timestamp(dyn('10000-01-01T00:00:00Z'))", "invalid timestamp"),
    ("duration(dyn('9223372036.854775808s'))", "out of range"),
    ("duration(dyn('-9223372036.854775809s'))", "out of range"),
    ("duration('5000000000s') + duration('5000000000s')", "duration out of range"),
    ("-duration('5000000000s') - duration('5000000000s')", "duration out of range"),
    ("duration('-9223372036.854775s') - duration('1s')", "duration out of range"),
    ("timestamp('9999-12-31T23:59:59Z') - timestamp('0001-01-01T00:00:00Z')", "duration out of"),
    ("timestamp('0001-01-01T00:00:00Z') - timestamp('9999-12-31T23:59:59Z')", "duration out of"),
]
INVALID_TIME: list[Case] = [
    ("timestamp('2024-13-01T00:00:00Z')", "out of range"),
    ("duration('320000000000s')", "out of range"),
    ("duration('9223372037s')", "out of range"),
]


def _rows(*tables: tuple[str, list[Case]]) -> list[Any]:
    return [
        pytest.param(text, expected, id=f"{area}: {text[:60]}")
        for area, cases in tables
        for text, expected in cases
    ]


@pytest.mark.parametrize(
    ("text", "expected"), _rows(("fields", FIELDS), ("numeric", NUMERIC), ("time", TIME))
)
def test_value(text: str, expected: Any) -> None:
    expect_value(text, expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    _rows(("fields", FIELD_ERRORS), ("numeric", NUMERIC_ERRORS), ("time", TIME_ERRORS)),
)
def test_error(text: str, fragment: str) -> None:
    expect_error(text, fragment)


@pytest.mark.parametrize(
    ("text", "fragment"), _rows(("fields", INVALID_FIELDS), ("time", INVALID_TIME))
)
def test_invalid(text: str, fragment: str) -> None:
    expect_invalid(text, fragment)


EVENT = {"data": {"content-type": "application/json", "foo.txt": 1, "if": "x"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("event.data.`content-type` == 'application/json'", True),
        ("has(event.data.`foo.txt`) && event.data.if == 'x'", True),
        ("event.data.`content-type` == async.data.`content-type`", False),
        ("has(async.data.`foo.txt`) || event.data.`foo.txt` == 1", True),
    ],
)
def test_quoted_fields_with_variables(text: str, expected: bool) -> None:
    variables = {"event": EVENT, "async": {"data": {"content-type": "text/plain"}}}
    expect_value(text, expected, variables)


def test_partial_evaluation_renders_quoted_fields() -> None:
    program = compile_cel("event.data.`content-type` == async.data.`content-type`")
    waiting = program.substitute("event", EVENT)
    assert waiting.text == '"application/json" == async.data.`content-type`'
    assert compile_cel(waiting.text).matches({"async": {"data": EVENT["data"]}})
    kept = compile_cel("async.`in`.`a b` == event.if").substitute("event", {"if": 1})
    assert kept.text == "async.`in`.`a b` == 1"
    assert kept.variables == {"async"}


def test_variable_checks_understand_quoted_fields() -> None:
    program = _cel.check("event.data.`user-id` == async.`in`", allowed={"event", "async"})
    assert program.variables == {"event", "async"}
    with pytest.raises(ExpressionError, match="unknown variable 'evnt'"):
        _cel.check("evnt.`user-id` == 1", allowed={"event"})


def test_function_options_take_quoted_fields() -> None:
    client = stepline.Client("shop", is_production=False)
    declared = client.function(
        id="quoted",
        trigger=stepline.TriggerEvent(event="a/b", expression="has(event.data.`foo.txt`)"),
        concurrency=stepline.Concurrency(limit=1, key="event.data.`tenant-id`"),
        cancel=stepline.Cancel(event="a/c", if_exp="async.data.`x-id` == event.data.`x-id`"),
    )(lambda ctx: None)
    assert declared.composite_id == "shop-quoted"
    wrong = stepline.Concurrency(limit=1, key="async.data.`tenant-id`")
    with pytest.raises(stepline.ConfigError, match="unknown variable 'async'"):
        client.function(id="wrong", trigger=stepline.TriggerEvent(event="a/b"), concurrency=wrong)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"a.b.c": "yeah"}, "yeah"),
        ({"a.b": {"c": "yeah"}}, "yeah"),
        ({"a.b.c": "yeah", "a.b": {"c": "oops"}}, "yeah"),  # the longest name first
    ],
)
def test_qualified_variable_names(variables: dict[str, Any], expected: str) -> None:
    # Name resolution: with no variable `a`, `a.b.c` names a variable "a.b.c" or "a.b".
    program = compile_cel("a.b.c")
    assert program.evaluate(variables) == expected
    assert compile_cel("has(a.b.c) && a.b.c == a.b.c").evaluate({"a": {"b": {"c": 1}}}) is True


def test_unqualified_miss_names_the_root() -> None:
    with pytest.raises(_cel.EvaluationError, match="undeclared reference to 'a'"):
        compile_cel("a.b.c").evaluate({"a.b.x": 1, "b": 2})
