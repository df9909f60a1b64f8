"""Cron schedules: parsing, fire times (with daylight saving time) and jitter."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stepline._definition import cron as _cron
from stepline._definition.triggers import TriggerCron
from stepline._errors import ConfigError

UTC = dt.timezone.utc
MINUTE = dt.timedelta(minutes=1)
FIELDS_HINT = "(minute hour day-of-month month day-of-week; no seconds field)"


def at(text: str) -> dt.datetime:
    """An aware datetime from ISO text; UTC unless the text carries an offset."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "zone", "canonical"),
    [
        ("*/5 * * * *", None, "*/5 * * * *"),
        ("  0   12 *  * 1-5 ", None, "0 12 * * 1-5"),
        ("0\t0\t*\t*\t*", None, "0 0 * * *"),
        ("0 9 1,15 jan-jun MON-FRI", None, "0 9 1,15 jan-jun MON-FRI"),
        ("0 0 ? * sun", None, "0 0 ? * sun"),
        ("TZ=Europe/Paris 0 9 * * 1-5", "Europe/Paris", "TZ=Europe/Paris 0 9 * * 1-5"),
        ("CRON_TZ=UTC 0 12 * * 5", "UTC", "TZ=UTC 0 12 * * 5"),
        ("TZ=Asia/Tokyo @daily", "Asia/Tokyo", "TZ=Asia/Tokyo 0 0 * * *"),
        ("@yearly", None, "0 0 1 1 *"),
        ("@annually", None, "0 0 1 1 *"),
        ("@monthly", None, "0 0 1 * *"),
        ("@weekly", None, "0 0 * * 0"),
        ("@daily", None, "0 0 * * *"),
        ("@midnight", None, "0 0 * * *"),
        ("@hourly", None, "0 * * * *"),
        ("0 0 29 2 *", None, "0 0 29 2 *"),
        ("0 0 31 2 1", None, "0 0 31 2 1"),
    ],
)
def test_parse_renders(text: str, zone: str | None, canonical: str) -> None:
    schedule = _cron.parse(text)
    assert (schedule.text, schedule.zone, schedule.canonical) == (text, zone, canonical)


@pytest.mark.parametrize(
    ("text", "field", "values"),
    [
        ("* * * * *", "minutes", tuple(range(60))),
        ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
        ("5/20 * * * *", "minutes", (5, 25, 45)),
        ("10-20/5 * * * *", "minutes", (10, 15, 20)),
        ("50,5,30-31 * * * *", "minutes", (5, 30, 31, 50)),
        ("*/100 * * * *", "minutes", (0,)),
        ("0 ? * * *", "hours", tuple(range(24))),
        ("0 9-17/4 * * *", "hours", (9, 13, 17)),
        ("0 0 */10 * *", "days", (1, 11, 21, 31)),
        ("0 0 1 JAN,jul,Dec *", "months", (1, 7, 12)),
        ("0 0 1 mar-MAY *", "months", (3, 4, 5)),
        ("0 0 * * Sat,sun", "weekdays", (0, 6)),
        ("0 0 * * mon-fri", "weekdays", (1, 2, 3, 4, 5)),
        ("0 0 * * tue/2", "weekdays", (2, 4, 6)),
    ],
)
def test_parse_values(text: str, field: str, values: tuple[int, ...]) -> None:
    assert getattr(_cron.parse(text), field) == values


