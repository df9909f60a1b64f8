"""Wire timestamps read the same on every supported Python.

Go writes RFC 3339 times with 0 to 9 digits of a second (``time.RFC3339Nano`` drops
trailing zeros); Python 3.10's ``datetime.fromisoformat`` reads 3 or 6 and no ``Z``, 3.11's
any number (past 6 cut off) and ``Z``.
"""

from __future__ import annotations

import datetime as dt

import pytest

from stepline._api import pause, run_info
from stepline._protocol import durations

UTC = dt.timezone.utc

GO_TIMES = [
    ("2026-03-04T05:06:07Z", 0),
    ("2026-03-04T05:06:07.5Z", 500_000),
    ("2026-03-04T05:06:07.12Z", 120_000),
    ("2026-03-04T05:06:07.123Z", 123_000),
    ("2026-03-04T05:06:07.1234Z", 123_400),
    ("2026-03-04T05:06:07.123456Z", 123_456),
    ("2026-03-04T05:06:07.1234567Z", 123_456),
    ("2026-03-04T05:06:07.123456789Z", 123_456),
    ("2026-03-04T05:06:07.123456789+00:00", 123_456),
]


@pytest.mark.parametrize(("text", "micros"), GO_TIMES)
def test_every_length_of_fraction_is_read(text: str, micros: int) -> None:
    expected = dt.datetime(2026, 3, 4, 5, 6, 7, micros, tzinfo=UTC)
    assert durations.fromisoformat(text) == expected
    assert durations.parse_timestamp(text) == expected
    assert run_info.parse_time(text) == expected


def test_an_offset_after_a_long_fraction_is_kept() -> None:
    when = durations.parse_timestamp("2026-03-04T07:06:07.1234567+02:00")
    assert when == dt.datetime(2026, 3, 4, 5, 6, 7, 123_456, tzinfo=UTC)


def test_a_paused_functions_time_from_go_is_read() -> None:
    paused = pause._paused("fn", {"at": "2026-03-04T05:06:07.25Z", "crons": "skip"})
    assert paused.paused_at == dt.datetime(2026, 3, 4, 5, 6, 7, 250_000, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "soon", "2026-03-04T05:06Z07", "2026-13-01T00:00:00.5Z"])
def test_what_is_no_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"isoformat|month"):
        durations.parse_timestamp(text)
    assert run_info.parse_time(text) is None
