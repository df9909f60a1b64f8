"""Parsing: the public surface, literals, precedence, and precise compile-time errors."""

from __future__ import annotations

import math
import pickle
import types
from typing import Any

import pytest

import stepline._cel as cel
from stepline._cel import CelError, EvaluationError, ExpressionError, check
from stepline._cel import compile as compile_cel
from stepline._cel.parser import MAX_DEPTH
from stepline._cel.values import CelType, UInt

# ---------------------------------------------------------------- public surface


def test_public_surface_is_pinned() -> None:
    assert cel.__all__ == [
        "CelError",
        "EvaluationError",
        "ExpressionError",
        "Program",
        "check",
        "compile",
    ]
    assert all(getattr(cel, name) is not None for name in cel.__all__)


def test_error_hierarchy() -> None:
    assert issubclass(ExpressionError, CelError)
    assert issubclass(ExpressionError, ValueError)
    assert issubclass(EvaluationError, CelError)
    assert not issubclass(EvaluationError, ExpressionError)


def test_compile_rejects_non_strings() -> None:
    with pytest.raises(TypeError, match="expression must be a str, got int"):
        compile_cel(42)  # type: ignore[arg-type]


def test_compile_is_cached_and_keeps_text() -> None:
    program = compile_cel("event.data.id == 'x'")
    assert compile_cel("event.data.id == 'x'") is program
    assert program.text == "event.data.id == 'x'"
    assert repr(program) == "Program(\"event.data.id == 'x'\")"


# ---------------------------------------------------------------- accepted expressions


@pytest.mark.parametrize(
    ("text", "variables"),
    [
        ("event.data.function_id == 'app-fn'", {"event"}),
        ('async.data.correlation_id == "run.abc"', {"async"}),
        ("event.data.userId == async.data.userId", {"event", "async"}),
        ("event.data.amount > 100 && event.data.plan != 'free'", {"event"}),
        ("event.data.plan == 'enterprise' ? 120 : 0", {"event"}),
        ("event.data.account_id + '-' + event.data.user_id", {"event"}),
        ("event.data.items.exists(i, i.sku == async.data.sku)", {"event", "async"}),
        ("has(event.data.x) && size(event.data.x) > 0", {"event"}),
        ("event.name.startsWith('app/') || 'x' in event.data.tags", {"event"}),
        ("[1, 2][0] == {'a': (1)}['a']", set()),
        (".event.data", {"event"}),  # a leading dot names a root variable
        ("event // trailing comment\n.data", {"event"}),
        ("[1, 2].map(x, x * y)", {"y"}),
        ("[[1]].all(x, x.all(x, x > 0))", set()),
        ("type(event) == map", {"event"}),
    ],
)
def test_variables(text: str, variables: set[str]) -> None:
    assert compile_cel(text).variables == frozenset(variables)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # integers
        ("0", 0),
        ("42", 42),
        ("007", 7),
        ("0x1F", 31),
        ("0XfF", 255),
        ("-7", -7),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("1u", UInt(1)),
        ("0x10U", UInt(16)),
        ("18446744073709551615u", UInt(2**64 - 1)),
        # doubles
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1E+3", 1000.0),
        ("2.5e-1", 0.25),
        ("-0.5", -0.5),
        # constants
        ("true", True),
        ("false", False),
        ("null", None),
        # strings and quoting
        ("'single'", "single"),
        ('"double"', "double"),
        ("'it\"s'", 'it"s'),
        ('"it\'s"', "it's"),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        ("'''tri'ple'''", "tri'ple"),
        ('"""multi\nline"""', "multi\nline"),
        (r"r'\d+\n'", r"\d+\n"),
        (r'R"C:\path"', r"C:\path"),
        (r"r'''raw ' \n'''", r"raw ' \n"),
        ("'héllo ✓'", "héllo ✓"),
        # escapes
        (r"'\a\b\f\n\r\t\v'", "\a\b\f\n\r\t\v"),
        (r"'\\ \' \" \` \?'", "\\ ' \" ` ?"),
        (r"'\x41\X42'", "AB"),
        (r"'\u00e9'", "é"),
        (r"'\U0001F600'", "\U0001f600"),
        (r"'\101\060'", "A0"),
        # lists and maps, with CEL's optional trailing commas
        ("[]", []),
        ("[1, 'a', null]", [1, "a", None]),
        ("[1, 2,]", [1, 2]),
        ("{}", {}),
        ("{'a': 1, 'b': [2]}", {"a": 1, "b": [2]}),
        ("{'a': 1,}", {"a": 1}),
        ("{1: 'one', 2u: 'x'}.size()", 2),
        # type denotations
        ("int", CelType("int")),
        ("null_type", CelType("null_type")),
    ],
)
def test_literals(text: str, expected: Any) -> None:
    result = compile_cel(text).evaluate({})
    assert result == expected
    assert type(result) is type(expected)


