"""Times from the store as the REST views and run journals write them
(``durations.format_epoch``): the text ``durations.format_timestamp`` writes for
``datetime.fromtimestamp(seconds, UTC)``, whatever the seconds."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stepline._protocol import durations
from stepline.engine._http import views

UTC = dt.timezone.utc


def _by_datetime(seconds: float) -> str:
    return durations.format_timestamp(dt.datetime.fromtimestamp(seconds, tz=UTC))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1764000000.123456, "2025-11-24T16:00:00.123Z"),
        (1764000000.9999995, "2025-11-24T16:00:01.000Z"),  # rounds up into the next second
        (1764000000.0009995, "2025-11-24T16:00:00.000Z"),  # to even microseconds, then cut
        (-1.5, "1969-12-31T23:59:58.500Z"),  # before the epoch
        (-0.0000004, "1970-01-01T00:00:00.000Z"),
        (253402300799.999, "9999-12-31T23:59:59.998Z"),  # the last second: .999 is .998999...
    ],
)
def test_edges(seconds: float, text: str) -> None:
    assert durations.format_epoch(seconds) == text == _by_datetime(seconds)


def test_a_view_writes_it_and_none_stays_none() -> None:
    assert views.timestamp(1764000000.123456) == "2025-11-24T16:00:00.123Z"
    assert views.timestamp(None) is None


@given(st.floats(min_value=-62135596800.0, max_value=253402300799.0))
@example(1e9 + 0.5e-6)  # exactly half a microsecond: to even
@example(1e9 + 1.5e-6)
def test_any_time_reads_as_datetime_writes_it(seconds: float) -> None:
    assert durations.format_epoch(seconds) == _by_datetime(seconds)


@given(st.integers(min_value=0, max_value=10**6 - 1), st.integers(0, 1))
def test_each_microsecond_and_half_reads_as_datetime_writes_it(micros: int, half: int) -> None:
    seconds = 1764000000 + (micros + half / 2) / 1e6
    assert durations.format_epoch(seconds) == _by_datetime(seconds)


def test_beyond_datetime_fails_as_datetime_does() -> None:
    with pytest.raises((ValueError, OverflowError, OSError)):
        _by_datetime(1e20)
    with pytest.raises((ValueError, OverflowError, OSError)):
        durations.format_epoch(1e20)
