"""Conformance with the CEL specification (langdef.md): the areas of the standard language.

The project's own cases, one table per area, each written from a rule of the
specification (the comment above a group names it). Every value case is checked compiled,
unfolded, rendered back to source and partially evaluated (see ``_spec``). The newer
areas (field names, numeric edges, time ranges) are in ``test_conformance_edges.py``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.cel._spec import TYPES, Case, U, expect_error, expect_invalid, expect_value

# ------------------------------------------------------------------ comparisons

COMPARISONS: list[Case] = [
    # Equality is defined on every type; values of different types are unequal...
    ("1 == 1", True),
    ("1u != 2u", True),
    ("'a' == 'a'", True),
    ("null == null", True),
    ("true != false", True),
    ("1 == 'a'", False),
    ("null == false", False),
    ("[1, 'a', null] == [1, 'a', null]", True),
    ("[1] == [1, 2]", False),
    ("{'a': 1, 'b': 2} == {'b': 2, 'a': 1}", True),
    ("{'a': 1} == {'a': 2}", False),
    ("type(1) == int", True),
    # ...except numbers, which compare by value across int, uint and double.
    ("1 == 1.0", True),
    ("dyn(1u) == 1", True),
    ("[1] == [1.0]", True),
    ("{'k': 2u} == {'k': 2}", True),
    # NaN equals nothing, itself included.
    ("0.0 / 0.0 == 0.0 / 0.0", False),
    ("0.0 / 0.0 != 0.0 / 0.0", True),
    # Ordering: numbers (across types), strings by code point, bools with false < true.
    ("1 < 2", True),
    ("2u >= 2u", True),
    ("-1.5 <= -1.5", True),
    ("dyn(-1) < 0u", True),
    ("dyn(2) > 1.5", True),
    ("dyn(1.5) < 2u", True),
    ("'a' < 'b'", True),
    ("'a' < 'aa'", True),
    ("'B' < 'a'", True),
    ("'é' > 'z'", True),
    ("false < true", True),
    ("true <= false", False),
]
COMPARISON_ERRORS: list[Case] = [
    ("1 < 'a'", "no such overload"),
    ("[1] < [2]", "no such overload"),
    ("null < null", "no such overload"),
    ("{} <= {}", "no such overload"),
]

# ------------------------------------------------------------------ logic

LOGIC: list[Case] = [
    ("true && true", True),
    ("true && false", False),
    ("false || true", True),
    ("false || false", False),
    ("!true", False),
    ("!!true", True),
    # && and || are commutative: a decisive operand wins over an error on either side.
    ("false && 1 / 0 == 1", False),
    ("1 / 0 == 1 && false", False),
    ("true || 1 / 0 == 1", True),
    ("1 / 0 == 1 || true", True),
    ("'not a bool' && false", False),
    ("'not a bool' || true", True),
    # The conditional evaluates only the branch it takes.
    ("true ? 1 : 2", 1),
    ("false ? 1 : 2", 2),
    ("true ? 'x' : 1 / 0", "x"),
    ("false ? 1 : true ? 2 : 3", 2),
]
LOGIC_ERRORS: list[Case] = [
    ("true && 1 / 0 == 1", "division by zero"),
    ("false || 1 / 0 == 1", "division by zero"),
    ("'x' && true", "no such overload"),
    ("!1", "no such overload"),
    ("1 ? 2 : 3", "no such overload"),
]

# ------------------------------------------------------------------ strings

STRINGS: list[Case] = [
    ("'abc'.size()", 3),
    ("size('héllo')", 5),  # code points, not bytes
    ("size('')", 0),
    ("'ab' + 'cd'", "abcd"),
    ("'hello'.contains('ell')", True),
    ("'hello'.contains('')", True),
    ("'hello'.startsWith('he')", True),
    ("'hello'.endsWith('he')", False),
    ("'hello'.matches('^h.*o$')", True),
    ("matches('abc', 'b')", True),  # a search, not a full match
    ("'ABC'.lowerAscii()", "abc"),
    ("'ÀbC'.upperAscii()", "ÀBC"),
    # Literals: quotes, escapes, raw and triple-quoted strings.
    ('"it\'s"', "it's"),
    ("'\\x41\\101\\u00e9\\U0001F600'", "AAé\U0001f600"),
    ("'\\a\\b\\f\\n\\r\\t\\v\\\\\\?\\'\\\"\\`'", "\a\b\f\n\r\t\v\\?'\"`"),
    ("r'\\n'", "\\n"),
    ("R'\\d+'", "\\d+"),
    ("'''a\nb'''", "a\nb"),
    ('"""x"y"""', 'x"y'),
]
STRING_ERRORS: list[Case] = [
    ("'a' + 1", "no such overload"),
    ("dyn(1).contains('a')", "no such overload"),
    ("size(1)", "no such overload"),
]