def test_negative_zero_literal() -> None:
    assert math.copysign(1.0, compile_cel("-0.0").evaluate({})) == -1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("64 / 4 / 2", 8),
        ("7 % 4 * 2", 6),
        ("2 * 3 % 4", 2),
        ("-2 * 3", -6),
        ("-(2 + 3)", -5),
        ("--2", 2),
        ("- -2", 2),
        ("!!true", True),
        ("!true || true", True),
        ("true || false && false", True),
        ("(true || false) && false", False),
        ("false && true || true", True),
        ("1 < 2 == true", True),
        ("1 + 2 in [3]", True),
        ("'a' + 'b' == 'ab'", True),
        ("1 + 1 == 2 && 2 * 2 == 4", True),
        ("true ? 1 : 2", 1),
        ("false ? 1 : 2 + 3", 5),
        ("false ? 1 : true ? 2 : 3", 2),
        ("true ? (false ? 1 : 2) : 3", 2),
        ("true || false ? 'y' : 'n'", "y"),
        ("[1, 2, 3][1 + 1]", 3),
        ("{'a': {'b': 5}}.a.b * 2", 10),
        ("[1, 2].size() + size('abc')", 5),
        ("2 - 1 - -1", 2),
        ("-9223372036854775807 - 1", -(2**63)),
        ("!(1 == 2)", True),
    ],
)
def test_precedence_and_associativity(text: str, expected: Any) -> None:
    assert compile_cel(text).evaluate({}) == expected