@pytest.mark.parametrize(
    ("text", "either_day"),
    [
        ("0 0 * * *", False),
        ("0 0 13 * *", False),
        ("0 0 * * 5", False),
        ("0 0 13 * 5", True),
        ("0 0 ? * 5", False),
        ("0 0 13 * ?", False),
        ("0 0 1-31 * 0-6", True),
        # robfig/cron: */1 keeps a field unrestricted, */2 restricts it, * in a list wins.
        ("0 0 */1 * 5", False),
        ("0 0 */2 * 5", True),
        ("0 0 13 * 1,*", False),
    ],
)
def test_parse_day_rule(text: str, either_day: bool) -> None:
    assert _cron.parse(text).either_day is either_day


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
        ("* * * *", f"the schedule must have 5 fields {FIELDS_HINT}, got 4"),
        ("0 * * * * *", f"the schedule must have 5 fields {FIELDS_HINT}, got 6"),
        ("TZ=UTC", f"the schedule must have 5 fields {FIELDS_HINT}, got 0"),
        ("60 * * * *", "minute field '60' is outside 0-59"),
        ("60/5 * * * *", "minute field '60/5' is outside 0-59"),
        ("* 24 * * *", "hour field '24' is outside 0-23"),
        ("* * 0 * *", "day-of-month field '0' is outside 1-31"),
        ("* * 32 * *", "day-of-month field '32' is outside 1-31"),
        ("* * * 0 *", "month field '0' is outside 1-12"),
        ("* * * 13 *", "month field '13' is outside 1-12"),
        ("* * * * 7", "day-of-week field '7' is outside 0-6 (use 0 for Sunday)"),
        ("* * * * 1-7", "day-of-week field '1-7' is outside 0-6 (use 0 for Sunday)"),
        ("* * * * 7/2", "day-of-week field '7/2' is outside 0-6 (use 0 for Sunday)"),
        ("* * * * 8", "day-of-week field '8' is outside 0-6"),
        ("x * * * *", "minute field 'x' has 'x', which is not a number"),
        ("\uff11 * * * *", "minute field '\uff11' has '\uff11', which is not a number"),
        ("mon * * * *", "minute field 'mon' has 'mon', which is not a number"),
        ("* * * foo *", "month field 'foo' has 'foo', which is not a number or a name"),
        (
            "* * * * monday",
            "day-of-week field 'monday' has 'monday', which is not a number or a name",
        ),
        ("* * * jan-sun *", "month field 'jan-sun' has 'sun', which is not a number or a name"),
        ("0 0 L * *", "day-of-month field 'L' has 'L', which is not a number"),
        ("1,,2 * * * *", "minute field '1,,2' has '', which is not a number"),
        ("-1 * * * *", "minute field '-1' has '', which is not a number"),
        ("1-2-3 * * * *", "minute field '1-2-3' has '2-3', which is not a number"),
        ("*-5 * * * *", "minute field '*-5' has '*', which is not a number"),
        ("*/0 * * * *", "minute field '*/0' has step '0'; a step must be a positive number"),
        ("*/x * * * *", "minute field '*/x' has step 'x'; a step must be a positive number"),
        ("*/ * * * *", "minute field '*/' has step ''; a step must be a positive number"),
        ("1/2/3 * * * *", "minute field '1/2/3' has step '2/3'; a step must be a positive number"),
        ("30-10 * * * *", "minute field '30-10' has the range '30-10', which runs backwards"),
        ("* * * dec-jan *", "month field 'dec-jan' has the range 'dec-jan', which runs backwards"),
        (
            "@every 5m",
            "unsupported descriptor '@every 5m'; use one of @yearly, @annually, @monthly, "
            "@weekly, @daily, @midnight, @hourly or five fields",
        ),
        ("@reboot", "unsupported descriptor '@reboot'; use one of"),
        ("@DAILY", "unsupported descriptor '@DAILY'; use one of"),
        ("TZ=Mars/Base 0 * * * *", "time zone 'Mars/Base' is not a known IANA time zone"),
        ("CRON_TZ=../etc 0 * * * *", "time zone '../etc' is not a known IANA time zone"),
        ("TZ=", "time zone '' is not a known IANA time zone"),
        (
            "0 0 31 2 *",
            "day-of-month field '31' never falls in month field '2', so the schedule never fires",
        ),
        (
            "0 0 30,31 feb *",
            "day-of-month field '30,31' never falls in month field 'feb', so the schedule "
            "never fires",
        ),
        (
            "0 0 31 4,6,9,11 ?",
            "day-of-month field '31' never falls in month field '4,6,9,11', so the schedule "
            "never fires",
        ),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(_cron.CronError) as info:
        _cron.parse(text)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)


