"""Cron schedules: parse a cron expression once, then compute its fire times.

The grammar is the one the Inngest server parses with robfig/cron v3: five fields (minute,
hour, day-of-month, month, day-of-week; no seconds), an optional ``TZ=`` or ``CRON_TZ=``
zone prefix, ``@`` descriptors (sent to the server expanded into fields), month and weekday
names, ``*``/``?``, ranges, steps and lists. Day-of-week runs 0-6 only, as in robfig: a 7
is rejected rather than read as Sunday, so a schedule the SDK accepts is one the Go server
accepts too.

Fire times are wall-clock times in the schedule's zone. Daylight saving time is resolved
so that every matching wall time fires exactly once: a time skipped by a spring-forward
gap fires at the first instant after the gap, and a time repeated by a fall-back overlap
fires at its first occurrence only.
"""

from __future__ import annotations

import bisect
import calendar
import dataclasses
import datetime as _dt
import hashlib
import zoneinfo
from collections.abc import Mapping

__all__ = ["DESCRIPTORS", "TZ_PREFIXES", "CronError", "Schedule", "jittered", "load_zone", "parse"]

#: Prefixes that name the schedule's time zone, as in ``"TZ=Europe/Paris 0 9 * * *"``.
TZ_PREFIXES = ("TZ=", "CRON_TZ=")
#: Descriptors and the fields they stand for. The engine's parser has no descriptor
#: support, so descriptors go on the wire as their fields.
DESCRIPTORS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_UTC = _dt.timezone.utc
_MINUTE = _dt.timedelta(minutes=1)
_MICROSECOND = _dt.timedelta(microseconds=1)
# The longest each month can be; a day-of-month beyond it in every chosen month never fires.
_MONTH_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class CronError(ValueError):
    """A cron expression that cannot be parsed, or that never fires."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, {name: number for number, name in enumerate(_MONTH_NAMES, 1)}),
    _Field("day-of-week", 0, 6, {name: number for number, name in enumerate(_WEEKDAY_NAMES)}),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed cron schedule. Build one with :func:`parse`.

    Attributes:
        text: the expression as given to :func:`parse`.
        zone: IANA zone named by a ``TZ=``/``CRON_TZ=`` prefix; ``None`` means UTC.
        canonical: the form sent on the wire: ``"TZ=<zone> <fields>"`` or the five fields,
            joined by single spaces, with descriptors expanded.
        minutes: matching minutes, ascending.
        hours: matching hours, ascending.
        days: matching days of the month, ascending.
        months: matching months (1 is January), ascending.
        weekdays: matching days of the week (0 is Sunday), ascending.
        either_day: whether a day matches when its day-of-month *or* its day-of-week does
            (both fields restricted); otherwise it must match both.
    """

    text: str
    zone: str | None
    canonical: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    either_day: bool

    def next_after(self, when: _dt.datetime) -> _dt.datetime:
        """The first fire time strictly after ``when``.

        Args:
            when: an aware datetime, in any zone.

        Returns:
            An aware UTC datetime.

        Raises:
            ValueError: ``when`` is naive.
            OverflowError: the next fire time lies after the year 9999.
        """
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"Schedule.next_after needs an aware datetime, got {when!r}")
        tz = load_zone(self.zone) if self.zone is not None else _UTC
        local = when.astimezone(tz).replace(tzinfo=None)
        wall = local.replace(second=0, microsecond=0) + _MINUTE
        while True:
            wall = self._next_wall(wall)
            fire = _instant(wall, tz)
            # Wall times map to instants monotonically, so the first later instant is the
            # answer. Only when ``when`` lies in the second pass of a repeated hour do the
            # next few wall times map (by their first occurrence) to the past.
            if fire > when:
                return fire
            wall += _MINUTE

    def _next_wall(self, start: _dt.datetime) -> _dt.datetime:
        """The first matching wall time at or after ``start`` (naive, whole minute).

        Each step jumps to the next candidate month, day, hour or minute, so even a leap
        day schedule takes a few dozen steps rather than a scan over minutes.
        """
        year, month, day = start.year, start.month, start.day
        hour, minute = start.hour, start.minute
        while True:
            if year > _dt.MAXYEAR:
                raise OverflowError(f"{self.text!r} does not fire again before the year 10000")
            found = _at_least(self.months, month)
            if found is None:
                year, month, day, hour, minute = year + 1, 1, 1, 0, 0
                continue
            if found != month:
                month, day, hour, minute = found, 1, 0, 0
            found = self._next_day(year, month, day)
            if found is None:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute = 1, 0, 0
                continue
            if found != day:
                day, hour, minute = found, 0, 0
            found = _at_least(self.hours, hour)
            if found is None:
                day, hour, minute = day + 1, 0, 0  # past the month's end: _next_day says so
                continue
            if found != hour:
                hour, minute = found, 0
            found = _at_least(self.minutes, minute)
            if found is None:
                hour, minute = hour + 1, 0  # hour 24 has no match: on to the next day
                continue
            return _dt.datetime(year, month, day, hour, found)

    def _next_day(self, year: int, month: int, day: int) -> int | None:
        """The first matching day of the month at or after ``day``, if any."""
        last = calendar.monthrange(year, month)[1]
        if day > last:
            return None
        weekday = (calendar.weekday(year, month, day) + 1) % 7  # cron counts from Sunday
        for candidate in range(day, last + 1):
            by_date = candidate in self.days
            by_weekday = (weekday + candidate - day) % 7 in self.weekdays
            if (by_date or by_weekday) if self.either_day else (by_date and by_weekday):
                return candidate
        return None