@pytest.mark.slow
def test_long_logical_chains_stay_shallow() -> None:
    # && and || chains are n-ary, so thousands of operands do not count as nesting.
    program = compile_cel(" || ".join(f"x == {n}" for n in range(2000)))
    assert program.evaluate({"x": 1999}) is True
    assert compile_cel(" && ".join(["true"] * 2000)).evaluate({}) is True


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "reason", "column"),
    [
        # emptiness and trailing garbage
        ("", "empty expression", 1),
        ("   \t ", "empty expression", 1),
        ("event.data.x == )", "unexpected token ')'", 17),
        ("event.data.x event", "unexpected token 'event' after a complete expression", 14),
        ("1 2", "unexpected token '2' after a complete expression", 3),
        ("event.data)", "unmatched ')'", 11),
        ("a]", "unmatched ']'", 2),
        ("event.data.x ==", "unexpected end of input", 16),
        ("(", "unexpected end of input", 2),
        ("a +", "unexpected end of input", 4),
        # brackets
        ("size(event.data", "unclosed '(' from column 5: expected ',' or ')'", 16),
        ("(a", "unclosed '(' from column 1: expected ')'", 3),
        ("[1, 2)", "expected ',' or ']' to close '[' from column 1, got ')'", 6),
        ("{'a': 1", "unclosed '{' from column 1", 8),
        ("{'a' 1}", "expected ':' after a map key, got '1'", 6),
        ("a[1", "unclosed '[' from column 2: expected ']'", 4),
        ("a ? b", "expected ':' for the '?' at column 3, got end of input", 6),
        ("a ? b ? c : d : e", "expected ':' for the '?' at column 3, got '?'", 7),
        ("f(1,)", "unexpected token ')'", 5),
        # characters and operators
        ("a = 1", "unexpected character '=' (did you mean '=='?)", 3),
        ("a & b", "unexpected character '&' (did you mean '&&'?)", 3),
        ("a | b", "unexpected character '|' (did you mean '||'?)", 3),
        ("a # b", "unexpected character '#'", 3),
        ("a\x00", "unexpected character '\\x00'", 2),
        ("!-a", "unexpected token '-'", 2),
        ("-!a", "unexpected token '!'", 2),
        ("a.", "expected a field name, got end of input", 3),
        ("a.1", "unexpected token '.1' after a complete expression", 2),
        ("a.true", "'true' is a keyword; quote it to use it as a field: `true`", 3),
        ("a.in", "'in' is a keyword; quote it to use it as a field: `in`", 3),
        ("a.`b`()", "a quoted field name cannot be called", 3),
        ("`a`", "a quoted name can only be a field name", 1),
        ("a.``", "empty quoted field name", 3),
        ("a.`b", "unterminated quoted field name", 3),
        ("a.`b+c`", "unexpected character '+' in a quoted field name", 5),
        ("for", "'for' is a reserved word and cannot be an identifier", 1),
        ("in", "'in' is a reserved word and cannot be an identifier", 1),
        ("Msg{a: 1}", "message construction is not supported", 4),
        # string literals
        ("event.data.id == 'x", "unterminated string literal", 18),
        ('"abc', "unterminated string literal", 1),
        ("'''abc''", "unterminated string literal", 1),
        ("'a\nb'", "unterminated string literal (use triple quotes for newlines)", 1),
        ("'abc\\", "unterminated string literal", 5),
        (r"'\q'", "unknown escape sequence '\\q'", 2),
        (r"'a\8'", "unknown escape sequence '\\8'", 3),
        (r"'\x4'", "invalid escape '\\x': expected 2 hex digits", 2),
        (r"'\u12'", "invalid escape '\\u': expected 4 hex digits", 2),
        (r"'\uD800'", "invalid escape '\\uD800': not a code point", 2),
        (r"'\U00110000'", "invalid escape '\\U00110000': not a code point", 2),
        (r"'\19'", "invalid octal escape: expected 3 octal digits", 2),
        ("b'bytes'", "bytes literals are not supported", 1),
        ("rb'bytes'", "bytes literals are not supported", 1),
        # number literals
        ("9223372036854775808", "integer literal out of range", 1),
        ("-9223372036854775809", "integer literal out of range", 1),
        ("18446744073709551616u", "uint literal out of range", 1),
        ("1" * 50, "integer literal out of range", 1),
        ("1e999", "double literal out of range", 1),
        ("1e", "malformed exponent in number literal", 2),
        ("1e+", "malformed exponent in number literal", 2),
        ("0x", "malformed hex literal: expected hex digits after '0x'", 1),
        # functions and macros, at compile time
        ("frob(1)", "unknown function 'frob()'", 1),
        ("a.frob()", "unknown method '.frob()'", 3),
        ("math.greatest(1, 2)", "unknown method '.greatest()'", 6),
        ("size()", "size() takes 1 argument, got 0", 1),
        ("size(1, 2)", "size() takes 1 argument, got 2", 1),
        ("'a'.size(1)", "'.size()' takes 0 arguments, got 1", 5),
        ("'a'.startsWith()", "'.startsWith()' takes 1 argument, got 0", 5),
        ("matches('a')", "matches() takes 2 arguments, got 1", 1),
        ("has(a)", "has() needs a field selection such as has(event.data.field)", 5),
        ("has(a['b'])", "has() needs a field selection", 5),
        ("has(a.b, c.d)", "has() takes 1 argument, got 2", 1),
        ("l.all(x)", "'.all()' takes 2 arguments, got 1", 3),
        ("l.map(x)", "'.map()' takes 2 or 3 arguments, got 1", 3),
        ("l.exists(x.y, true)", "'.exists()' needs a variable name as its first argument", 10),
        ("l.filter(1, true)", "'.filter()' needs a variable name as its first argument", 10),
        ("exists(l, x, x)", "exists() is a macro; call it on a list: items.exists(x, ...)", 1),
        ("a.matches('[')", "invalid regular expression '['", 11),
        ("matches(a, '(')", "invalid regular expression '('", 12),
        ("timestamp('yesterday')", "invalid timestamp 'yesterday': expected RFC 3339", 11),
        ("duration('1 hour')", "invalid duration '1 hour'", 10),
    ],
)
def test_compile_errors(text: str, reason: str, column: int) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_cel(text)
    error = info.value
    assert reason in error.reason, error.reason
    assert error.column == column
    first_line, excerpt, caret = str(error).split("\n")
    assert first_line.startswith(error.reason)
    assert f"column {column} in " in first_line
    assert excerpt.startswith("  | ")
    assert caret == "  | " + " " * (column - 1) + "^"


def test_error_message_format_matches_the_contract() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_cel("event.data.x == )")
    assert str(info.value) == (
        "unexpected token ')' at column 17 in \"event.data.x == )\"\n"
        "  | event.data.x == )\n"
        "  |                 ^"
    )


def test_expression_error_survives_pickling() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_cel("a +")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.reason, copy.text, copy.position) == ("unexpected end of input", "a +", 3)
    assert copy.column == 4
    assert str(copy) == str(info.value)