def test_schedule_is_frozen() -> None:
    schedule = _cron.parse("@hourly")
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.zone = "UTC"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"cron": "* * * * 7"},
            "TriggerCron.cron '* * * * 7': day-of-week field '7' is outside 0-6 (use 0 for Sunday)",
        ),
        (
            {"cron": "61 * * * *", "timezone": "UTC"},
            "TriggerCron.cron '61 * * * *': minute field '61' is outside 0-59",
        ),
        (
            {"cron": "0 0 31 2 *"},
            "TriggerCron.cron '0 0 31 2 *': day-of-month field '31' never falls in month "
            "field '2', so the schedule never fires",
        ),
        (
            {"cron": "TZ=Mars/Base @daily"},
            "TriggerCron.cron 'TZ=Mars/Base @daily': time zone 'Mars/Base' is not a known "
            "IANA time zone",
        ),
        ({"cron": "@daily", "timezone": 5}, "TriggerCron.timezone 5 is not a known IANA time zone"),
    ],
)
def test_trigger_wraps_cron_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        TriggerCron(**kwargs)
    assert str(info.value) == message


def test_trigger_keeps_the_cron_error_as_cause() -> None:
    with pytest.raises(ConfigError) as info:
        TriggerCron("0 0 30 2 *")
    assert isinstance(info.value.__cause__, _cron.CronError)