# ------------------------------------------------------------------ lists

LISTS: list[Case] = [
    ("[1, 2, 3][1]", 2),
    ("[1, 2][1u]", 2),
    ("[[1], [2, 3]][1][0]", 2),
    ("size([1, 2])", 2),
    ("[1, 2].size()", 2),
    ("[1] + [2, 'a']", [1, 2, "a"]),
    ("[] + []", []),
    ("2 in [1, 2]", True),
    ("3 in [1, 2]", False),
    ("2.0 in [1, 2]", True),
    ("'a' in []", False),
    ("[1, [2]] == [1, [2]]", True),
]
LIST_ERRORS: list[Case] = [
    ("[][0]", "out of range"),
    ("[1][1]", "out of range"),
    ("[1][-1]", "out of range"),
    ("[1]['a']", "list index must be an int"),
    ("[1] + 1", "no such overload"),
]

# ------------------------------------------------------------------ maps

MAPS: list[Case] = [
    ("{'a': 1}['a']", 1),
    ("{'a': 1}.a", 1),
    ("{'a': {'b': 2}}.a.b", 2),
    ("{1: 'x'}[1]", "x"),
    ("{1u: 'x'}[1u]", "x"),
    ("{true: 'x', 2: 'y', 5u: 'z'}[true]", "x"),
    ("{true: 'x', 2: 'y', 5u: 'z'}[5u]", "z"),
    # Numeric keys find each other by value across int, uint and double.
    ("{1: 'x'}[1u]", "x"),
    ("{1u: 'x'}[1.0]", "x"),
    ("'a' in {'a': 1}", True),
    ("1 in {'a': 1}", False),
    ("size({'a': 1, 'b': 2})", 2),
    ("{}", {}),
]
MAP_ERRORS: list[Case] = [
    ("{'a': 1}['b']", "no such key"),
    ("{'a': 1}.b", "no such key"),
    ("{1: 'x'}[1.5]", "no such key"),
    ("{'a': 1, 'a': 2}", "repeated map key"),
    ("{[1]: 2}", "unsupported map key type"),
    ("{1.5: 2}", "unsupported map key type"),
    # A deviation: a Python dict cannot hold both true and 1 (or 1 and 1u) as keys.
    ("{true: 'x', 1: 'y'}", "collides with a key of another type"),
    ("1.a", "cannot select field 'a' from int"),
]

# ------------------------------------------------------------------ macros

MACROS: list[Case] = [
    ("has({'a': 1}.a)", True),
    ("has({'a': 1}.b)", False),
    ("has({'a': {'b': null}}.a.b)", True),
    ("[1, 2, 3].all(x, x > 0)", True),
    ("[1, 2, 3].exists(x, x > 2)", True),
    ("[1, 2, 3].exists_one(x, x > 2)", True),
    ("[1, 2, 3].exists_one(x, x > 1)", False),
    ("[1, 2, 3].filter(x, x > 1)", [2, 3]),
    ("[1, 2, 3].map(x, x * 2)", [2, 4, 6]),
    ("[1, 2, 3].map(x, x > 1, x * 10)", [20, 30]),
    ("{'a': 1, 'bb': 2}.all(k, k.size() > 0)", True),  # maps iterate their keys
    ("{'a': 1, 'bb': 2}.filter(k, k.size() == 2)", ["bb"]),
    ("[].all(x, false)", True),
    ("[].exists(x, true)", False),
    # all/exists absorb errors like && and ||.
    ("[0, 1].exists(x, 1 / x > 0)", True),
    ("[0, 1].all(x, 1 / x < 0)", False),
    ("[[1], [2]].map(l, l.map(x, x + 1))", [[2], [3]]),
    ("[1, 2].exists(x, x == 2) && [3].all(y, y == 3)", True),
]
MACRO_ERRORS: list[Case] = [
    ("[0, 1].all(x, 1 / x > 0)", "division by zero"),
    ("[1].all(x, x)", "predicate returned int"),
    ("1.all(x, true)", "cannot iterate over int"),
    ("has(1.a)", "has() cannot test field 'a' of int"),
]

