"""Fixtures of the replay tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._support.counting_server import CountingServer, counting_server


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="module")
def counter() -> Iterator[CountingServer]:
    """Counts every request: a step body that runs, or code that reaches the network."""
    with counting_server() as found:
        yield found


# the plugin's fixture as users get it through its entry point (this checkout may not be
# reinstalled since the fixture was added)
from stepline.testing.plugin import stepline_replay  # noqa: E402, F401