def test_error_in_a_multi_line_expression_names_the_line() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_cel("event.data.a == 1 &&\n  event.data.b = 2")
    error = info.value
    assert (error.line, error.column) == (2, 16)
    assert str(error).splitlines() == [
        "unexpected character '=' (did you mean '=='?) at line 2, column 16 "
        'in "  event.data.b = 2"',
        "  |   event.data.b = 2",
        "  |                ^",
    ]


def test_long_expressions_are_shown_as_a_window() -> None:
    text = "a == 1 && " * 20 + "b ==) && c == 2" + " && d" * 20
    with pytest.raises(ExpressionError) as info:
        compile_cel(text)
    first, excerpt, caret = str(info.value).splitlines()
    assert first.startswith("unexpected token ')' at column 205 in \"...")
    assert excerpt.startswith("  | ...")
    assert excerpt.endswith("...")
    assert len(excerpt) < 80
    assert excerpt[caret.index("^")] == ")"


def test_tabs_do_not_shift_the_caret() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_cel("\ta ==\t)")
    _, excerpt, caret = str(info.value).splitlines()
    assert excerpt[caret.index("^")] == ")"


# ---------------------------------------------------------------- nesting limits


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        "{'a': " * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1),
        "size(" * (MAX_DEPTH + 1) + "'a'" + ")" * (MAX_DEPTH + 1),
        "1" + " + 1" * (MAX_DEPTH + 1),
        "!" * (MAX_DEPTH + 1) + "true",
        "-" * (MAX_DEPTH + 1) + "x",
        "a" + ".b" * (MAX_DEPTH + 1),
        "a" + "[0]" * (MAX_DEPTH + 1),
        "a" + ".size()" * (MAX_DEPTH + 1),
        "a ? b : " * (MAX_DEPTH + 1) + "c",
        # far beyond: still an ExpressionError, never a RecursionError
        "(" * 50_000,
        "[" * 50_000,
        "!" * 50_000 + "x",
        "a" + ".b" * 50_000,
        "1" + " + 1" * 50_000,
    ],
)
def test_deep_nesting_is_rejected_cleanly(text: str) -> None:
    with pytest.raises(ExpressionError, match=r"nested too deeply \(limit 100\)"):
        compile_cel(text)


@pytest.mark.parametrize(
    "text",
    [
        "(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1),
        "1" + " + 1" * (MAX_DEPTH - 2),
        "a" + ".b" * (MAX_DEPTH - 2),
    ],
)
def test_nesting_up_to_the_limit_is_accepted(text: str) -> None:
    compile_cel(text)


# ---------------------------------------------------------------- check()


def test_check_accepts_allowed_variables() -> None:
    program = check("event.data.id == async.data.id", allowed={"event", "async"})
    assert program.variables == {"event", "async"}


@pytest.mark.parametrize(
    ("text", "allowed", "reason", "column"),
    [
        (
            "event.data.id == job.id",
            ("event", "async"),
            "unknown variable 'job' (allowed here: async, event)",
            18,
        ),
        ("async.data.x == 1", ["event"], "unknown variable 'async' (allowed here: event)", 1),
        ("x", (), "unknown variable 'x' (allowed here: none)", 1),
        # folding would drop 'other', but the text as written still names it
        ("other.x && false", {"event"}, "unknown variable 'other'", 1),
        ("[1].exists(v, v == w)", {"event"}, "unknown variable 'w'", 20),
    ],
)
def test_check_rejects_other_variables(text: str, allowed: Any, reason: str, column: int) -> None:
    with pytest.raises(ExpressionError) as info:
        check(text, allowed=allowed)
    assert reason in info.value.reason
    assert info.value.column == column


def test_check_loop_variables_are_not_free() -> None:
    check("event.data.items.all(item, item.ok)", allowed=frozenset({"event"}))


def test_check_still_reports_syntax_errors_first() -> None:
    with pytest.raises(ExpressionError, match="unexpected end of input"):
        check("job.id ==", allowed={"event"})


def test_check_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError, match="collection of names"):
        check("event", allowed="event")


def test_program_attributes_are_read_only() -> None:
    program = compile_cel("event")
    assert isinstance(program.variables, frozenset)
    with pytest.raises(AttributeError):
        program.text = "x"  # type: ignore[misc]
    assert isinstance(cel.Program, type)
    assert not isinstance(program, types.FunctionType)