def parse(text: str) -> Schedule:
    """Parse a cron expression.

    Args:
        text: five fields (minute hour day-of-month month day-of-week) or a descriptor
            (``@yearly @annually @monthly @weekly @daily @midnight @hourly``), optionally
            after a ``TZ=<IANA zone>`` or ``CRON_TZ=<IANA zone>`` prefix.

    Returns:
        The schedule.

    Raises:
        CronError: the expression is malformed, names an unknown zone, or can never fire
            (such as ``"0 0 31 2 *"``). The message names the field and the bad token.
    """
    body = text.strip()
    if not body:
        raise CronError("the schedule is empty")
    zone: str | None = None
    for prefix in TZ_PREFIXES:
        if body.startswith(prefix):
            parts = body[len(prefix) :].split(None, 1)
            zone = parts[0] if parts else ""
            body = parts[1] if len(parts) == 2 else ""
            load_zone(zone)
            break
    if body.startswith("@"):
        if body not in DESCRIPTORS:
            raise CronError(
                f"unsupported descriptor {body!r}; use one of {', '.join(DESCRIPTORS)} "
                "or five fields"
            )
        body = DESCRIPTORS[body]
    fields = body.split()
    if len(fields) != len(_FIELDS):
        raise CronError(
            f"the schedule must have 5 fields (minute hour day-of-month month day-of-week; "
            f"no seconds field), got {len(fields)}"
        )
    parsed = [_parse_field(value, spec) for value, spec in zip(fields, _FIELDS, strict=True)]
    (minutes, _), (hours, _), (days, any_day), (months, _), (weekdays, any_weekday) = parsed
    # robfig/cron: a day matches either field only when neither is a bare * or ?.
    either_day = not (any_day or any_weekday)
    if not either_day and days[0] > max(_MONTH_MAX_DAYS[month - 1] for month in months):
        raise CronError(
            f"day-of-month field {fields[2]!r} never falls in month field {fields[3]!r}, "
            "so the schedule never fires"
        )
    joined = " ".join(fields)
    return Schedule(
        text=text,
        zone=zone,
        canonical=f"TZ={zone} {joined}" if zone is not None else joined,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        either_day=either_day,
    )


