"""A fixed moment for tests on a virtual clock."""

from __future__ import annotations

import datetime as dt

#: A Monday, 10:30 UTC, so cron ticks are easy to count.
START = dt.datetime(2030, 1, 7, 10, 30, tzinfo=dt.timezone.utc)
