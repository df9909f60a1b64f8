"""``timestamp`` and ``duration`` values: RFC 3339 and Go-style duration strings.

Ranges are the specification's: timestamps from year 1 to 9999 (Python's ``datetime`` has
the same range) and durations within a signed 64-bit count of nanoseconds, about +/-292
years (:func:`check_duration`), so ``timestamp('9999-12-31T23:59:59Z') -
timestamp('0001-01-01T00:00:00Z')`` is an error, as in the specification's own cases.

Precision is not: Python keeps microseconds where CEL keeps nanoseconds, so digits past
the sixth of a fraction are dropped, toward zero. What that changes:
``timestamp('2024-01-01T00:00:00.123456789Z')`` formats as ``...00.123456Z``;
``duration('1ns') == duration('0s')`` and ``duration('999ns') == duration('0s')`` are true;
``duration('1.5us')`` is ``1us``; times or durations less than a microsecond apart compare
equal. Whole seconds, ``int(timestamp)`` and ordering at microsecond scale are exact.
"""

from __future__ import annotations

import datetime as _dt
import fractions
import re
from typing import Any

from stepline._cel import errors

__all__ = [
    "arithmetic",
    "check_duration",
    "format_duration",
    "format_timestamp",
    "parse_duration",
    "parse_timestamp",
]

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_MICROS = {
    "ns": fractions.Fraction(1, 1000),
    "us": fractions.Fraction(1),
    "µs": fractions.Fraction(1),
    "μs": fractions.Fraction(1),
    "ms": fractions.Fraction(1000),
    "s": fractions.Fraction(1_000_000),
    "m": fractions.Fraction(60_000_000),
    "h": fractions.Fraction(3_600_000_000),
}
# A CEL duration is a signed 64-bit count of nanoseconds (as cel-go's): about +/-292 years.
_MIN_NANOS = -(2**63)
_MAX_NANOS = 2**63 - 1


def parse_timestamp(text: str) -> _dt.datetime:
    """Parse an RFC 3339 timestamp such as ``2024-01-02T03:04:05.5Z`` into an aware UTC datetime.

    Raises:
        EvaluationError: malformed or out of range.
    """
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise errors.EvaluationError(f"invalid timestamp {text!r}: expected RFC 3339")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    offset = _dt.timedelta(0)
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        offset = _dt.timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    try:
        local = _dt.datetime(
            year, month, day, hour, minute, second, int(fraction[:6].ljust(6, "0"))
        )
        return (local - offset).replace(tzinfo=_dt.timezone.utc)
    except (ValueError, OverflowError):
        raise errors.EvaluationError(f"invalid timestamp {text!r}: out of range") from None


def format_timestamp(value: _dt.datetime) -> str:
    """Format a timestamp as RFC 3339 in UTC, with fractional seconds only when present."""
    utc = value.astimezone(_dt.timezone.utc)
    text = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_duration(text: str) -> _dt.timedelta:
    """Parse a Go duration string such as ``1h30m``, ``-1.5s`` or ``300ms``.

    Raises:
        EvaluationError: malformed or out of range.
    """
    body = text[1:] if text[:1] in {"+", "-"} else text
    if body == "0":
        return _dt.timedelta(0)
    total, position = fractions.Fraction(0), 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None or match.group(1) in {"", "."}:
            raise errors.EvaluationError(f"invalid duration {text!r}")
        total += fractions.Fraction(match.group(1)) * _UNIT_MICROS[match.group(2)]
        position = match.end()
    if not body:
        raise errors.EvaluationError(f"invalid duration {text!r}")
    if text.startswith("-"):
        total = -total
    if not _MIN_NANOS <= total * 1000 <= _MAX_NANOS:  # the exact value, before truncation
        raise errors.EvaluationError(f"invalid duration {text!r}: out of range")
    return _dt.timedelta(microseconds=int(total))


def arithmetic(op: str, left: Any, right: Any, left_kind: str, right_kind: str) -> Any:
    """``left op right`` for ``+``/``-`` over timestamps and durations, within CEL's ranges.

    Raises:
        EvaluationError: no such overload, or the result is out of range.
    """
    # Python's own range is the spec's for timestamps (years 1 to 9999: OverflowError past
    # it), but much wider for durations, which the spec keeps within about +/-292 years.
    try:
        if op == "+" and "duration" in {left_kind, right_kind}:
            result = left + right
        elif op == "-" and (right_kind == "duration" or left_kind == right_kind == "timestamp"):
            result = left - right
        else:
            raise errors.EvaluationError(f"no such overload: {left_kind} {op} {right_kind}")
    except OverflowError:
        raise errors.EvaluationError("timestamp out of range (years 1 to 9999)") from None
    if type(result) is _dt.timedelta:
        return check_duration(result)
    return result


def check_duration(value: _dt.timedelta) -> _dt.timedelta:
    """Return ``value`` if it lies within CEL's duration range (about +/-292 years).

    Raises:
        EvaluationError: it does not.
    """
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if _MIN_NANOS <= micros * 1000 <= _MAX_NANOS:
        return value
    raise errors.EvaluationError("duration out of range (about +/-292 years)")


def format_duration(value: _dt.timedelta) -> str:
    """Format a duration the way CEL does: seconds with a fraction, e.g. ``90s``, ``-1.5s``."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    seconds, rest = divmod(abs(micros), 1_000_000)
    fraction = f".{rest:06d}".rstrip("0") if rest else ""
    return f"{sign}{seconds}{fraction}s"
