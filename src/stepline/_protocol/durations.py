"""Go-style duration strings (``"1m"``, ``"1h30m"``, ``"2d"``) and wire timestamps."""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
import sys
from collections.abc import Callable

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
    "w": 7 * 86_400 * 1_000_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
_LARGEST_FIRST = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def format_duration(value: _dt.timedelta | int) -> str:
    """Format a duration the way inngest-py does: the largest whole unit, at least ``1s``.

    Args:
        value: a ``timedelta`` or milliseconds.
    """
    ms = value if isinstance(value, int) else round(value.total_seconds() * 1000)
    if ms < 0:
        raise ValueError("duration must not be negative")
    seconds = max(1, -(-ms // 1000))  # round up so "500ms" never becomes "0s"
    for unit, size in _LARGEST_FIRST:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole second divides by 1")  # pragma: no cover


def parse_duration(text: str) -> _dt.timedelta:
    """Parse a Go/str2duration string such as ``"1h30m"`` or ``"2d"``.

    Raises:
        ValueError: the text is empty or has an unknown unit.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty duration")
    total_ns = 0.0
    pos = 0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total_ns += float(match.group(1)) * _UNITS_NS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise ValueError(f"invalid duration {text!r}; use forms like '30s', '5m', '1h30m', '2d'")
    try:
        return _dt.timedelta(microseconds=total_ns / 1000)
    except OverflowError:  # timedelta tops out near 2.7 million years (and inf is no number)
        raise ValueError(f"duration {text[:40]!r} is out of range") from None


def to_timedelta(value: _dt.timedelta | int | str) -> _dt.timedelta:
    """Normalise a user duration (``timedelta``, milliseconds or a duration string)."""
    if isinstance(value, _dt.timedelta):
        return value
    if isinstance(value, bool):
        raise TypeError("a duration cannot be a bool")
    if isinstance(value, int):
        return _dt.timedelta(milliseconds=value)
    return parse_duration(value)


def format_timestamp(when: _dt.datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``: ``2026-01-01T00:00:00.123Z``."""
    utc = when.astimezone(_dt.timezone.utc).replace(tzinfo=None) if when.tzinfo else when
    return utc.isoformat(timespec="milliseconds") + "Z"  # a quarter of strftime's cost


def format_epoch(seconds: float) -> str:
    """``format_timestamp``'s text for ``seconds`` since the epoch (a time from the store).

    The microseconds are rounded as ``datetime.fromtimestamp`` rounds them (half to even),
    then cut to milliseconds; the date and time of day to the second are kept for the last
    seconds seen (a run's times, a page of runs', mostly fall within a few), so most times
    are written with no ``datetime`` made: a third of the cost.

    Raises:
        ValueError, OverflowError, OSError: as ``datetime.fromtimestamp`` does for a time
            out of its range.
    """
    whole = math.floor(seconds)
    micros = round((seconds - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return f"{_to_the_second(whole)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=256)
def _to_the_second(whole: int) -> str:
    """``2026-01-01T00:00:00``: the UTC time of ``whole`` seconds since the epoch."""
    return _dt.datetime.fromtimestamp(whole, tz=_dt.timezone.utc).isoformat()[:19]


fromisoformat: Callable[[str], _dt.datetime]
if sys.version_info >= (3, 11):
    fromisoformat = _dt.datetime.fromisoformat
else:
    #: an RFC 3339 time's fraction of a second: any number of digits
    _FRACTION = re.compile(r"(?<=:\d\d)[.,](\d+)")

    def fromisoformat(text: str) -> _dt.datetime:
        """``datetime.fromisoformat`` reading what Python 3.11's reads of RFC 3339.

        Python 3.10's takes a fraction of a second of 3 or 6 digits only, and no ``Z``; Go
        writes times with 1 to 9 digits (``2026-01-01T00:00:00.12345Z``).

        Raises:
            ValueError: not an ISO 8601 time that Python reads.
        """
        text = _FRACTION.sub(lambda m: "." + m[1][:6].ljust(6, "0"), text, count=1)
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        return _dt.datetime.fromisoformat(text)


def parse_timestamp(text: str) -> _dt.datetime:
    """Parse an RFC 3339 timestamp (``Z`` or offset) into an aware UTC datetime.

    Raises:
        ValueError: not a timestamp, or one outside the years 1-9999 once in UTC.
    """
    value = fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    try:
        return value.astimezone(_dt.timezone.utc)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is in year 0 in UTC
        raise ValueError(f"timestamp {text[:40]!r} is out of range") from None