# ------------------------------------------------------------------ conversions

CONVERSIONS: list[Case] = [
    ("int('123')", 123),
    ("int('-9223372036854775808')", -(2**63)),
    ("int(2.9)", 2),
    ("int(-2.9)", -2),  # toward zero
    ("int(5u)", 5),
    ("uint(5)", U(5)),
    ("uint('18446744073709551615')", U(2**64 - 1)),
    ("uint(2.9)", U(2)),
    ("double(1)", 1.0),
    ("double(2u)", 2.0),
    ("double('1.5')", 1.5),
    ("double('-1e3')", -1000.0),
    ("string(-1)", "-1"),
    ("string(1u)", "1"),
    ("string(1.5)", "1.5"),
    ("string(true)", "true"),
    ("string('s')", "s"),
    ("bool('true')", True),
    ("bool('f')", False),
    ("bool(true)", True),
    ("dyn([1])", [1]),
    ("type(1) == int && type(1u) == uint && type(1.0) == double", True),
    ("type('a') == string && type(true) == bool && type(null) == null_type", True),
    ("type([]) == list && type({}) == map && type(int) == type", True),
    ("type(type(1)) == type(string)", True),
    ("type(1)", TYPES["int"]),
]
CONVERSION_ERRORS: list[Case] = [
    ("int(dyn(' 1'))", "cannot convert"),
    ("int(dyn('1.5'))", "cannot convert"),
    ("int(dyn('9223372036854775808'))", "integer overflow"),
    ("uint(dyn('-1'))", "cannot convert"),
    ("uint(dyn('18446744073709551616'))", "unsigned integer overflow"),
    ("double(dyn('one'))", "cannot convert"),
    ("bool(dyn('yes'))", "cannot convert"),
    ("int([])", "no such overload"),
]

# ------------------------------------------------------------------ integer math

INTEGER_MATH: list[Case] = [
    ("1 + 2", 3),
    ("5 - 7", -2),
    ("6 * -7", -42),
    ("7 / 2", 3),
    ("-7 / 2", -3),  # truncated toward zero
    ("7 % 3", 1),
    ("-7 % 3", -1),  # the sign of the dividend
    ("7 % -3", 1),
    ("-(-5)", 5),
    ("--------------------------------19", 19),
    ("9223372036854775807", 2**63 - 1),
    ("-9223372036854775808", -(2**63)),
    ("0x7fffffffffffffff", 2**63 - 1),
    ("1u + 2u", U(3)),
    ("5u / 2u", U(2)),
    ("5u % 3u", U(2)),
    ("18446744073709551615u", U(2**64 - 1)),
    ("0xFFu", U(255)),
]
INTEGER_ERRORS: list[Case] = [
    ("1 / 0", "division by zero"),
    ("1 % 0", "modulus by zero"),
    ("1u / 0u", "division by zero"),
    ("9223372036854775807 + 1", "integer overflow"),
    ("-9223372036854775808 - 1", "integer overflow"),
    ("3037000500 * 3037000500", "integer overflow"),
    ("-9223372036854775808 / -1", "integer overflow"),
    ("-(-9223372036854775808)", "integer overflow"),
    ("0u - 1u", "unsigned integer overflow"),
    ("18446744073709551615u + 1u", "unsigned integer overflow"),
    ("1 + 1u", "no such overload"),
    ("-(1u)", "no such overload"),
]

# ------------------------------------------------------------------ floating point math

