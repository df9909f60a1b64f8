"""Conformance with the CEL specification: the timestamp and duration accessors.

The project's own cases, written from the specification's rules (langdef.md: *Timezones*
and the getFullYear ... getMilliseconds rows of the standard definitions), with the rows of
its conformance file timestamps.textproto among them. Every case is checked compiled,
unfolded, rendered back to source and partially evaluated (see ``_spec``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from stepline._cel import compile as compile_cel
from tests.cel._spec import UTC, Case, expect_error, expect_invalid, expect_value

T = "timestamp('2009-02-13T23:31:30Z')"  # Friday, 2009-02-13 23:31:30 UTC (1234567890)

# ------------------------------------------------------------------ timestamps in UTC

#: With no argument each accessor reads the field in UTC; months, days of the month and days
#: of the year count from zero, getDate() from one, and Sunday is day 0 of the week.
IN_UTC: list[Case] = [
    (f"{T}.getDate()", 13),
    (f"{T}.getDayOfMonth()", 12),
    (f"{T}.getDayOfWeek()", 5),
    (f"{T}.getDayOfYear()", 43),
    (f"{T}.getFullYear()", 2009),
    (f"{T}.getHours()", 23),
    ("timestamp('2009-02-13T23:31:20.123456789Z').getMilliseconds()", 123),
    (f"{T}.getMinutes()", 31),
    (f"{T}.getMonth()", 1),
    (f"{T}.getSeconds()", 30),
    # The first and last day of a year, a leap day, and a Sunday.
    ("timestamp('2024-01-01T00:00:00Z').getDayOfYear()", 0),
    ("timestamp('2024-01-01T00:00:00Z').getMonth()", 0),
    ("timestamp('2024-01-01T00:00:00Z').getDayOfMonth()", 0),
    ("timestamp('2024-01-01T00:00:00Z').getDate()", 1),
    ("timestamp('2024-12-31T23:59:59.999Z').getDayOfYear()", 365),
    ("timestamp('2023-12-31T00:00:00Z').getDayOfYear()", 364),
    ("timestamp('2024-02-29T12:00:00Z').getMonth()", 1),
    ("timestamp('2024-12-31T23:59:59.999Z').getMilliseconds()", 999),
    ("timestamp('2024-03-10T00:00:00Z').getDayOfWeek()", 0),
    ("timestamp('2024-03-16T00:00:00Z').getDayOfWeek()", 6),
    # An offset in the timestamp's text only moves the instant; fields are still read in UTC.
    ("timestamp('2024-01-01T01:30:00+02:00').getHours()", 23),
    ("timestamp('2024-01-01T01:30:00+02:00').getFullYear()", 2023),
    # The ends of the range.
    ("timestamp('0001-01-01T00:00:00Z').getDayOfWeek()", 1),
    ("timestamp('9999-12-31T23:59:59Z').getFullYear()", 9999),
    # Results are ints, usable in arithmetic and comparisons.
    (f"{T}.getMonth() + 1 == 2", True),
    (f"type({T}.getHours()) == int", True),
    (f"[{T}].map(t, t.getMinutes())", [31]),
]

# ------------------------------------------------------------------ time zones

#: A zone is "UTC", a long name of the time zone database, or a fixed offset from UTC. The
#: specification's own cases also write an offset without its sign ('02:00': east).
IN_ZONES: list[Case] = [
    (f"{T}.getDate('Australia/Sydney')", 14),
    (f"{T}.getDayOfMonth('US/Central')", 12),
    (f"{T}.getDayOfMonth('+11:00')", 13),
    ("timestamp('2009-02-13T02:00:00Z').getDayOfMonth('-02:30')", 11),
    ("timestamp('2009-02-13T02:00:00Z').getDayOfMonth('America/St_Johns')", 11),
    (f"{T}.getDayOfWeek('UTC')", 5),
    (f"{T}.getDayOfYear('US/Central')", 43),
    (f"{T}.getFullYear('-09:30')", 2009),
    (f"{T}.getHours('02:00')", 1),
    (f"{T}.getMinutes('Asia/Kathmandu')", 16),
    (f"{T}.getMonth('UTC')", 1),
    (f"{T}.getSeconds('-00:00')", 30),
    # Fixed offsets east and west, with minutes.
    (f"{T}.getHours('+05:30')", 5),
    (f"{T}.getMinutes('+05:30')", 1),
    (f"{T}.getHours('-08:00')", 15),
    (f"{T}.getDayOfWeek('+05:30')", 6),
    ("timestamp('2024-01-01T03:00:00Z').getFullYear('-08:00')", 2023),
    ("timestamp('2024-01-01T03:00:00Z').getDayOfYear('-08:00')", 364),
    ("timestamp('2024-01-01T03:00:00Z').getMonth('-08:00')", 11),
    ("timestamp('2024-01-01T03:00:00Z').getDayOfWeek('-08:00')", 0),
    ("timestamp('2024-01-01T00:00:00.250Z').getMilliseconds('Asia/Kolkata')", 250),
    # A named zone follows its daylight saving rules: Los Angeles is UTC-8 in winter and
    # UTC-7 in summer; the zone's own offset decides the day too.
    ("timestamp('2024-01-15T20:00:00Z').getHours('America/Los_Angeles')", 12),
    ("timestamp('2024-07-15T20:00:00Z').getHours('America/Los_Angeles')", 13),
    ("timestamp('2024-03-10T09:59:59Z').getHours('America/Los_Angeles')", 1),
    ("timestamp('2024-03-10T10:00:00Z').getHours('America/Los_Angeles')", 3),
    ("timestamp('2024-07-01T06:00:00Z').getDate('America/Los_Angeles')", 30),
    ("timestamp('2024-07-01T06:00:00Z').getDate('Europe/Paris')", 1),
    # Near the ends of the range a zone can reach year 0 (a leap year) or year 10000.
    ("timestamp('0001-01-01T00:00:00Z').getFullYear('-08:00')", 0),
    ("timestamp('0001-01-01T00:00:00Z').getMonth('-08:00')", 11),
    ("timestamp('0001-01-01T00:00:00Z').getDate('-08:00')", 31),
    ("timestamp('0001-01-01T00:00:00Z').getDayOfYear('-08:00')", 365),
    ("timestamp('0001-01-01T00:00:00Z').getDayOfWeek('-08:00')", 0),
    ("timestamp('9999-12-31T23:00:00Z').getFullYear('+05:00')", 10000),
    ("timestamp('9999-12-31T23:00:00Z').getDayOfYear('Asia/Tokyo')", 0),
    ("timestamp('9999-12-31T23:00:00Z').getDayOfWeek('Asia/Tokyo')", 6),
    ("timestamp('9999-12-31T23:00:00Z').getHours('Asia/Tokyo')", 8),
    # An unknown zone is an error at evaluation, which && and || can absorb.
    (f"false && {T}.getHours('Mars/Olympus') == 1", False),
    (f"{T}.getHours('Mars/Olympus') == 1 || true", True),
]

# ------------------------------------------------------------------ durations

#: getHours(), getMinutes() and getSeconds() of a duration are the whole duration in that
#: unit, truncated toward zero; getMilliseconds() is the millisecond part of the second
#: (langdef: "0-999"; the conformance case gives 321 for 123.321456789s), with its sign.
DURATIONS: list[Case] = [
    ("duration('10000s').getHours()", 2),
    ("duration('3730s').getMinutes()", 62),
    ("duration('3730s').getSeconds()", 3730),
    ("duration('123.321456789s').getMilliseconds()", 321),
    ("duration('0s').getHours()", 0),
    ("duration('59m59s').getHours()", 0),
    ("duration('36h').getHours()", 36),
    ("duration('1.999s').getSeconds()", 1),
    ("duration('1.999s').getMilliseconds()", 999),
    ("duration('2.5ms').getMilliseconds()", 2),
    ("duration('999us').getMilliseconds()", 0),
    ("duration('-5400s').getHours()", -1),
    ("duration('-90s').getMinutes()", -1),
    ("duration('-1.5s').getSeconds()", -1),
    ("duration('-1.5s').getMilliseconds()", -500),
    ("duration('2562047h').getHours()", 2562047),
    ("(timestamp('2024-03-01T00:00:00Z') - timestamp('2024-02-01T00:00:00Z')).getHours()", 696),
]

# ------------------------------------------------------------------ errors

ERRORS: list[Case] = [
    # Zones: an unknown name, a malformed or impossible offset, a path, the wrong case.
    (f"{T}.getHours('Mars/Olympus')", "unknown time zone 'Mars/Olympus'"),
    (f"{T}.getHours('utc')", "unknown time zone"),
    (f"{T}.getHours('')", "unknown time zone"),
    (f"{T}.getHours('America')", "unknown time zone"),
    (f"{T}.getHours('../etc/passwd')", "unknown time zone"),
    (f"{T}.getHours('/etc/localtime')", "unknown time zone"),
    (f"{T}.getHours('+5:30')", "unknown time zone"),
    (f"{T}.getHours('+05:30:00')", "unknown time zone"),
    (f"{T}.getHours('+24:00')", "invalid time zone offset"),
    (f"{T}.getHours('+05:60')", "invalid time zone offset"),
    (f"{T}.getHours('x' * 100)", "no such overload"),  # string * int is no overload first
    (f"{T}.getHours('{'A/' * 40}B')", "unknown time zone"),
    # The zone must be a string.
    (f"{T}.getHours(2)", "no such overload: getHours(timestamp, int)"),
    (f"{T}.getHours(null)", "no such overload: getHours(timestamp, null)"),
    # Durations take no zone and have no calendar fields.
    ("duration('1h').getHours('UTC')", "no such overload: getHours(duration, string)"),
    ("duration('1h').getFullYear()", "no such overload: getFullYear(duration)"),
    ("duration('1h').getDayOfWeek()", "no such overload: getDayOfWeek(duration)"),
    # Nothing else has these methods.
    ("'2024-01-01T00:00:00Z'.getFullYear()", "no such overload: getFullYear(string)"),
    ("1.getHours()", "no such overload: getHours(int)"),
    ("{'hours': 1}.getHours()", "no such overload: getHours(map)"),
]

INVALID: list[Case] = [
    (f"{T}.getHours('UTC', 'UTC')", "'.getHours()' takes 0 or 1 arguments, got 2"),
    ("getHours(timestamp('2009-02-13T23:31:30Z'))", "unknown function 'getHours()'"),
    (f"{T}.getWeekday()", "unknown method '.getWeekday()'"),
    # The one-argument functions keep their message.
    ("'a'.startsWith()", "'.startsWith()' takes 1 argument, got 0"),
]


def _rows(*tables: tuple[str, list[Case]]) -> list[Any]:
    return [
        pytest.param(text, expected, id=f"{area}: {text[:70]}")
        for area, cases in tables
        for text, expected in cases
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    _rows(("utc", IN_UTC), ("zones", IN_ZONES), ("durations", DURATIONS)),
)
def test_value(text: str, expected: Any) -> None:
    expect_value(text, expected)


@pytest.mark.parametrize(("text", "fragment"), _rows(("errors", ERRORS)))
def test_error(text: str, fragment: str) -> None:
    expect_error(text, fragment)


@pytest.mark.parametrize(("text", "fragment"), _rows(("invalid", INVALID)))
def test_invalid(text: str, fragment: str) -> None:
    expect_invalid(text, fragment)


PARIS_SUMMER = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        # The method form on variables, the zone a variable too.
        (
            "t.getHours(tz)",
            {"t": dt.datetime(2009, 2, 13, 23, 31, 30, tzinfo=UTC), "tz": "02:00"},
            1,
        ),
        (
            "t.getDayOfWeek(tz) == 6",
            {"t": dt.datetime(2009, 2, 13, 23, tzinfo=UTC), "tz": "Asia/Tokyo"},
            True,
        ),
        # A datetime in another zone is the same instant: fields are read in UTC by default.
        ("t.getHours()", {"t": dt.datetime(2024, 7, 1, 1, 0, tzinfo=PARIS_SUMMER)}, 23),
        ("t.getDate('Europe/Paris')", {"t": dt.datetime(2024, 7, 1, 1, 0, tzinfo=PARIS_SUMMER)}, 1),
        # The specification's duration case binds a Duration of 123s and 321456789ns.
        ("x.getMilliseconds()", {"x": dt.timedelta(seconds=123, microseconds=321456)}, 321),
        (
            "x.getSeconds() * 1000 + x.getMilliseconds()",
            {"x": dt.timedelta(seconds=-2, milliseconds=-5)},
            -2005,
        ),
        (
            "event.data.at.getMonth('UTC') + 1",
            {"event": {"data": {"at": dt.datetime(2024, 12, 1, tzinfo=UTC)}}},
            12,
        ),
    ],
)
def test_variables(text: str, variables: dict[str, Any], expected: Any) -> None:
    expect_value(text, expected, variables)


def test_unknown_zone_in_a_variable_fails_at_evaluation() -> None:
    variables = {"t": dt.datetime(2024, 1, 1, tzinfo=UTC), "tz": "Nowhere/Special"}
    expect_error("t.getHours(tz)", "unknown time zone 'Nowhere/Special'", variables)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{T}.getHours('02:00') == x", "1 == x"),
        ("x < duration('3730s').getMinutes()", "x < 62"),
        # A failing accessor stays in place, to fail (or be absorbed) at evaluation.
        (
            f"{T}.getHours('Mars/Olympus') == x",
            f'{T.replace(chr(39), chr(34))}.getHours("Mars/Olympus") == x',
        ),
        ("x.getDayOfWeek('America/New_York') == 0", 'x.getDayOfWeek("America/New_York") == 0'),
    ],
)
def test_constant_accessors_fold(text: str, expected: str) -> None:
    program = compile_cel(text).substitute("unused", 0)
    assert program.text == expected
    assert compile_cel(program.text).substitute("unused", 0).text == expected


def test_substituting_the_timestamp_folds_to_a_constant() -> None:
    program = compile_cel("t.getDayOfWeek('America/Los_Angeles') == 5 && x.y == 1")
    friday = dt.datetime(2009, 2, 14, 1, tzinfo=UTC)  # still Friday in Los Angeles
    assert program.substitute("t", friday).text == "x.y == 1"
    assert program.substitute("t", friday + dt.timedelta(days=1)).is_constant_false