# ---------------------------------------------------------------- fire times


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        ("* * * * *", "2025-01-01T00:00:00", "2025-01-01T00:01:00"),
        ("* * * * *", "2025-01-01T00:00:59.999999", "2025-01-01T00:01:00"),
        ("* * * * *", "2025-12-31T23:59:00", "2026-01-01T00:00:00"),
        ("*/15 * * * *", "2025-01-01T00:14:59", "2025-01-01T00:15:00"),
        ("*/15 * * * *", "2025-01-01T00:45:00", "2025-01-01T01:00:00"),
        ("5/20 * * * *", "2025-01-01T00:46:00", "2025-01-01T01:05:00"),
        ("@hourly", "2025-01-01T10:00:00", "2025-01-01T11:00:00"),
        ("0 9-17 * * *", "2025-01-01T17:00:00", "2025-01-02T09:00:00"),
        ("5,35 */6 * * *", "2025-01-01T06:35:00", "2025-01-01T12:05:00"),
        ("5,35 */6 * * *", "2025-01-01T18:35:00", "2025-01-02T00:05:00"),
        # 2025-01-03 is a Friday.
        ("0 9 * * 1-5", "2025-01-03T09:00:00", "2025-01-06T09:00:00"),
        ("0 9 * * mon-fri", "2025-01-04T12:00:00", "2025-01-06T09:00:00"),
        ("0 22 * * sat", "2025-01-04T22:00:00", "2025-01-11T22:00:00"),
        ("@weekly", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),
        ("0 0 1 jan,jul *", "2025-01-01T00:00:00", "2025-07-01T00:00:00"),
        ("0 0 1 */3 *", "2025-01-01T00:00:00", "2025-04-01T00:00:00"),
        ("@monthly", "2025-01-31T12:00:00", "2025-02-01T00:00:00"),
        # Months too short for the day are skipped.
        ("0 0 31 * *", "2025-01-31T00:00:00", "2025-03-31T00:00:00"),
        ("0 0 30 * *", "2025-01-30T00:00:00", "2025-03-30T00:00:00"),
        ("0 0 31 4,6,7 *", "2025-01-01T00:00:00", "2025-07-31T00:00:00"),
        ("0 0 31 4,6,7 *", "2025-07-31T00:00:00", "2026-07-31T00:00:00"),
        # Leap days, including the skipped century year 2100.
        ("0 0 29 2 *", "2025-01-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 0 29 feb *", "2024-02-29T00:00:00", "2028-02-29T00:00:00"),
        ("0 0 29 2 *", "2096-03-01T00:00:00", "2104-02-29T00:00:00"),
        ("0 0 28-31 2 *", "2025-02-28T00:00:00", "2026-02-28T00:00:00"),
        # Both day fields restricted: either may match (2025-01-01 is a Wednesday).
        ("0 0 13 * 5", "2025-01-01T00:00:00", "2025-01-03T00:00:00"),
        ("0 0 13 * 5", "2025-01-10T00:00:00", "2025-01-13T00:00:00"),
        ("0 0 13 * 5", "2025-01-13T00:00:00", "2025-01-17T00:00:00"),
        ("0 0 31 2 1", "2025-02-01T00:00:00", "2025-02-03T00:00:00"),
        ("0 0 */2 * 1", "2025-01-01T00:00:00", "2025-01-03T00:00:00"),
        # Only one restricted: it alone decides.
        ("0 0 13 * *", "2025-01-01T00:00:00", "2025-01-13T00:00:00"),
        ("0 0 13 * ?", "2025-01-01T00:00:00", "2025-01-13T00:00:00"),
        ("0 0 ? * 5", "2025-01-01T00:00:00", "2025-01-03T00:00:00"),
        ("0 0 */1 * 1", "2025-01-01T00:00:00", "2025-01-06T00:00:00"),
        # Year rollover.
        ("59 23 31 12 *", "2025-12-31T23:59:00", "2026-12-31T23:59:00"),
        ("@yearly", "2025-06-01T00:00:00", "2026-01-01T00:00:00"),
        ("0 0 1 1 0", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),
        # The start may be in any zone; the answer is in UTC.
        ("0 12 * * *", "2025-01-01T12:30:00+09:00", "2025-01-01T12:00:00"),
        ("0 12 * * *", "2025-01-01T06:59:00-05:00", "2025-01-01T12:00:00"),
    ],
)
def test_next_after(text: str, start: str, expected: str) -> None:
    fire = _cron.parse(text).next_after(at(start))
    assert fire == at(expected)
    assert fire.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        ("TZ=UTC 0 9 * * *", "2025-01-15T00:00:00", "2025-01-15T09:00:00"),
        ("TZ=Europe/Paris 0 9 * * *", "2025-01-15T00:00:00", "2025-01-15T08:00:00"),
        ("TZ=Europe/Paris 0 9 * * *", "2025-07-15T00:00:00", "2025-07-15T07:00:00"),
        ("TZ=Europe/Paris 0 9 * * *", "2025-07-15T07:00:00", "2025-07-16T07:00:00"),
        ("TZ=Asia/Tokyo 0 0 * * *", "2025-01-01T00:00:00", "2025-01-01T15:00:00"),
        ("TZ=Asia/Kolkata 0 0 1 * *", "2025-01-01T00:00:00", "2025-01-31T18:30:00"),
        ("CRON_TZ=America/New_York 0 0 1 1 *", "2025-01-01T04:59:00", "2025-01-01T05:00:00"),
        ("TZ=America/New_York 0 0 * * 1", "2025-01-06T04:00:00", "2025-01-06T05:00:00"),
    ],
)
def test_next_after_in_zone(text: str, start: str, expected: str) -> None:
    assert _cron.parse(text).next_after(at(start)) == at(expected)


