"""The built-in functions: size, string methods, regex matching and type conversions.

Each table maps a name to ``(arity, implementation)``, the arity a count or a tuple of the
counts accepted; the parser uses the arities to reject unknown functions and wrong argument
counts at compile time. The timestamp and duration accessors are in ``timeparts``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import functools
import math
import re
from collections.abc import Callable
from typing import Any

from stepline._cel import errors, temporal, timeparts, values

__all__ = ["GLOBAL", "MACROS", "MEMBER", "TYPE_NAMES", "Arity", "compile_regex", "validate_literal"]

Impl = Callable[..., Any]
#: How many arguments a function takes: a count, or the counts it accepts.
Arity = int | tuple[int, ...]

# Bounded so int() never meets Python's 4300-digit guard; longer is out of range anyway.
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,40}")
_DOUBLE_TEXT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.IGNORECASE,
)
_INT_EDGE = 2.0**63  # the int64 range as doubles: -2**63 <= x < 2**63 is not enough
_UINT_EDGE = 2.0**64
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TYPE_OF_KIND = {
    "null": "null_type",
    "timestamp": "google.protobuf.Timestamp",
    "duration": "google.protobuf.Duration",
}

#: Identifiers that denote types, e.g. ``type(x) == string``.
TYPE_NAMES = frozenset(
    {"bool", "bytes", "double", "int", "list", "map", "null_type", "string", "type", "uint"}
)
#: Macros with the argument counts they accept; expanded by the parser.
MACROS: dict[str, tuple[int, ...]] = {
    "all": (2,),
    "exists": (2,),
    "exists_one": (2,),
    "filter": (2,),
    "map": (2, 3),
}


def _fail(name: str, *args: Any) -> errors.EvaluationError:
    kinds = ", ".join(values.kind(arg) for arg in args)
    return errors.EvaluationError(f"no such overload: {name}({kinds})")


def _clip(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def size(value: Any) -> int:
    """Length of a string (in code points), list or map."""
    if values.kind(value) in {"string", "list", "map"}:
        return len(value)
    raise _fail("size", value)


def _strings(name: str, test: Callable[[str, str], bool]) -> Impl:
    def method(target: Any, argument: Any) -> bool:
        if isinstance(target, str) and isinstance(argument, str):
            return test(target, argument)
        raise _fail(name, target, argument)

    return method


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile (and cache) a regular expression.

    Raises:
        EvaluationError: the pattern is invalid.
    """
    try:
        return re.compile(pattern)
    # Warning: where warnings are errors, a FutureWarning about a pattern arrives as one.
    except (re.error, RecursionError, OverflowError, ValueError, Warning) as exc:
        raise errors.EvaluationError(f"invalid regular expression {pattern!r}: {exc}") from None


def matches(target: Any, pattern: Any) -> bool:
    """Whether the regex ``pattern`` matches anywhere in ``target`` (Python ``re.search``)."""
    if isinstance(target, str) and isinstance(pattern, str):
        return compile_regex(pattern).search(target) is not None
    raise _fail("matches", target, pattern)


def _ascii(name: str, table: dict[int, int]) -> Impl:
    def method(target: Any) -> str:
        if isinstance(target, str):
            return target.translate(table)
        raise _fail(name, target)

    return method


def to_int(value: Any) -> int:
    """``int(x)`` from int, uint, double (truncating), string or timestamp."""
    kind = values.kind(value)
    if kind in {"int", "uint"}:
        return values.check_int(int(value))
    if kind == "double":
        # The spec refuses a double at or beyond either end: -2**63 as a double is out too.
        if not math.isfinite(value):
            raise errors.EvaluationError(f"cannot convert {value} to int")
        if not -_INT_EDGE < value < _INT_EDGE:
            raise errors.EvaluationError(
                f"integer overflow: {format_double(value)} is beyond the int range"
            )
        return int(value)
    if kind == "string":
        if _INT_TEXT.fullmatch(value):
            return values.check_int(int(value))
        raise errors.EvaluationError(f"cannot convert {_clip(value)} to int")
    if kind == "timestamp":
        delta: _dt.timedelta = value - _EPOCH
        return delta.days * 86_400 + delta.seconds  # floor, like Go's Time.Unix
    raise _fail("int", value)


def to_uint(value: Any) -> values.UInt:
    """``uint(x)`` from int, uint, double (truncating) or string."""
    kind = values.kind(value)
    number: int | None = None
    if kind == "double" and not math.isfinite(value):
        raise errors.EvaluationError(f"cannot convert {value} to uint")
    if kind == "double" and not 0.0 <= value < _UINT_EDGE:
        # Negative fractions too: uint(-0.5) is an error, not 0u.
        raise errors.EvaluationError(
            f"unsigned integer overflow: {format_double(value)} is beyond the uint range"
        )
    if kind in {"int", "uint", "double"} or (
        kind == "string" and _INT_TEXT.fullmatch(value) and not value.startswith("-")
    ):
        number = int(value)
    if number is None:
        if kind == "string":
            raise errors.EvaluationError(f"cannot convert {_clip(value)} to uint")
        raise _fail("uint", value)
    if not 0 <= number <= values.UINT_MAX:
        raise errors.EvaluationError("unsigned integer overflow")
    return values.UInt(number)


