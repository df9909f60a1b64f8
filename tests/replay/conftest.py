"""Fixtures of the replay tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


# the plugin's fixture as users get it through its entry point (this checkout may not be
# reinstalled since the fixture was added)
from stepline.testing.plugin import stepline_replay  # noqa: E402, F401
