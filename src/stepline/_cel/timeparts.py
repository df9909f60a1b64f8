"""The standard library's accessors on timestamps and durations: ``getFullYear()`` and the rest.

On a timestamp, each accessor reads one calendar field in UTC, or in the time zone its
optional argument names (``t.getHours('Europe/Paris')``). A zone is ``"UTC"``, an IANA name
read with :mod:`zoneinfo` (``"America/Los_Angeles"``, ``"US/Central"``), or a fixed offset
``+HH:MM``/``-HH:MM``; the sign may be left out, as the specification's own cases do
(``'02:00'`` is two hours east). An unknown zone is an evaluation error. Months, days of the
month and days of the year count from zero, ``getDate()`` from one, and ``getDayOfWeek()``
from Sunday as zero, as in the specification.

On a duration, ``getHours()``, ``getMinutes()`` and ``getSeconds()`` are the whole duration
in that unit, truncated toward zero (``duration('3730s').getMinutes()`` is 62), while
``getMilliseconds()`` is the millisecond part of the second, with the duration's sign
(123.321456789 seconds give 321): the specification's langdef ("0-999") and its conformance
case, which cel-go departs from by returning the total.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import zoneinfo
from collections.abc import Callable
from typing import Any

from stepline._cel import errors, values

__all__ = ["ACCESSORS", "resolve_zone"]

_OFFSET = re.compile(r"([+-]?)([0-9]{2}):([0-9]{2})")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_ZONE_NAME_MAX = 64
# 400 Gregorian years are exactly 146,097 days, a whole number of weeks: shifting a time by
# them keeps its month, day, weekday and (past or before every transition) its zone offset.
_CYCLE_DAYS = 146_097
_CYCLE_YEARS = 400
_UNIT_MICROS = {"getHours": 3_600_000_000, "getMinutes": 60_000_000, "getSeconds": 1_000_000}


@functools.lru_cache(maxsize=128)
def resolve_zone(name: str) -> _dt.tzinfo:
    """The time zone a CEL zone argument names: ``UTC``, an IANA name or ``[+-]HH:MM``.

    Raises:
        EvaluationError: the zone is unknown or malformed.
    """
    if name == "UTC":
        return _dt.timezone.utc
    offset = _OFFSET.fullmatch(name)
    if offset is not None:
        sign, hours, minutes = offset.group(1), int(offset.group(2)), int(offset.group(3))
        if hours > 23 or minutes > 59:
            raise errors.EvaluationError(f"invalid time zone offset {name!r}")
        delta = _dt.timedelta(hours=hours, minutes=minutes)
        return _dt.timezone(-delta if sign == "-" else delta)
    if len(name) <= _ZONE_NAME_MAX and _ZONE_NAME.fullmatch(name):
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    shown = name if len(name) <= 40 else name[:37] + "..."
    raise errors.EvaluationError(f"unknown time zone {shown!r}")


def _fields(value: _dt.datetime, zone: _dt.tzinfo) -> tuple[_dt.datetime, int]:
    """``value`` as wall-clock time in ``zone``, and how many years to add to its year.

    Near either end of the range the local time can fall in year 0 or 10000, which Python
    cannot hold; the time is then read 400 years inward (the same calendar, leap years and
    weekdays included) and its year corrected.
    """
    try:
        return value.astimezone(zone), 0
    except OverflowError:
        shift = _CYCLE_YEARS if value.year < 5000 else -_CYCLE_YEARS
        moved = value + _dt.timedelta(days=_CYCLE_DAYS if shift > 0 else -_CYCLE_DAYS)
        return moved.astimezone(zone), -shift


def _accessor(name: str, read: Callable[[_dt.datetime, int], int]) -> Callable[..., Any]:
    def accessor(target: Any, *zone: Any) -> int:
        kind = values.kind(target)
        if kind == "duration" and not zone and name in _DURATION_GETTERS:
            return _DURATION_GETTERS[name](target)
        if kind != "timestamp" or (zone and not isinstance(zone[0], str)):
            shown = ", ".join([kind, *map(values.kind, zone)])
            raise errors.EvaluationError(f"no such overload: {name}({shown})")
        local, years = _fields(target, resolve_zone(zone[0]) if zone else _dt.timezone.utc)
        return read(local, years)

    accessor.__name__ = name
    return accessor


def _duration_total(name: str) -> Callable[[_dt.timedelta], int]:
    unit = _UNIT_MICROS[name]

    def total(value: _dt.timedelta) -> int:
        micros = _micros(value)
        whole = abs(micros) // unit
        return -whole if micros < 0 else whole

    return total


def _duration_millis(value: _dt.timedelta) -> int:
    micros = _micros(value)
    part = abs(micros) // 1000 % 1000
    return -part if micros < 0 else part


def _micros(value: _dt.timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


_DURATION_GETTERS: dict[str, Callable[[_dt.timedelta], int]] = {
    "getHours": _duration_total("getHours"),
    "getMinutes": _duration_total("getMinutes"),
    "getSeconds": _duration_total("getSeconds"),
    "getMilliseconds": _duration_millis,
}


_READERS: dict[str, Callable[[_dt.datetime, int], int]] = {
    "getFullYear": lambda local, years: local.year + years,
    "getMonth": lambda local, years: local.month - 1,
    "getDayOfYear": lambda local, years: local.timetuple().tm_yday - 1,
    "getDate": lambda local, years: local.day,
    "getDayOfMonth": lambda local, years: local.day - 1,
    "getDayOfWeek": lambda local, years: (local.weekday() + 1) % 7,
    "getHours": lambda local, years: local.hour,
    "getMinutes": lambda local, years: local.minute,
    "getSeconds": lambda local, years: local.second,
    "getMilliseconds": lambda local, years: local.microsecond // 1000,
}
#: Member functions ``target.getX()`` / ``target.getX(zone)``: ``(arities, implementation)``.
ACCESSORS: dict[str, tuple[tuple[int, ...], Callable[..., Any]]] = {
    name: ((0, 1), _accessor(name, read)) for name, read in _READERS.items()
}