def load_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        CronError: no such zone is installed.
    """
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: keys such as "" or "../x"; OSError: unreadable or odd paths.
        raise CronError(f"time zone {name!r} is not a known IANA time zone") from None


def jittered(fire: _dt.datetime, jitter: _dt.timedelta, seed: str) -> _dt.datetime:
    """``fire`` delayed by a deterministic amount in ``[0, jitter)``.

    The delay is ``sha256(seed + "\\0" + fire_utc.isoformat(timespec="microseconds"))``,
    its first 8 bytes read big-endian, modulo ``jitter`` in microseconds. It depends only on
    its arguments, so every engine node computes the same delay for the same run.

    Args:
        fire: the scheduled fire time, aware.
        jitter: the largest delay (exclusive); zero means none.
        seed: what tells schedules apart, such as the function ID and its cron.

    Returns:
        An aware UTC datetime.

    Raises:
        ValueError: ``fire`` is naive or ``jitter`` is negative.
    """
    if fire.tzinfo is None or fire.utcoffset() is None:
        raise ValueError(f"jittered needs an aware datetime, got {fire!r}")
    if jitter < _dt.timedelta(0):
        raise ValueError(f"jitter must not be negative, got {jitter!r}")
    fire = fire.astimezone(_UTC)
    span = jitter // _MICROSECOND
    if span == 0:
        return fire
    key = f"{seed}\0{fire.isoformat(timespec='microseconds')}".encode()
    digest = hashlib.sha256(key).digest()
    return fire + int.from_bytes(digest[:8], "big") % span * _MICROSECOND


def _parse_field(text: str, spec: _Field) -> tuple[tuple[int, ...], bool]:
    """The values one field matches, and whether it is unrestricted (robfig's star bit)."""

    def fail(reason: str) -> CronError:
        return CronError(f"{spec.name} field {text!r} {reason}")

    def number(token: str) -> int:
        if token.isascii() and token.isdigit():
            return int(token)
        if token.lower() in spec.names:
            return spec.names[token.lower()]
        raise fail(f"has {token!r}, which is not a number" + (" or a name" if spec.names else ""))

    values: set[int] = set()
    star = False
    for part in text.split(","):
        span, slash, step_text = part.partition("/")
        if slash and not (step_text.isascii() and step_text.isdigit() and int(step_text) > 0):
            raise fail(f"has step {step_text!r}; a step must be a positive number")
        step = int(step_text) if slash else 1
        if span in ("*", "?"):
            start, end = spec.low, spec.high
            # robfig keeps */1 unrestricted but counts */2 as a restriction.
            star = star or step == 1
        else:
            first, dash, last = span.partition("-")
            start = number(first)
            end = number(last) if dash else (spec.high if slash else start)
            if not (spec.low <= start <= spec.high and spec.low <= end <= spec.high):
                # robfig has no 7 for Sunday; say so, since many crons accept one.
                sunday = spec.name == "day-of-week" and 7 in (start, end)
                raise fail(
                    f"is outside {spec.low}-{spec.high}" + (" (use 0 for Sunday)" if sunday else "")
                )
            if start > end:
                raise fail(f"has the range {span!r}, which runs backwards")
        values.update(range(start, end + 1, step))
    return tuple(sorted(values)), star


def _at_least(values: tuple[int, ...], value: int) -> int | None:
    """The smallest of the sorted ``values`` that is ``>= value``, if any."""
    index = bisect.bisect_left(values, value)
    return values[index] if index < len(values) else None


def _instant(wall: _dt.datetime, tz: _dt.tzinfo) -> _dt.datetime:
    """The UTC instant at which the wall time ``wall`` in ``tz`` fires."""
    # fold=0 picks the first of two repeated wall times, which is the one that fires.
    fire = wall.replace(tzinfo=tz).astimezone(_UTC)
    if fire.astimezone(tz).replace(tzinfo=None) == wall:
        return fire
    # ``wall`` fell into a spring-forward gap. The gap ends at the transition, which lies
    # between reading ``wall`` with the offset after it (fold=1) and before it (fold=0), so
    # bisect on whole seconds for the first instant whose wall time is past ``wall``.
    before = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    after = int(fire.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if _dt.datetime.fromtimestamp(middle, tz).replace(tzinfo=None) > wall:
            after = middle
        else:
            before = middle
    return _dt.datetime.fromtimestamp(after, _UTC)