# New York: 2025-03-09 02:00 EST -> 03:00 EDT (07:00Z); 2025-11-02 02:00 EDT -> 01:00 EST
# (06:00Z). Paris: 2025-03-30 02:00 CET -> 03:00 CEST (01:00Z); 2025-10-26 03:00 CEST ->
# 02:00 CET (01:00Z).
NEW_YORK = "TZ=America/New_York"
PARIS = "TZ=Europe/Paris"


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        # A skipped wall time fires at the end of the gap, 03:00 EDT.
        (f"{NEW_YORK} 30 2 * * *", "2025-03-08T12:00:00", "2025-03-09T07:00:00"),
        (f"{NEW_YORK} 30 2 * * *", "2025-03-09T07:00:00", "2025-03-10T06:30:00"),
        (f"{NEW_YORK} 0 2 * * *", "2025-03-09T00:00:00", "2025-03-09T07:00:00"),
        (f"{NEW_YORK} 0 3 * * *", "2025-03-09T00:00:00", "2025-03-09T07:00:00"),
        # Several skipped (and the first real) wall times fire once, together.
        (f"{NEW_YORK} 0,30 2 * * *", "2025-03-09T07:00:00", "2025-03-10T06:00:00"),
        (f"{NEW_YORK} * * * * *", "2025-03-09T06:58:00", "2025-03-09T06:59:00"),
        (f"{NEW_YORK} * * * * *", "2025-03-09T06:59:00", "2025-03-09T07:00:00"),
        (f"{NEW_YORK} * * * * *", "2025-03-09T07:00:00", "2025-03-09T07:01:00"),
        # A repeated wall time fires at its first occurrence (EDT) only.
        (f"{NEW_YORK} 30 1 * * *", "2025-11-02T04:00:00", "2025-11-02T05:30:00"),
        (f"{NEW_YORK} 30 1 * * *", "2025-11-02T05:30:00", "2025-11-03T06:30:00"),
        (f"{NEW_YORK} 30 1 * * *", "2025-11-02T06:00:00", "2025-11-03T06:30:00"),
        (f"{NEW_YORK} */30 * * * *", "2025-11-02T05:30:00", "2025-11-02T07:00:00"),
        (f"{NEW_YORK} 0 * * * *", "2025-11-02T05:00:00", "2025-11-02T07:00:00"),
        (f"{NEW_YORK} * * * * *", "2025-11-02T05:59:00", "2025-11-02T07:00:00"),
        (f"{NEW_YORK} * * * * *", "2025-11-02T06:30:30", "2025-11-02T07:00:00"),
        (f"{NEW_YORK} 0 2 * * *", "2025-11-02T05:00:00", "2025-11-02T07:00:00"),
        (f"{PARIS} 30 2 * * *", "2025-03-29T12:00:00", "2025-03-30T01:00:00"),
        (f"{PARIS} 15 2 * * 0", "2025-03-29T00:00:00", "2025-03-30T01:00:00"),
        (f"{PARIS} 59 2 * * *", "2025-03-30T00:59:00", "2025-03-30T01:00:00"),
        (f"{PARIS} 30 2 * * *", "2025-10-25T12:00:00", "2025-10-26T00:30:00"),
        (f"{PARIS} 30 2 * * *", "2025-10-26T00:30:00", "2025-10-27T01:30:00"),
        (f"{PARIS} 30 2 * * *", "2025-10-26T01:10:00", "2025-10-27T01:30:00"),
        (f"{PARIS} 0 3 * * *", "2025-10-26T00:30:00", "2025-10-26T02:00:00"),
    ],
)
def test_next_after_across_dst(text: str, start: str, expected: str) -> None:
    assert _cron.parse(text).next_after(at(start)) == at(expected)


def test_next_after_chains_quickly_over_leap_days() -> None:
    schedule = _cron.parse("0 0 29 2 *")
    when = at("2025-01-01T00:00:00")
    for _ in range(200):
        when = schedule.next_after(when)
        assert (when.month, when.day) == (2, 29)
    assert when == at("2848-02-29T00:00:00")


def test_next_after_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="needs an aware datetime"):
        _cron.parse("@hourly").next_after(dt.datetime(2025, 1, 1))


def test_next_after_past_year_9999() -> None:
    with pytest.raises(OverflowError, match="before the year 10000"):
        _cron.parse("0 0 1 1 *").next_after(at("9999-06-01T00:00:00"))


# ---------------------------------------------------------------- against brute force

