"""Shared pieces of the ``stepline.testing`` suite."""

from __future__ import annotations

import datetime as dt

import pytest

import stepline

# the plugin as users get it through its entry point (this checkout may not be reinstalled)
from stepline.testing.plugin import stepline_env  # noqa: F401

#: A fixed virtual start: a Monday, 10:30 UTC, so cron ticks are easy to count.
START = dt.datetime(2030, 1, 7, 10, 30, tzinfo=dt.timezone.utc)


def dev_client(app_id: str = "t", **kwargs: object) -> stepline.Client:
    """A dev-mode client that never reaches the network on its own."""
    return stepline.Client(app_id=app_id, is_production=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