FP_MATH: list[Case] = [
    ("1.5 + 2.25", 3.75),
    ("0.1 + 0.2", 0.30000000000000004),
    ("5.5 - 0.5", 5.0),
    ("2.0 * 3.5", 7.0),
    ("7.0 / 2.0", 3.5),
    ("-(1.5)", -1.5),
    ("1.0 / 0.0", math.inf),  # IEEE 754
    ("-1.0 / 0.0", -math.inf),
    ("0.0 / 0.0", math.nan),
    ("1e308 * 10.0", math.inf),
    (".5 + 1e3 + 1E-1", 1000.6),
    ("double('NaN') != double('NaN')", True),
    ("string(1e21)", "1e+21"),
    ("string(0.000001)", "1e-06"),
    ("string(123456.0)", "123456"),
]
FP_ERRORS: list[Case] = [
    ("1.0 % 1.0", "no such overload"),
    ("1.0 + 'a'", "no such overload"),
]

# ------------------------------------------------------------------ parsing

PARSING: list[Case] = [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("10 - 4 - 3", 3),  # left associative
    ("true || false && false", True),  # && binds tighter than ||
    ("1 < 2 == true", True),
    ("-2 * 3", -6),
    ("((((((((((((((((((((((((((((((((7))))))))))))))))))))))))))))))))", 7),
    ("size([[[[[[[[[[[[0]]]]]]]]]]]])", 1),
    ("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16][16]", 16),
    (" || ".join(["false"] * 31 + ["true"]), True),
    (" && ".join(["true"] * 31 + ["false"]), False),
    ("\t1\n+\r2\f", 3),
    ("1 + // a comment\n 2", 3),
    ("int(uint(int(uint(int(uint(7))))))", 7),
    ("{'a': 1,}.a + [1,][0]", 2),  # trailing commas
]
PARSE_ERRORS: list[Case] = [
    ("1 +", "unexpected end of input"),
    ("(1", "unclosed '('"),
    ("1 = 1", "did you mean '=='?"),
    ("a.", "expected a field name"),
    ("for", "reserved word"),
    ("[1, 2", "unclosed '['"),
    ("'abc", "unterminated string literal"),
    ("9223372036854775808", "integer literal out of range"),
    ("18446744073709551616u", "uint literal out of range"),
    ("1e400", "double literal out of range"),
    ("unknown(1)", "unknown function"),
]

VALUES = {
    "comparisons": COMPARISONS,
    "logic": LOGIC,
    "strings": STRINGS,
    "lists": LISTS,
    "maps": MAPS,
    "macros": MACROS,
    "conversions": CONVERSIONS,
    "integer_math": INTEGER_MATH,
    "fp_math": FP_MATH,
    "parsing": PARSING,
}
ERRORS = {
    "comparisons": COMPARISON_ERRORS,
    "logic": LOGIC_ERRORS,
    "strings": STRING_ERRORS,
    "lists": LIST_ERRORS,
    "maps": MAP_ERRORS,
    "macros": MACRO_ERRORS,
    "conversions": CONVERSION_ERRORS,
    "integer_math": INTEGER_ERRORS,
    "fp_math": FP_ERRORS,
}


def _rows(tables: dict[str, list[Case]]) -> list[Any]:
    return [
        pytest.param(text, expected, id=f"{area}: {text[:60]}")
        for area, cases in tables.items()
        for text, expected in cases
    ]


@pytest.mark.parametrize(("text", "expected"), _rows(VALUES))
def test_value(text: str, expected: Any) -> None:
    expect_value(text, expected)


@pytest.mark.parametrize(("text", "fragment"), _rows(ERRORS))
def test_error(text: str, fragment: str) -> None:
    expect_error(text, fragment)


@pytest.mark.parametrize(("text", "fragment"), _rows({"parsing": PARSE_ERRORS}))
def test_parse_error(text: str, fragment: str) -> None:
    expect_invalid(text, fragment)


def test_variables_take_every_path() -> None:
    variables = {"x": {"n": 2, "tags": ["a", "b"]}, "y": 3}
    expect_value("x.n * y + size(x.tags)", 8, variables)
    expect_value("x.tags.exists(t, t == 'b') && y > x.n", True, variables)
    expect_error("x.missing + y", "no such key", variables)