def to_double(value: Any) -> float:
    """``double(x)`` from a number or a numeric string."""
    kind = values.kind(value)
    try:
        if kind in values.NUMERIC:
            return float(value)
        if kind == "string" and _DOUBLE_TEXT.fullmatch(value):
            result = float(value)
            if math.isinf(result) and "n" not in value.lower():
                raise errors.EvaluationError(f"double out of range: {value!r}")
            return result
        if kind == "string":
            raise errors.EvaluationError(f"cannot convert {_clip(value)} to double")
    except OverflowError:
        raise errors.EvaluationError("double out of range") from None
    raise _fail("double", value)


def to_string(value: Any) -> str:
    """``string(x)`` from a string, number, bool, timestamp or duration."""
    kind = values.kind(value)
    if kind == "string":
        return str(value)
    if kind in {"int", "uint"}:
        try:
            return str(int(value))
        except ValueError:  # beyond Python's digit limit; never a CEL int anyway
            raise errors.EvaluationError("integer out of range") from None
    if kind == "double":
        return format_double(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "timestamp":
        return temporal.format_timestamp(value)
    if kind == "duration":
        return temporal.format_duration(value)
    raise _fail("string", value)


def format_double(value: float) -> str:
    """Format a double as Go's ``%g`` does (which is what CEL's ``string()`` uses)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    digits_tuple, exponent = decimal.Decimal(repr(abs(value))).normalize().as_tuple()[1:]
    digits = "".join(map(str, digits_tuple))
    assert isinstance(exponent, int)  # finite, so never 'n'/'F'
    point = len(digits) + exponent  # position of the decimal point within the digits
    # Go's shortest %g switches to exponent form below 1e-4 and from 1e6 (precision 6).
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        power = point - 1
        return f"{sign}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def to_bool(value: Any) -> bool:
    """``bool(x)`` from a bool or a string such as ``"true"``, ``"f"``, ``"1"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise errors.EvaluationError(f"cannot convert {_clip(value)} to bool")
    raise _fail("bool", value)


def type_of(value: Any) -> values.CelType:
    """``type(x)``: the type of a value, comparable to ``int``, ``string``, ..."""
    kind = values.kind(value)
    return values.CelType(_TYPE_OF_KIND.get(kind, kind))


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def to_timestamp(value: Any) -> _dt.datetime:
    """``timestamp(x)`` from an RFC 3339 string or int seconds since the epoch."""
    kind = values.kind(value)
    if kind == "timestamp":
        return value  # type: ignore[no-any-return]
    if kind == "string":
        return temporal.parse_timestamp(value)
    if kind == "int":
        try:
            return _EPOCH + _dt.timedelta(seconds=value)
        except OverflowError:
            raise errors.EvaluationError("timestamp out of range") from None
    raise _fail("timestamp", value)


def to_duration(value: Any) -> _dt.timedelta:
    """``duration(x)`` from a Go-style duration string such as ``"1h30m"``."""
    kind = values.kind(value)
    if kind == "duration":
        return value  # type: ignore[no-any-return]
    if kind == "string":
        return temporal.parse_duration(value)
    raise _fail("duration", value)


def _identity(value: Any) -> Any:
    return value


#: Global functions: ``name(args)``.
GLOBAL: dict[str, tuple[Arity, Impl]] = {
    "bool": (1, to_bool),
    "double": (1, to_double),
    "duration": (1, to_duration),
    "dyn": (1, _identity),
    "int": (1, to_int),
    "matches": (2, matches),
    "size": (1, size),
    "string": (1, to_string),
    "timestamp": (1, to_timestamp),
    "type": (1, type_of),
    "uint": (1, to_uint),
}
#: Member functions: ``target.name(args)``; the arity excludes the target.
MEMBER: dict[str, tuple[Arity, Impl]] = {
    "contains": (1, _strings("contains", lambda target, sub: sub in target)),
    "endsWith": (1, _strings("endsWith", str.endswith)),
    "lowerAscii": (0, _ascii("lowerAscii", _ASCII_LOWER)),
    "matches": (1, matches),
    "size": (0, size),
    "startsWith": (1, _strings("startsWith", str.startswith)),
    "upperAscii": (0, _ascii("upperAscii", _ASCII_UPPER)),
    **timeparts.ACCESSORS,
}
# Functions whose string-literal argument can be checked once, at compile time.
_LITERAL_CHECKS: dict[str, Impl] = {
    "matches": compile_regex,
    "timestamp": temporal.parse_timestamp,
    "duration": temporal.parse_duration,
}


def validate_literal(function: str, argument: str) -> str | None:
    """Check a literal string argument of ``function``; returns the problem or ``None``."""
    check = _LITERAL_CHECKS.get(function)
    if check is None:
        return None
    try:
        check(argument)
    except errors.EvaluationError as exc:
        return str(exc)
    return None