# Each DST zone's 2025 transitions (UTC), where the property test mostly starts.
TRANSITIONS = {
    "America/New_York": [at("2025-03-09T07:00:00"), at("2025-11-02T06:00:00")],
    "Europe/Paris": [at("2025-03-30T01:00:00"), at("2025-10-26T01:00:00")],
    # Half-hour shifts: 02:00 +11 -> 01:30 +10:30, and 02:00 +10:30 -> 02:30 +11.
    "Australia/Lord_Howe": [at("2025-04-05T15:00:00"), at("2025-10-04T15:30:00")],
}
ZONES = [None, "Asia/Kolkata", *TRANSITIONS]
HORIZON = 2 * 24 * 60  # minutes the reference scans before giving up


Field = tuple[str, frozenset[int], bool]
EVERY_DAY: Field = ("*", frozenset(range(1, 32)), True)
EVERY_MONTH: Field = ("*", frozenset(range(1, 13)), True)
EVERY_WEEKDAY: Field = ("?", frozenset(range(7)), True)


@st.composite
def cron_field(
    draw: st.DrawFn, low: int, high: int, *, star_weight: int, most: int | None = None
) -> Field:
    """(text, matching values, unrestricted) for one field, built without the parser.

    Lists and ranges use values up to ``most`` (default ``high``), to aim at some hours.
    """
    top = high if most is None else most
    kind = draw(st.sampled_from(["*"] * star_weight + ["?", "list", "range", "step"]))
    if kind in ("*", "?"):
        return kind, frozenset(range(low, high + 1)), True
    if kind == "list":
        values = draw(st.lists(st.integers(low, top), min_size=1, max_size=8))
        return ",".join(map(str, values)), frozenset(values), False
    if kind == "range":
        start = draw(st.integers(low, top))
        end = draw(st.integers(start, top))
        step = draw(st.integers(1, 4))
        text = f"{start}-{end}" + (f"/{step}" if step > 1 else "")
        return text, frozenset(range(start, end + 1, step)), False
    step = draw(st.integers(1, high - low + 1))
    return f"*/{step}", frozenset(range(low, high + 1, step)), step == 1


