"""What a Stepline changelist shows, decided from its query string (pure: no engine, no clock).

The admin's changelists filter and page through the engine's lists, not a queryset, so
they keep Django's look (filter sidebar, search bar, actions, pagination) with a plain
model of their own: ``Filter`` choices are links that set or clear one parameter, and
every link drops the page ``cursor`` (a cursor belongs to one set of filters).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Mapping, Sequence

from stepline._api.runs import RunStatus

__all__ = [
    "CURSOR",
    "SEARCH",
    "TIME_RANGES",
    "Choice",
    "Filter",
    "choices",
    "duration",
    "query_string",
    "since",
    "statuses",
]

SEARCH = "q"
CURSOR = "cursor"

#: the time filter's choices: parameter value -> (label, how far back)
TIME_RANGES: Mapping[str, tuple[str, dt.timedelta]] = {
    "1h": ("Past hour", dt.timedelta(hours=1)),
    "24h": ("Past 24 hours", dt.timedelta(days=1)),
    "7d": ("Past 7 days", dt.timedelta(days=7)),
    "30d": ("Past 30 days", dt.timedelta(days=30)),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Choice:
    """One link of a filter: what it shows, where it goes, whether it is the one in force."""

    display: str
    query_string: str
    selected: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """A filter of the sidebar (``By <title>``) and its choices, ``All`` first."""

    title: str
    choices: tuple[Choice, ...]


def query_string(params: Mapping[str, str], **changes: str | None) -> str:
    """``?...`` for ``params`` with ``changes`` applied (None removes a key).

    The cursor goes unless it is one of the changes: a new filter starts at page one.
    """
    merged = {k: v for k, v in params.items() if k != CURSOR and v != ""}
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return "?" + urllib.parse.urlencode(sorted(merged.items())) if merged else "?"


def choices(
    title: str, params: Mapping[str, str], key: str, options: Sequence[tuple[str, str]]
) -> Filter:
    """A filter over parameter ``key``: ``All`` then one choice per ``(value, label)``."""
    current = params.get(key) or None
    shown = [Choice("All", query_string(params, **{key: None}), current is None)]
    shown += [
        Choice(label, query_string(params, **{key: value}), current == value)
        for value, label in options
    ]
    return Filter(title, tuple(shown))


def since(value: str | None, now: dt.datetime) -> dt.datetime | None:
    """The start of a ``TIME_RANGES`` choice (None: any time, or a value it does not know)."""
    found = TIME_RANGES.get(value or "")
    return None if found is None else now - found[1]


def statuses(value: str | None) -> tuple[RunStatus, ...]:
    """The status filter's value as statuses (an unknown one filters nothing)."""
    try:
        return (RunStatus(value),) if value else ()
    except ValueError:
        return ()


def duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """``1.25 s``, ``3 min 4 s``, ``2 h 5 min``; empty when it has not started or ended."""
    if start is None or end is None:
        return ""
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