def reference_next(
    fields: list[frozenset[int]], either_day: bool, tz: dt.tzinfo, when: dt.datetime
) -> dt.datetime | None:
    """Scan UTC minutes for the first fire after ``when``, or None within the horizon."""
    minutes, hours, days, months, weekdays = fields

    def matches(wall: dt.datetime) -> bool:
        if wall.minute not in minutes or wall.hour not in hours or wall.month not in months:
            return False
        by_date, by_weekday = wall.day in days, wall.isoweekday() % 7 in weekdays
        return (by_date or by_weekday) if either_day else (by_date and by_weekday)

    instant = when.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE
    previous = (instant - MINUTE).astimezone(tz).replace(tzinfo=None)
    for _ in range(HORIZON):
        local = instant.astimezone(tz)
        wall = local.replace(tzinfo=None)
        # Wall times the clock jumped over since the previous minute fire now, once.
        skipped = (previous + k * MINUTE for k in range(1, (wall - previous) // MINUTE))
        if (local.fold == 0 and matches(wall)) or any(matches(w) for w in skipped):
            return instant
        previous, instant = wall, instant + MINUTE
    return None


def check_against_reference(fields: list[Field], zone: str | None, when: dt.datetime) -> None:
    text = " ".join(field[0] for field in fields)
    try:
        schedule = _cron.parse(f"TZ={zone} {text}" if zone is not None else text)
    except _cron.CronError as exc:
        # The generated fields are well formed: only an impossible day may be refused.
        assume("never fires" not in str(exc))
        raise
    tz = zoneinfo.ZoneInfo(zone) if zone is not None else UTC
    either_day = not (fields[2][2] or fields[4][2])
    expected = reference_next([field[1] for field in fields], either_day, tz, when)
    fire = schedule.next_after(when)
    if expected is None:
        assert fire > when.replace(second=0, microsecond=0) + HORIZON * MINUTE
    else:
        assert fire == expected


@pytest.mark.slow
@settings(max_examples=200, deadline=None, database=None)
@given(
    minute=cron_field(0, 59, star_weight=1),
    hour=cron_field(0, 23, star_weight=2),
    day=cron_field(1, 31, star_weight=4),
    month=cron_field(1, 12, star_weight=6),
    weekday=cron_field(0, 6, star_weight=4),
    zone=st.sampled_from(ZONES),
    when=st.datetimes(dt.datetime(2024, 1, 1), dt.datetime(2027, 12, 31), timezones=st.just(UTC)),
)
def test_next_after_matches_brute_force(
    minute: Field,
    hour: Field,
    day: Field,
    month: Field,
    weekday: Field,
    zone: str | None,
    when: dt.datetime,
) -> None:
    check_against_reference([minute, hour, day, month, weekday], zone, when)


@st.composite
def near_transition(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    """A DST zone and a start from 3 hours before one of its transitions to 1 hour after."""
    zone = draw(st.sampled_from(list(TRANSITIONS)))
    base = draw(st.sampled_from(TRANSITIONS[zone]))
    return zone, base + dt.timedelta(seconds=draw(st.integers(-3 * 3600, 3600)))


@pytest.mark.slow
@settings(max_examples=200, deadline=None, database=None)
@given(
    minute=cron_field(0, 59, star_weight=1),
    # Every transition here happens between 01:00 and 03:00 local time.
    hour=cron_field(0, 23, star_weight=1, most=4),
    start=near_transition(),
)
def test_next_after_matches_brute_force_around_dst(
    minute: Field, hour: Field, start: tuple[str, dt.datetime]
) -> None:
    zone, when = start
    check_against_reference([minute, hour, EVERY_DAY, EVERY_MONTH, EVERY_WEEKDAY], zone, when)


# ---------------------------------------------------------------- jitter


def test_jittered_is_pinned() -> None:
    # The recipe is shared by every engine node: changing it moves every jittered run.
    fire = _cron.jittered(at("2025-01-01T00:00:00"), dt.timedelta(minutes=5), "fn-1")
    assert fire == at("2025-01-01T00:01:16.188082")


def test_jittered_is_deterministic_and_bounded() -> None:
    jitter = dt.timedelta(seconds=30)
    fire = at("2025-06-01T12:00:00")
    offsets = set()
    for index in range(500):
        seed = f"app-fn-{index}"
        delayed = _cron.jittered(fire, jitter, seed)
        assert delayed == _cron.jittered(fire, jitter, seed)
        assert fire <= delayed < fire + jitter
        assert delayed.tzinfo is UTC
        offsets.add(delayed - fire)
    assert len(offsets) > 490  # spread over the window, not clumped
    assert min(offsets) < jitter / 10
    assert max(offsets) > jitter * 9 / 10


def test_jittered_depends_on_instant_not_zone() -> None:
    jitter = dt.timedelta(minutes=1)
    utc = _cron.jittered(at("2025-06-01T12:00:00"), jitter, "s")
    paris = _cron.jittered(at("2025-06-01T14:00:00+02:00"), jitter, "s")
    assert utc == paris
    later = at("2025-06-01T12:01:00")
    assert utc - at("2025-06-01T12:00:00") != _cron.jittered(later, jitter, "s") - later


@pytest.mark.parametrize("jitter", [dt.timedelta(0), dt.timedelta(microseconds=1)])
def test_jittered_without_room_is_the_fire_time(jitter: dt.timedelta) -> None:
    fire = at("2025-06-01T14:00:00+02:00")
    assert _cron.jittered(fire, jitter, "s") == at("2025-06-01T12:00:00")


@pytest.mark.parametrize(
    ("fire", "jitter", "message"),
    [
        (dt.datetime(2025, 1, 1), dt.timedelta(seconds=1), "needs an aware datetime"),
        (at("2025-01-01T00:00:00"), dt.timedelta(seconds=-1), "must not be negative"),
    ],
)
def test_jittered_rejects(fire: dt.datetime, jitter: dt.timedelta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _cron.jittered(fire, jitter, "s")
